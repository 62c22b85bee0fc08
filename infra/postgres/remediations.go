package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/incident-engine/engine/domain/incident"
)

// Remediations is the log of remediation hook runs.
type Remediations struct {
	pool *pgxpool.Pool
}

// NewRemediations returns the remediation log over pool.
func NewRemediations(pool *pgxpool.Pool) *Remediations { return &Remediations{pool: pool} }

// ForIncident returns the incident's remediations.
func (r *Remediations) ForIncident(ctx context.Context, incidentID string) ([]incident.Remediation, error) {
	rows, err := r.pool.Query(ctx, `
		SELECT hook, incident_id::text, service, ran_for, ran_at, dry_run, coalesce(skipped, ''), coalesce(status, ''), coalesce(error, '')
		FROM remediations WHERE incident_id = $1 ORDER BY ran_at`, incidentID)
	if err != nil {
		return nil, fmt.Errorf("load remediations of %s: %w", incidentID, err)
	}
	defer rows.Close()
	var out []incident.Remediation
	for rows.Next() {
		var x incident.Remediation
		if err := rows.Scan(&x.Hook, &x.IncidentID, &x.Service, &x.RanFor, &x.RanAt, &x.DryRun, &x.Skipped, &x.Status, &x.Err); err != nil {
			return nil, fmt.Errorf("load remediations of %s: %w", incidentID, err)
		}
		x.RanFor, x.RanAt = x.RanFor.UTC(), x.RanAt.UTC()
		out = append(out, x)
	}
	return out, rows.Err()
}

// Runs counts the calls of hook for service made since (dry runs and skips excluded).
func (r *Remediations) Runs(ctx context.Context, hook, service string, since time.Time) (int, error) {
	var n int
	err := r.pool.QueryRow(ctx, `SELECT count(*) FROM remediations WHERE hook = $1 AND service = $2 AND ran_at >= $3 AND NOT dry_run AND skipped IS NULL`,
		hook, service, since).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count runs of %s for %s: %w", hook, service, err)
	}
	return n, nil
}

// Record stores a run with its timeline entries (remediation_requested, and
// remediation_result when the hook was called) in one transaction.
func (r *Remediations) Record(ctx context.Context, x incident.Remediation) error {
	return pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			INSERT INTO remediations (hook, incident_id, service, ran_for, ran_at, dry_run, skipped, status, error)
			VALUES ($1, $2, $3, $4, $5, $6, NULLIF($7, ''), NULLIF($8, ''), NULLIF($9, '')) ON CONFLICT DO NOTHING`,
			x.Hook, x.IncidentID, x.Service, x.RanFor, x.RanAt, x.DryRun, x.Skipped, x.Status, x.Err)
		if err != nil {
			return fmt.Errorf("record remediation %s of %s: %w", x.Hook, x.IncidentID, err)
		}
		if tag.RowsAffected() == 0 {
			return nil
		}
		return appendTimeline(ctx, tx, x.Service, x.IncidentID, x.Entries())
	})
}
