-- +goose Up
-- Retention: the pruner deletes, in batches, detail older than its configured age. These
-- indexes let it find that detail without reading whole tables. Samples are found by service
-- and time through their primary key.
CREATE INDEX IF NOT EXISTS incident_timeline_detail_recorded ON incident_timeline (recorded_at)
    WHERE event IN ('anomaly_recorded', 'anomaly_silenced');
CREATE INDEX IF NOT EXISTS processed_messages_processed_at ON processed_messages (processed_at);
CREATE INDEX IF NOT EXISTS deliveries_delivered_at ON deliveries (delivered_at);

-- +goose Down
DROP INDEX IF EXISTS deliveries_delivered_at;
DROP INDEX IF EXISTS processed_messages_processed_at;
DROP INDEX IF EXISTS incident_timeline_detail_recorded;
