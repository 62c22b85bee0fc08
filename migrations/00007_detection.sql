-- +goose Up
-- Calibrated detection: a model keeps what it learned of normal behaviour besides its forest
-- (each feature's distribution, the scores and surprises of normal samples), and correlation
-- counts the healthy samples of a recovery as well as its time. A model stored before has no
-- calibration and is not restored: its service warms up again.
ALTER TABLE models ADD COLUMN IF NOT EXISTS calibration bytea;
ALTER TABLE service_watch ADD COLUMN IF NOT EXISTS healthy_count integer NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE service_watch DROP COLUMN IF EXISTS healthy_count;
ALTER TABLE models DROP COLUMN IF EXISTS calibration;
