-- +goose Up
-- samples: every scored sample, for the dashboard's charts and for looking back at what the
-- model saw. Correlate writes them, in the transaction that correlates them; old ones can be
-- dropped by time.
CREATE TABLE samples (
    service       text             NOT NULL,
    at            timestamptz      NOT NULL,
    metrics       jsonb            NOT NULL,
    score         double precision,
    threshold     double precision,
    anomalous     boolean          NOT NULL DEFAULT false,
    model_version integer          NOT NULL DEFAULT 0,
    PRIMARY KEY (service, at)
);

-- +goose Down
DROP TABLE samples;
