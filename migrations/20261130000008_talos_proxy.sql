-- The Talos API proxy: client certificates Drover's talos-proxy CA issued (one per caller and
-- cluster, in a talosconfig). The proxy looks the serial up on every call, so revoking one, or
-- the principal behind it going away, takes effect at once.
CREATE TABLE talos_client_certs (
    -- Hex of the certificate's serial number.
    serial          text PRIMARY KEY,
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    cluster_name    text NOT NULL,
    -- The Drover principal: `token:<name>`, `user:<email>`, `serviceaccount:<name>`.
    actor           text NOT NULL,
    -- How the principal is found again: `api_token` (id = the token), `user` (the user),
    -- `service_account_key` (the key).
    principal_kind  text NOT NULL CHECK (principal_kind IN ('api_token', 'user', 'service_account_key')),
    principal_id    uuid NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    revoked_at      timestamptz
);
CREATE INDEX talos_client_certs_actor ON talos_client_certs (tenant_id, actor);
CREATE INDEX talos_client_certs_expires_at ON talos_client_certs (expires_at);
