-- The droverd replicas sharing this database, each refreshing its heartbeat while it runs, and
-- the replica that holds each machine's tunnel (set when the tunnel is heard from, refreshed
-- with last_seen_at, cleared when it goes quiet there or its replica stops or stops beating).
CREATE TABLE replicas (
    id            uuid PRIMARY KEY,
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE machines ADD COLUMN tunnel_replica uuid;
CREATE INDEX machines_tunnel_replica ON machines (tunnel_replica) WHERE tunnel_replica IS NOT NULL;
