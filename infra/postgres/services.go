package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/incident-engine/engine/domain/incident"
)

// ServiceState is what the dashboard shows of one service.
type ServiceState struct {
	Service string `json:"service"`
	// State is one of incident.ServiceState: healthy, anomalous, in_incident, silenced,
	// warming_up, no_data (see incident.StateOf).
	State string `json:"state"`
	// SilencedUntil is the end of the silence covering the service now, if any.
	SilencedUntil  *time.Time `json:"silenced_until,omitempty"`
	LastSampleAt   *time.Time `json:"last_sample_at,omitempty"`
	LastReceivedAt *time.Time `json:"last_received_at,omitempty"`
	IncidentID     string     `json:"incident_id,omitempty"`
	IncidentStatus string     `json:"incident_status,omitempty"`
	Severity       string     `json:"severity,omitempty"`
	ModelVersion   int        `json:"model_version"`
	ModelTrainedAt *time.Time `json:"model_trained_at,omitempty"`
	Threshold      float64    `json:"threshold,omitempty"`
	// RecentScores are the latest judged scores, oldest first, for a sparkline.
	RecentScores []float64 `json:"recent_scores"`
}

// Services reads the state of at most limit services, in name order, those after the
// service named after (all from the first when empty). A service whose last sample arrived
// more than staleAfter before now is no_data, one inside a silence at now is silenced; now is
// the caller's wall clock.
func Services(ctx context.Context, pool *pgxpool.Pool, now time.Time, staleAfter time.Duration, sparkline int, after string, limit int) ([]ServiceState, error) {
	rows, err := pool.Query(ctx, `
		SELECT w.service, w.last_sample_at, w.last_received_at, w.recent, coalesce(i.id::text, ''), coalesce(i.status, ''), coalesce(i.severity, ''),
			coalesce(m.version, 0), m.trained_at, coalesce(m.threshold, 0),
			coalesce((SELECT array_agg(score ORDER BY at) FROM (
				SELECT score, at FROM samples s WHERE s.service = w.service AND s.score IS NOT NULL ORDER BY at DESC LIMIT $1) r), '{}'),
			(SELECT max(ends_at) FROM silences z WHERE z.service = w.service AND z.starts_at <= $2 AND z.ends_at > $2)
		FROM service_watch w
		LEFT JOIN incidents i ON i.id = w.incident_id
		LEFT JOIN LATERAL (SELECT version, trained_at, threshold FROM models WHERE service = w.service ORDER BY version DESC LIMIT 1) m ON true
		WHERE w.service > $3
		ORDER BY w.service
		LIMIT $4`, sparkline, now, after, limit)
	if err != nil {
		return nil, fmt.Errorf("load services: %w", err)
	}
	defer rows.Close()
	var out []ServiceState
	for rows.Next() {
		var s ServiceState
		var recent []byte
		if err := rows.Scan(&s.Service, &s.LastSampleAt, &s.LastReceivedAt, &recent, &s.IncidentID, &s.IncidentStatus, &s.Severity,
			&s.ModelVersion, &s.ModelTrainedAt, &s.Threshold, &s.RecentScores, &s.SilencedUntil); err != nil {
			return nil, fmt.Errorf("load services: %w", err)
		}
		var rs []incident.Recent
		if err := json.Unmarshal(recent, &rs); err != nil {
			return nil, fmt.Errorf("load services: recent samples of %s: %w", s.Service, err)
		}
		s.State = string(incident.StateOf(incident.ServiceFacts{
			LastReceivedAt: deref(s.LastReceivedAt), Now: now, StaleAfter: staleAfter,
			Silenced: s.SilencedUntil != nil, IncidentOpen: s.IncidentStatus == "open",
			HasModel: s.ModelVersion > 0, LatestAnomalous: len(rs) > 0 && rs[len(rs)-1].Anomalous,
		}))
		if s.IncidentStatus != "open" {
			s.Severity = ""
		}
		out = append(out, s)
	}
	return out, rows.Err()
}
