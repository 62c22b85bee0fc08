-- +goose Up
-- Calibrated detection: a model keeps what it learned of normal behaviour besides its forest
-- (each feature's distribution, the scores and surprises of normal samples), and correlation
-- counts the healthy samples of a recovery as well as its time. A model stored before has no
-- calibration and is not restored: its service warms up again. (00003 and 00004 also set the
-- timeline's event check; this one, the latest, holds every event.)
ALTER TABLE models ADD COLUMN IF NOT EXISTS calibration bytea;
ALTER TABLE service_watch ADD COLUMN IF NOT EXISTS healthy_count integer NOT NULL DEFAULT 0;
-- baseline_learned: the detector learned the service's steady new behaviour as its normal.
ALTER TABLE incident_timeline DROP CONSTRAINT IF EXISTS incident_timeline_event_check;
ALTER TABLE incident_timeline ADD CONSTRAINT incident_timeline_event_check CHECK (event IN (
    'opened', 'anomaly_recorded', 'escalated', 'reopened', 'data_stopped', 'data_resumed', 'resolved',
    'acknowledged', 'anomaly_silenced', 'notified', 'notification_failed',
    'remediation_requested', 'remediation_result', 'remediation_ineffective', 'baseline_learned'));

-- +goose Down
DELETE FROM incident_timeline WHERE event = 'baseline_learned';
ALTER TABLE incident_timeline DROP CONSTRAINT IF EXISTS incident_timeline_event_check;
ALTER TABLE incident_timeline ADD CONSTRAINT incident_timeline_event_check CHECK (event IN (
    'opened', 'anomaly_recorded', 'escalated', 'reopened', 'data_stopped', 'data_resumed', 'resolved',
    'acknowledged', 'anomaly_silenced', 'notified', 'notification_failed',
    'remediation_requested', 'remediation_result', 'remediation_ineffective'));
ALTER TABLE service_watch DROP COLUMN IF EXISTS healthy_count;
ALTER TABLE models DROP COLUMN IF EXISTS calibration;
