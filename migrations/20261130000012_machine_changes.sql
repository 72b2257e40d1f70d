-- Tells listeners (the web UI's live updates) that a tenant's machines changed: one
-- notification per changed row on channel `drover_machines`, payload the tenant id. A row
-- whose only change is `last_seen_at` (every tunnel heartbeat) is not announced.
CREATE FUNCTION drover_machines_notify() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND
       (to_jsonb(NEW) - 'last_seen_at') = (to_jsonb(OLD) - 'last_seen_at') THEN
        RETURN NULL;
    END IF;
    PERFORM pg_notify('drover_machines', COALESCE(NEW.tenant_id, OLD.tenant_id)::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER machines_notify AFTER INSERT OR UPDATE OR DELETE ON machines
    FOR EACH ROW EXECUTE FUNCTION drover_machines_notify();
