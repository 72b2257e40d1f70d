-- Clusters: desired state (the spec) plus the reconcilers' persisted progress.

-- User labels and machine-scope config patches live with the machine.
ALTER TABLE machines
    ADD COLUMN labels   jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN patches  jsonb NOT NULL DEFAULT '[]';

CREATE TABLE machine_classes (
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        text NOT NULL,
    selectors   jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name)
);

-- One data-encryption key per tenant, wrapped by the installation's key-encryption key.
CREATE TABLE tenant_keys (
    tenant_id    uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    kek_id       text NOT NULL,
    wrapped_dek  bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    rewrapped_at timestamptz
);

CREATE TABLE clusters (
    tenant_id               uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name                    text NOT NULL,
    -- Never reused: binds the cluster's sealed secrets to this cluster.
    uid                     uuid NOT NULL UNIQUE,
    spec                    jsonb NOT NULL,
    generation              bigint NOT NULL DEFAULT 1,
    deleting                boolean NOT NULL DEFAULT false,
    control_plane_endpoint  text,
    -- The control plane Bootstrap was sent to; set before the call, so it is sent to one only.
    bootstrap_machine       text,
    bootstrapped_at         timestamptz,
    etcd_members            integer NOT NULL DEFAULT 0,
    kubernetes_api_ready    boolean NOT NULL DEFAULT false,
    phase                   text NOT NULL DEFAULT 'scalingUp',
    ready                   boolean NOT NULL DEFAULT false,
    machines_missing        integer NOT NULL DEFAULT 0,
    last_error              text,
    -- Which droverd replica reconciles the cluster, until when.
    lease_owner             uuid,
    lease_until             timestamptz,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name)
);

-- Sealed secrets (envelope encryption under the tenant's key, bound to tenant, cluster uid and
-- purpose). Never returned by a read API.
CREATE TABLE cluster_secrets (
    tenant_id     uuid NOT NULL,
    cluster_name  text NOT NULL,
    purpose       text NOT NULL,
    sealed        bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, cluster_name, purpose),
    FOREIGN KEY (tenant_id, cluster_name) REFERENCES clusters (tenant_id, name) ON DELETE CASCADE
);

-- A machine belongs to at most one cluster.
CREATE TABLE cluster_machines (
    tenant_id            uuid NOT NULL,
    machine_id           text NOT NULL,
    cluster_name         text NOT NULL,
    machine_set          text NOT NULL,
    role                 text NOT NULL CHECK (role IN ('controlPlane', 'worker')),
    phase                text NOT NULL DEFAULT 'allocated',
    -- SHA-256 and redacted text of the config the node was last given.
    applied_config_hash  text,
    applied_config       text,
    applied_at           timestamptz,
    -- SHA-256 of the config Drover renders for the machine now (differs while a change rolls).
    desired_config_hash  text,
    etcd_member_id       text,
    last_error           text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, machine_id),
    FOREIGN KEY (tenant_id, machine_id) REFERENCES machines (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, cluster_name) REFERENCES clusters (tenant_id, name) ON DELETE CASCADE
);
CREATE INDEX cluster_machines_by_cluster ON cluster_machines (tenant_id, cluster_name);

-- Wakes reconcilers on any replica when a cluster changes.
CREATE FUNCTION notify_cluster_change() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('drover_clusters', COALESCE(NEW.tenant_id, OLD.tenant_id)::text || '/' || COALESCE(NEW.name, OLD.name));
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER clusters_notify AFTER INSERT OR UPDATE OF spec, deleting ON clusters
    FOR EACH ROW EXECUTE FUNCTION notify_cluster_change();

-- ... and when a machine of a cluster changes stage, readiness or connection.
CREATE FUNCTION notify_cluster_machine_change() RETURNS trigger AS $$
DECLARE
    cluster text;
BEGIN
    SELECT cluster_name INTO cluster FROM cluster_machines
        WHERE tenant_id = NEW.tenant_id AND machine_id = NEW.id;
    IF cluster IS NOT NULL THEN
        PERFORM pg_notify('drover_clusters', NEW.tenant_id::text || '/' || cluster);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER machines_notify_cluster AFTER UPDATE OF stage, ready, connected ON machines
    FOR EACH ROW
    WHEN (OLD.stage IS DISTINCT FROM NEW.stage OR OLD.ready IS DISTINCT FROM NEW.ready
          OR OLD.connected IS DISTINCT FROM NEW.connected)
    EXECUTE FUNCTION notify_cluster_machine_change();
