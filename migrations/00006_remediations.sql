-- +goose Up
-- remediations: every remediation hook run (or dry run, or skip), at most one per hook and
-- incident.
CREATE TABLE remediations (
    hook        text        NOT NULL,
    incident_id uuid        NOT NULL REFERENCES incidents (id),
    service     text        NOT NULL,
    ran_for     timestamptz NOT NULL,
    ran_at      timestamptz NOT NULL,
    dry_run     boolean     NOT NULL,
    skipped     text,
    status      text,
    error       text,
    PRIMARY KEY (hook, incident_id)
);
CREATE INDEX remediations_service ON remediations (hook, service, ran_at);

-- +goose Down
DROP TABLE remediations;
