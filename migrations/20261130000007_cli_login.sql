-- CLI login (`drover login`): after a browser login, the person allows the CLI on their computer;
-- droverd hands the CLI's loopback listener a one-time code, which the CLI exchanges, with the
-- verifier of the challenge it started with, for a session of its own and a refresh token.

-- One-time codes, found by their SHA-256 and taken (deleted) once.
CREATE TABLE cli_codes (
    code_hash   bytea PRIMARY KEY CHECK (length(code_hash) = 32),
    tenant_id   uuid NOT NULL,
    user_id     uuid NOT NULL,
    -- base64url(SHA-256(verifier)), as in PKCE's S256.
    challenge   text NOT NULL,
    expires_at  timestamptz NOT NULL,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);

-- Refresh tokens of CLI logins, by SHA-256; each is used once and replaced by a new one.
CREATE TABLE cli_refresh_tokens (
    token_hash  bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    tenant_id   uuid NOT NULL,
    user_id     uuid NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX cli_refresh_tokens_expires_at ON cli_refresh_tokens (expires_at);
