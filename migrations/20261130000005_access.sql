-- Service accounts: non-human principals of a tenant, with a role and an optional expiry. They
-- authenticate with keys (`drs_...`); an account may hold several keys so that one can be
-- rotated without downtime. Only the SHA-256 of a key is stored.
CREATE TABLE service_accounts (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        text NOT NULL,
    role        text NOT NULL CHECK (role IN ('admin', 'operator', 'reader')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- Every key of the account stops working at this time; NULL = never.
    expires_at  timestamptz,
    CONSTRAINT service_accounts_name_unique UNIQUE (tenant_id, name),
    CONSTRAINT service_accounts_tenant_id_unique UNIQUE (tenant_id, id)
);

CREATE TABLE service_account_keys (
    id                  uuid PRIMARY KEY,
    tenant_id           uuid NOT NULL,
    service_account_id  uuid NOT NULL,
    secret_hash         bytea NOT NULL CHECK (length(secret_hash) = 32),
    created_at          timestamptz NOT NULL DEFAULT now(),
    revoked_at          timestamptz,
    last_used_at        timestamptz,
    FOREIGN KEY (tenant_id, service_account_id)
        REFERENCES service_accounts (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX service_account_keys_account ON service_account_keys (tenant_id, service_account_id);

-- Per-cluster grants: a user or a service account gets a role on one cluster, on top of its
-- role in the tenant (the higher of the two applies to that cluster). A grant goes with its
-- cluster, user or service account.
CREATE TABLE cluster_grants (
    tenant_id           uuid NOT NULL,
    cluster_name        text NOT NULL,
    user_id             uuid,
    service_account_id  uuid,
    role                text NOT NULL CHECK (role IN ('admin', 'operator', 'reader')),
    created_at          timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (tenant_id, cluster_name) REFERENCES clusters (tenant_id, name) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, service_account_id)
        REFERENCES service_accounts (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT cluster_grants_one_grantee CHECK ((user_id IS NULL) <> (service_account_id IS NULL))
);
CREATE UNIQUE INDEX cluster_grants_user_unique
    ON cluster_grants (tenant_id, cluster_name, user_id) WHERE user_id IS NOT NULL;
CREATE UNIQUE INDEX cluster_grants_service_account_unique
    ON cluster_grants (tenant_id, cluster_name, service_account_id)
    WHERE service_account_id IS NOT NULL;
