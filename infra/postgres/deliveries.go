package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/incident-engine/engine/domain/incident"
)

// Deliveries is the notification log: which receiver got which incident event, and how.
type Deliveries struct {
	pool *pgxpool.Pool
}

// NewDeliveries returns the notification log over pool.
func NewDeliveries(pool *pgxpool.Pool) *Deliveries { return &Deliveries{pool: pool} }

// Delivered reports whether receiver already had a final outcome for the event.
func (d *Deliveries) Delivered(ctx context.Context, receiver, eventID string) (bool, error) {
	var n int
	if err := d.pool.QueryRow(ctx, `SELECT count(*) FROM deliveries WHERE receiver = $1 AND event_id = $2`, receiver, eventID).Scan(&n); err != nil {
		return false, fmt.Errorf("look up delivery of %s to %s: %w", eventID, receiver, err)
	}
	return n > 0, nil
}

// Record stores the outcome and its timeline entry in one transaction; recording the same
// receiver and event twice keeps the first.
func (d *Deliveries) Record(ctx context.Context, del incident.Delivery) error {
	ev := del.Event
	return pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			INSERT INTO deliveries (receiver, event_id, incident_id, event, ok, attempts, error, delivered_at)
			VALUES ($1, $2, $3, $4, $5, $6, NULLIF($7, ''), $8) ON CONFLICT DO NOTHING`,
			del.Receiver, ev.EventID, ev.IncidentID, string(ev.Event), del.Err == "", del.Attempts, del.Err, del.DeliveredAt)
		if err != nil {
			return fmt.Errorf("record delivery of %s to %s: %w", ev.EventID, del.Receiver, err)
		}
		if tag.RowsAffected() == 0 {
			return nil
		}
		return appendTimeline(ctx, tx, ev.Service, ev.IncidentID, []incident.Entry{del.Entry()})
	})
}
