-- +goose Up
-- detector_state: each service's whole detector state (warm-up or retraining window, levels,
-- history, live calibration, schedule), saved by the score stage with the position in its
-- input topic of the last sample it includes. A restarted worker, or one that takes the
-- service over after a rebalance, restores it and replays the samples after that position,
-- so it judges exactly as an uninterrupted worker would. "offset" -1: the state includes no
-- sample (the next one is the service's first).
CREATE TABLE detector_state (
    service     text        PRIMARY KEY,
    partition   integer     NOT NULL,
    "offset"    bigint      NOT NULL CHECK ("offset" >= -1),
    state       bytea       NOT NULL,
    saved_at    timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE detector_state;
