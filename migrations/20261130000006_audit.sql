-- The audit log: every mutation, login and credential issuance, per tenant. Rows are only ever
-- inserted, and deleted when older than the retention setting.
CREATE TABLE audit_log (
    id         bigserial PRIMARY KEY,
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    at         timestamptz NOT NULL DEFAULT now(),
    -- Who: "user:alice@example.com", "token:ci", "machine:<uuid>".
    actor      text NOT NULL,
    -- What, as resource.verb: "cluster.create", "joinToken.revoke", "login".
    action     text NOT NULL,
    -- On what: a name or id ("" when the action has no single target).
    target     text NOT NULL,
    -- "ok", "denied: <why>", "invalid: <why>", "notFound", "conflict: <why>", "error".
    result     text NOT NULL
);
CREATE INDEX audit_log_tenant_at ON audit_log (tenant_id, at);
CREATE INDEX audit_log_at ON audit_log (at);
