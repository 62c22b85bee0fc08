package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Retention sets how long each kind of detail is kept. A zero field takes the default
// beside it; a negative one keeps that detail for ever. Incidents, their state changes
// (opened, escalated, acknowledged, resolved... and who was notified), models and detector
// states are always kept.
type Retention struct {
	// Samples: the scored samples behind the dashboard's charts, by sample time (default 30
	// days).
	Samples time.Duration
	// TimelineDetail: the timeline's anomaly_recorded and anomaly_silenced entries, by when
	// they were written (default 90 days).
	TimelineDetail time.Duration
	// Inbox: the processed-message ids that make the outbox stages idempotent, by when they
	// were processed (default 7 days: far beyond any redelivery).
	Inbox time.Duration
	// Deliveries: the notification log that keeps an event from being sent twice, by when
	// it was sent (default 30 days); the timeline keeps its notified entries.
	Deliveries time.Duration
	// Models is how many of each service's latest model versions are kept (default 10; a
	// negative count keeps them all). A worker whose saved detector state names a pruned
	// version starts that service from its latest model instead.
	Models int
	// Every is how often the pruner runs (default 1h).
	Every time.Duration
}

// SetDefaults fills every zero field with its default.
func (r *Retention) SetDefaults() {
	for _, f := range []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&r.Samples, 30 * 24 * time.Hour}, {&r.TimelineDetail, 90 * 24 * time.Hour},
		{&r.Inbox, 7 * 24 * time.Hour}, {&r.Deliveries, 30 * 24 * time.Hour}, {&r.Every, time.Hour},
	} {
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if r.Models == 0 {
		r.Models = 10
	}
}

// Validate reports every problem of the retention.
func (r Retention) Validate() error {
	if r.Every <= 0 {
		return errors.New("retention: the pruner's interval must be positive")
	}
	return nil
}

// Pruned counts the rows one pruning deleted.
type Pruned struct {
	Samples, TimelineDetail, Inbox, Deliveries, Models int64
}

// pruneBatch is how many rows one statement deletes: short transactions, so the outbox's
// deliveries never wait behind a long delete.
const pruneBatch = 5000

// Prune deletes what is older than its age at now, in short batches, and returns how many
// rows of each kind went. Several workers may prune at once.
func Prune(ctx context.Context, pool *pgxpool.Pool, r Retention, now time.Time) (Pruned, error) {
	r.SetDefaults()
	var p Pruned
	var errs []error
	// batches runs query, whose last parameter is the batch size, until a batch deletes less.
	batches := func(n *int64, what, query string, args ...any) {
		args = append(args, pruneBatch)
		for {
			tag, err := pool.Exec(ctx, query, args...)
			if err != nil {
				errs = append(errs, fmt.Errorf("prune %s: %w", what, err))
				return
			}
			*n += tag.RowsAffected()
			if tag.RowsAffected() < pruneBatch {
				return
			}
		}
	}
	if r.Samples >= 0 {
		// Service by service, through the primary key.
		services, err := watchedServices(ctx, pool)
		if err != nil {
			errs = append(errs, fmt.Errorf("prune samples: list services: %w", err))
		}
		for _, svc := range services {
			batches(&p.Samples, "samples of "+svc, `DELETE FROM samples WHERE service = $1 AND at IN (
				SELECT at FROM samples WHERE service = $1 AND at < $2 ORDER BY at LIMIT $3)`, svc, now.Add(-r.Samples))
		}
	}
	if r.TimelineDetail >= 0 {
		batches(&p.TimelineDetail, "timeline detail", `DELETE FROM incident_timeline WHERE id IN (
			SELECT id FROM incident_timeline WHERE event IN ('anomaly_recorded', 'anomaly_silenced') AND recorded_at < $1 LIMIT $2)`, now.Add(-r.TimelineDetail))
	}
	if r.Inbox >= 0 {
		batches(&p.Inbox, "inbox", `DELETE FROM processed_messages WHERE (stage, message_id) IN (
			SELECT stage, message_id FROM processed_messages WHERE processed_at < $1 LIMIT $2)`, now.Add(-r.Inbox))
	}
	if r.Deliveries >= 0 {
		batches(&p.Deliveries, "deliveries", `DELETE FROM deliveries WHERE (receiver, event_id) IN (
			SELECT receiver, event_id FROM deliveries WHERE delivered_at < $1 LIMIT $2)`, now.Add(-r.Deliveries))
	}
	if r.Models > 0 {
		batches(&p.Models, "models", `DELETE FROM models WHERE (service, version) IN (
			SELECT m.service, m.version FROM models m
			JOIN (SELECT service, max(version) AS top FROM models GROUP BY service) t USING (service)
			WHERE m.version <= t.top - $1 LIMIT $2)`, r.Models)
	}
	return p, errors.Join(errs...)
}

// watchedServices lists the services the engine keeps a watch of.
func watchedServices(ctx context.Context, pool *pgxpool.Pool) ([]string, error) {
	rows, err := pool.Query(ctx, `SELECT service FROM service_watch`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// Pruner prunes on a schedule (Retention.Every, by the wall clock: ages are of rows
// written now).
type Pruner struct {
	pool   *pgxpool.Pool
	r      Retention
	logger *slog.Logger
	now    func() time.Time
}

// NewPruner returns the pruner of pool's detail under r.
func NewPruner(pool *pgxpool.Pool, r Retention, logger *slog.Logger) *Pruner {
	r.SetDefaults()
	return &Pruner{pool: pool, r: r, logger: logger, now: time.Now}
}

// Run prunes every Retention.Every until ctx ends. A pruning that fails (the database is
// away) is logged and tried again at the next one; it never stops the worker.
func (p *Pruner) Run(ctx context.Context) error {
	tk := time.NewTicker(p.r.Every)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tk.C:
			n, err := Prune(ctx, p.pool, p.r, p.now())
			if err != nil && ctx.Err() == nil {
				p.logger.Warn("pruning incomplete, tried again later", "err", err)
			}
			if n != (Pruned{}) {
				p.logger.Info("pruned", "samples", n.Samples, "timeline_detail", n.TimelineDetail, "inbox", n.Inbox, "deliveries", n.Deliveries, "models", n.Models)
			}
		}
	}
}
