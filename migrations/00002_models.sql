-- +goose Up
-- models: the model registry. One row per trained model of a service; the highest version
-- is the one in use. A restarted worker, or one that takes over a service after a Kafka
-- rebalance, loads it instead of warming up again.
CREATE TABLE models (
    service     text             NOT NULL,
    version     integer          NOT NULL CHECK (version > 0),
    features    text[]           NOT NULL,
    typical     double precision[] NOT NULL,
    threshold   double precision NOT NULL CHECK (threshold > 0 AND threshold <= 1),
    window_from timestamptz,
    window_to   timestamptz,
    rows        integer          NOT NULL,
    trained_at  timestamptz      NOT NULL,
    forest      bytea            NOT NULL,
    recorded_at timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (service, version)
);

-- +goose Down
DROP TABLE models;
