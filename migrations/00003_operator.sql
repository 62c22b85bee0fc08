-- +goose Up
-- The operator's side: acknowledgements, silences (maintenance windows) and timeline entries
-- that belong to a service rather than to an incident.

-- incidents: who acknowledged the current episode, and when (both or neither).
ALTER TABLE incidents
    ADD COLUMN acked_by text,
    ADD COLUMN acked_at timestamptz,
    ADD CONSTRAINT incidents_acked_check CHECK ((acked_by IS NULL) = (acked_at IS NULL));
-- The API lists incidents newest first by last_seen, paged by (last_seen, id).
CREATE INDEX incidents_last_seen_id ON incidents (last_seen DESC, id DESC);
CREATE INDEX incidents_service_last_seen_id ON incidents (service, last_seen DESC, id DESC);

-- silences: maintenance windows, one service each, active from starts_at up to ends_at
-- (sample time). Ending one early moves ends_at; a cancelled one has ends_at = starts_at.
CREATE TABLE silences (
    id         uuid        PRIMARY KEY,
    service    text        NOT NULL,
    starts_at  timestamptz NOT NULL,
    ends_at    timestamptz NOT NULL,
    reason     text        NOT NULL,
    author     text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at >= starts_at)
);
-- The correlate stage asks, per anomalous sample, for the service's silences not yet over.
CREATE INDEX silences_service_ends_at ON silences (service, ends_at);

-- incident_timeline: an entry belongs to an incident, or only to its service (an anomaly of
-- a silenced service with no open incident). Every row names its service.
ALTER TABLE incident_timeline ALTER COLUMN incident_id DROP NOT NULL;
ALTER TABLE incident_timeline ADD COLUMN service text;
UPDATE incident_timeline t SET service = i.service FROM incidents i WHERE i.id = t.incident_id;
ALTER TABLE incident_timeline ALTER COLUMN service SET NOT NULL;
ALTER TABLE incident_timeline ADD CONSTRAINT incident_timeline_owner_check
    CHECK (incident_id IS NOT NULL OR event = 'anomaly_silenced');
CREATE INDEX incident_timeline_service ON incident_timeline (service, occurred_at, id);

-- Writers that name only the incident (and those written before this column existed) get
-- the incident's service filled in; the engine's own writers name it themselves.
-- +goose StatementBegin
CREATE FUNCTION incident_timeline_fill_service() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.service IS NULL AND NEW.incident_id IS NOT NULL THEN
        SELECT service INTO NEW.service FROM incidents WHERE id = NEW.incident_id;
    END IF;
    RETURN NEW;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER incident_timeline_fill_service BEFORE INSERT ON incident_timeline
    FOR EACH ROW EXECUTE FUNCTION incident_timeline_fill_service();

-- Every timeline kind, the operator's included (the full list; later migrations that add
-- kinds restate it).
ALTER TABLE incident_timeline DROP CONSTRAINT IF EXISTS incident_timeline_event_check;
ALTER TABLE incident_timeline ADD CONSTRAINT incident_timeline_event_check CHECK (event IN (
    'opened', 'anomaly_recorded', 'escalated', 'reopened', 'data_stopped', 'data_resumed', 'resolved',
    'acknowledged', 'anomaly_silenced', 'notified', 'notification_failed',
    'remediation_requested', 'remediation_result', 'remediation_ineffective'));

-- +goose Down
DROP TRIGGER incident_timeline_fill_service ON incident_timeline;
DROP FUNCTION incident_timeline_fill_service();
DROP INDEX incident_timeline_service;
DELETE FROM incident_timeline WHERE incident_id IS NULL;
ALTER TABLE incident_timeline DROP CONSTRAINT incident_timeline_owner_check;
ALTER TABLE incident_timeline DROP COLUMN service;
ALTER TABLE incident_timeline ALTER COLUMN incident_id SET NOT NULL;
DROP TABLE silences;
DROP INDEX incidents_service_last_seen_id;
DROP INDEX incidents_last_seen_id;
ALTER TABLE incidents DROP CONSTRAINT incidents_acked_check, DROP COLUMN acked_at, DROP COLUMN acked_by;
