-- What a machine reports through its tunnel: lifecycle stage from events, facts read through
-- its machine API, and a bounded window of its kernel log.
ALTER TABLE machines
    ADD COLUMN stage             text,
    ADD COLUMN ready             boolean NOT NULL DEFAULT false,
    ADD COLUMN unmet_conditions  jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN last_sequence     text,
    ADD COLUMN last_error        text,
    ADD COLUMN last_event_at     timestamptz,
    ADD COLUMN facts             jsonb,
    ADD COLUMN facts_updated_at  timestamptz;

CREATE TABLE machine_logs (
    tenant_id    uuid NOT NULL,
    machine_id   text NOT NULL,
    seq          bigint GENERATED ALWAYS AS IDENTITY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    talos_time   text,
    level        text,
    facility     text,
    message      text NOT NULL,
    PRIMARY KEY (tenant_id, machine_id, seq),
    FOREIGN KEY (tenant_id, machine_id) REFERENCES machines (tenant_id, id) ON DELETE CASCADE
);
