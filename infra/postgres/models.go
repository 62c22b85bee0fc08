package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/incident-engine/engine/domain/detect"
)

// Models is the model registry: every trained model of every service, by version.
type Models struct {
	pool *pgxpool.Pool
}

// NewModels returns the model registry over pool.
func NewModels(pool *pgxpool.Pool) *Models { return &Models{pool: pool} }

// Save stores a model. Saving the same service and version again changes nothing, so a
// redelivered sample that trained a model is harmless.
func (r *Models) Save(ctx context.Context, m detect.Model) error {
	_, err := r.pool.Exec(ctx, `
		INSERT INTO models (service, version, features, typical, threshold, window_from, window_to, rows, trained_at, forest, calibration)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (service, version) DO NOTHING`,
		m.Service, m.Version, m.Features, m.Typical, m.Threshold, ptr(m.WindowFrom), ptr(m.WindowTo), m.Rows, m.TrainedAt, m.Forest, m.Calibration)
	if err != nil {
		return fmt.Errorf("save model %s v%d: %w", m.Service, m.Version, err)
	}
	return nil
}

// Latest returns the service's newest model, and false when it has none.
func (r *Models) Latest(ctx context.Context, service string) (detect.Model, bool, error) {
	m := detect.Model{Service: service}
	var from, to *time.Time
	err := r.pool.QueryRow(ctx, `
		SELECT version, features, typical, threshold, window_from, window_to, rows, trained_at, forest, coalesce(calibration, '')
		FROM models WHERE service = $1 ORDER BY version DESC LIMIT 1`, service).
		Scan(&m.Version, &m.Features, &m.Typical, &m.Threshold, &from, &to, &m.Rows, &m.TrainedAt, &m.Forest, &m.Calibration)
	if errors.Is(err, pgx.ErrNoRows) {
		return detect.Model{}, false, nil
	}
	if err != nil {
		return detect.Model{}, false, fmt.Errorf("load model of %s: %w", service, err)
	}
	m.WindowFrom, m.WindowTo, m.TrainedAt = deref(from), deref(to), m.TrainedAt.UTC()
	return m, true, nil
}
