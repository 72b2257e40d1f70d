-- Break-glass credentials: admin kubeconfigs and talosconfigs signed directly by a cluster's own
-- CAs, which bypass Drover (no proxy, no revocation, no per-request audit). Every one issued is
-- recorded here; a cluster with a row whose `cas_rotated_at` is null is tainted: its CAs must be
-- rotated before Drover can vouch again for who reaches it.
CREATE TABLE break_glass_credentials (
    id              bigserial PRIMARY KEY,
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    cluster_name    text NOT NULL,
    -- The cluster's never-reused uid: a new cluster of the same name has new CAs.
    cluster_uid     uuid NOT NULL REFERENCES clusters (uid) ON DELETE CASCADE,
    kind            text NOT NULL CHECK (kind IN ('kubeconfig', 'talosconfig')),
    -- The Drover principal that asked: `token:<name>`, `user:<email>`, `serviceaccount:<name>`.
    actor           text NOT NULL,
    -- Hex of the issued certificate's serial number.
    serial          text NOT NULL,
    issued_at       timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    -- When the cluster's CAs were rotated after this was issued (ends the taint). CA rotation
    -- is not built yet, so nothing sets it today.
    cas_rotated_at  timestamptz
);
CREATE INDEX break_glass_credentials_cluster ON break_glass_credentials (tenant_id, cluster_uid);
