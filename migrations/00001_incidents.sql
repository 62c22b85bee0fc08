-- +goose Up
-- incidents: one row per incident; at most one open incident per service.
CREATE TABLE incidents (
    id               uuid        PRIMARY KEY,
    service          text        NOT NULL,
    severity         text        NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    status           text        NOT NULL CHECK (status IN ('open', 'resolved')),
    occurrence_count integer     NOT NULL CHECK (occurrence_count > 0),
    first_seen       timestamptz NOT NULL,
    last_seen        timestamptz NOT NULL,
    resolved_at      timestamptz,
    episode_start    timestamptz NOT NULL,
    peak_excess      double precision NOT NULL DEFAULT 0,
    last_score       double precision NOT NULL DEFAULT 0,
    threshold        double precision NOT NULL DEFAULT 0,
    reopen_count     integer     NOT NULL DEFAULT 0,
    data_stopped     boolean     NOT NULL DEFAULT false,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'resolved') = (resolved_at IS NOT NULL))
);
CREATE UNIQUE INDEX incidents_one_open_per_service ON incidents (service) WHERE status = 'open';
CREATE INDEX incidents_last_seen ON incidents (last_seen DESC);

-- incident_timeline: one row per state change, in the order they happened.
CREATE TABLE incident_timeline (
    id          bigserial   PRIMARY KEY,
    incident_id uuid        NOT NULL REFERENCES incidents (id),
    event       text        NOT NULL CHECK (event IN ('opened', 'anomaly_recorded', 'escalated', 'reopened', 'data_stopped', 'data_resumed', 'resolved')),
    occurred_at timestamptz NOT NULL,
    details     jsonb       NOT NULL DEFAULT '{}',
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX incident_timeline_incident ON incident_timeline (incident_id, id);

-- service_watch: per-service correlation state (event-time watermark, recovery streak,
-- recent judged samples, latest incident).
CREATE TABLE service_watch (
    service          text        PRIMARY KEY,
    last_sample_at   timestamptz,
    last_received_at timestamptz,
    healthy_since    timestamptz,
    recovered_at     timestamptz,
    recent           jsonb       NOT NULL DEFAULT '[]',
    incident_id      uuid        REFERENCES incidents (id),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- processed_messages: the inbox that makes handlers fed by the outbox idempotent.
CREATE TABLE processed_messages (
    stage        text        NOT NULL,
    message_id   text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stage, message_id)
);

-- +goose Down
DROP TABLE processed_messages;
DROP TABLE service_watch;
DROP TABLE incident_timeline;
DROP TABLE incidents;
