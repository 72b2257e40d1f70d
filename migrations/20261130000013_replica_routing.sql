-- Secrets of the installation itself, shared by every replica: the WireGuard key all replicas
-- answer machines with (so a machine may move between them) and the key replicas authenticate
-- each other's relay connections with. Each is sealed with a data key of its own, wrapped by the
-- key-encryption key like the tenants' data keys.
CREATE TABLE installation_secrets (
    name         text PRIMARY KEY,
    kek_id       text NOT NULL,
    wrapped_dek  bytea NOT NULL,
    sealed       bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Where each replica is reached: the WireGuard endpoints it tells machines to use, and the
-- address of its relay, through which the other replicas reach the machines whose tunnels it
-- holds.
ALTER TABLE replicas
    ADD COLUMN wireguard_endpoints text[] NOT NULL DEFAULT '{}',
    ADD COLUMN relay_addr text;

-- Tells every replica that the tunnel peers changed (a machine provisioned with a new key, or was
-- removed), so each accepts the machine's tunnel at once, wherever it provisioned.
CREATE FUNCTION drover_tunnel_peers_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('drover_tunnel_peers', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER machines_tunnel_peers_notify
    AFTER INSERT OR DELETE OR UPDATE OF wireguard_public_key, address ON machines
    FOR EACH ROW EXECUTE FUNCTION drover_tunnel_peers_notify();
