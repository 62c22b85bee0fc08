-- +goose Up
-- deliveries: every notification outcome, one row per receiver and event. The notify stage
-- skips events a receiver already had, so a redelivered event is not sent twice.
CREATE TABLE deliveries (
    receiver     text        NOT NULL,
    event_id     text        NOT NULL,
    incident_id  uuid        NOT NULL REFERENCES incidents (id),
    event        text        NOT NULL,
    ok           boolean     NOT NULL,
    attempts     integer     NOT NULL,
    error        text,
    delivered_at timestamptz NOT NULL,
    PRIMARY KEY (receiver, event_id)
);

-- The timeline gains the delivery kinds (the full list, as 00003 also sets it).
ALTER TABLE incident_timeline DROP CONSTRAINT IF EXISTS incident_timeline_event_check;
ALTER TABLE incident_timeline ADD CONSTRAINT incident_timeline_event_check CHECK (event IN (
    'opened', 'anomaly_recorded', 'escalated', 'reopened', 'data_stopped', 'data_resumed', 'resolved',
    'acknowledged', 'anomaly_silenced', 'notified', 'notification_failed',
    'remediation_requested', 'remediation_result', 'remediation_ineffective'));

-- +goose Down
DROP TABLE deliveries;
