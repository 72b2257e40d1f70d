-- Rolling upgrades: one row per requested upgrade, the progress of every node, and the
-- cluster's event log.

CREATE TABLE cluster_upgrades (
    id            uuid PRIMARY KEY,
    tenant_id     uuid NOT NULL,
    cluster_name  text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('talos', 'kubernetes')),
    from_version  text NOT NULL,
    to_version    text NOT NULL,
    state         text NOT NULL DEFAULT 'running'
                  CHECK (state IN ('running', 'paused', 'cancelled', 'failed', 'done')),
    error         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    FOREIGN KEY (tenant_id, cluster_name) REFERENCES clusters (tenant_id, name) ON DELETE CASCADE
);
-- At most one upgrade of a cluster is under way (running or paused).
CREATE UNIQUE INDEX cluster_upgrades_one_active ON cluster_upgrades (tenant_id, cluster_name)
    WHERE state IN ('running', 'paused');

-- A node's progress, written before each call and after it is verified, so a restarted droverd
-- never repeats a finished node's upgrade.
CREATE TABLE upgrade_nodes (
    upgrade_id   uuid NOT NULL REFERENCES cluster_upgrades (id) ON DELETE CASCADE,
    machine_id   text NOT NULL,
    step         text NOT NULL,
    state        text NOT NULL CHECK (state IN ('inProgress', 'done', 'failed')),
    error        text,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    PRIMARY KEY (upgrade_id, machine_id, step)
);

-- The Kubernetes component versions Drover configures on each machine
-- ({"apiserver": "1.32.0", ...}); absent components follow the cluster's version. A Kubernetes
-- upgrade moves them one step at a time.
ALTER TABLE cluster_machines ADD COLUMN kubernetes_versions jsonb NOT NULL DEFAULT '{}';

CREATE TABLE cluster_events (
    tenant_id     uuid NOT NULL,
    cluster_name  text NOT NULL,
    seq           bigint GENERATED ALWAYS AS IDENTITY,
    at            timestamptz NOT NULL DEFAULT now(),
    kind          text NOT NULL,
    message       text NOT NULL,
    PRIMARY KEY (tenant_id, cluster_name, seq),
    FOREIGN KEY (tenant_id, cluster_name) REFERENCES clusters (tenant_id, name) ON DELETE CASCADE
);

CREATE FUNCTION notify_cluster_upgrade() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('drover_clusters', NEW.tenant_id::text || '/' || NEW.cluster_name);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER cluster_upgrades_notify AFTER INSERT OR UPDATE OF state ON cluster_upgrades
    FOR EACH ROW EXECUTE FUNCTION notify_cluster_upgrade();
