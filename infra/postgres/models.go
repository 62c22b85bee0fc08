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

// Version returns one stored model of the service, false when it is not (or no longer) stored.
func (r *Models) Version(ctx context.Context, service string, version int) (detect.Model, bool, error) {
	if version < 1 {
		return detect.Model{}, false, nil
	}
	return r.load(ctx, service, version)
}

// Latest returns the service's newest model, and false when it has none.
func (r *Models) Latest(ctx context.Context, service string) (detect.Model, bool, error) {
	return r.load(ctx, service, 0)
}

// load returns the model of a version, or the newest for version 0.
func (r *Models) load(ctx context.Context, service string, version int) (detect.Model, bool, error) {
	m := detect.Model{Service: service}
	var from, to *time.Time
	err := r.pool.QueryRow(ctx, `
		SELECT version, features, typical, threshold, window_from, window_to, rows, trained_at, forest, coalesce(calibration, '')
		FROM models WHERE service = $1 AND ($2 = 0 OR version = $2) ORDER BY version DESC LIMIT 1`, service, version).
		Scan(&m.Version, &m.Features, &m.Typical, &m.Threshold, &from, &to, &m.Rows, &m.TrainedAt, &m.Forest, &m.Calibration)
	if errors.Is(err, pgx.ErrNoRows) {
		return detect.Model{}, false, nil
	}
	if err != nil {
		return detect.Model{}, false, fmt.Errorf("load model of %s (version %d, 0 the latest): %w", service, version, err)
	}
	m.WindowFrom, m.WindowTo, m.TrainedAt = deref(from), deref(to), m.TrainedAt.UTC()
	return m, true, nil
}
