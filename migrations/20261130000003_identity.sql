-- People who log in through OpenID Connect, per tenant. A row can exist before its first login
-- (an invitation: e-mail and role, no subject yet); the first login binds the provider's
-- issuer and subject, and later logins find the user by them.
CREATE TABLE users (
    id             uuid PRIMARY KEY,
    tenant_id      uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- Normalised to lower case.
    email          text NOT NULL CHECK (email <> '' AND email = lower(email)),
    name           text NOT NULL DEFAULT '',
    role           text NOT NULL CHECK (role IN ('admin', 'operator', 'reader')),
    oidc_issuer    text,
    oidc_subject   text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_login_at  timestamptz,
    CONSTRAINT users_email_unique UNIQUE (tenant_id, email),
    CONSTRAINT users_subject_unique UNIQUE (tenant_id, oidc_issuer, oidc_subject),
    CONSTRAINT users_subject_complete CHECK ((oidc_issuer IS NULL) = (oidc_subject IS NULL)),
    -- Lets sessions reference (tenant, user) so a session cannot point into another tenant.
    CONSTRAINT users_tenant_id_unique UNIQUE (tenant_id, id)
);

-- Browser sessions. The cookie carries a random secret; only its SHA-256 is stored.
CREATE TABLE sessions (
    id_hash       bytea PRIMARY KEY CHECK (length(id_hash) = 32),
    tenant_id     uuid NOT NULL,
    user_id       uuid NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

-- Logins under way, between the redirect to the provider and its callback, so that any replica
-- can finish them. Found by the SHA-256 of the state; taken (deleted) once.
CREATE TABLE login_attempts (
    state_hash     bytea PRIMARY KEY CHECK (length(state_hash) = 32),
    nonce          text NOT NULL,
    pkce_verifier  text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL
);
CREATE INDEX login_attempts_expires_at ON login_attempts (expires_at);
