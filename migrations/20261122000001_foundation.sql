-- Tenants own everything else.
CREATE TABLE tenants (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT tenants_name_unique UNIQUE (name)
);

-- Bearer tokens for the management APIs. Only a SHA-256 of the secret is stored.
CREATE TABLE api_tokens (
    id            uuid PRIMARY KEY,
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name          text NOT NULL,
    role          text NOT NULL CHECK (role IN ('admin', 'operator', 'reader')),
    secret_hash   bytea NOT NULL CHECK (length(secret_hash) = 32),
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    revoked_at    timestamptz,
    last_used_at  timestamptz,
    CONSTRAINT api_tokens_name_unique UNIQUE (tenant_id, name)
);

-- Join tokens: what a node presents to Provision. Only a SHA-256 of the secret is stored.
CREATE TABLE join_tokens (
    id            uuid PRIMARY KEY,
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name          text NOT NULL,
    secret_hash   bytea NOT NULL CHECK (length(secret_hash) = 32),
    is_default    boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    revoked_at    timestamptz,
    use_count     bigint NOT NULL DEFAULT 0,
    last_used_at  timestamptz,
    CONSTRAINT join_tokens_name_unique UNIQUE (tenant_id, name)
);
CREATE UNIQUE INDEX join_tokens_one_default ON join_tokens (tenant_id) WHERE is_default;

-- The machine inventory. A machine is its node's SMBIOS UUID within a tenant; its tunnel address
-- and WireGuard key are unique across the installation because there is one tunnel endpoint.
CREATE TABLE machines (
    tenant_id               uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id                      text NOT NULL,
    address                 text NOT NULL,
    wireguard_public_key    text NOT NULL,
    -- SHA-256 of the node's unique token (Talos >= 1.6); NULL when the node sent none.
    node_unique_token_hash  bytea,
    talos_version           text NOT NULL DEFAULT '',
    wireguard_over_grpc     boolean NOT NULL DEFAULT false,
    grpc_peer_address       text,
    join_token_id           uuid REFERENCES join_tokens (id) ON DELETE SET NULL,
    first_provisioned_at    timestamptz NOT NULL DEFAULT now(),
    last_provisioned_at     timestamptz NOT NULL DEFAULT now(),
    connected               boolean NOT NULL DEFAULT false,
    last_seen_at            timestamptz,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT machines_address_unique UNIQUE (address),
    CONSTRAINT machines_wireguard_public_key_unique UNIQUE (wireguard_public_key),
    CONSTRAINT machines_grpc_peer_address_unique UNIQUE (grpc_peer_address)
);
