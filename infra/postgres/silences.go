package postgres

import (
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/incident-engine/engine/domain/silence"
)

const silenceColumns = `id::text, service, starts_at, ends_at, reason, author`

func scanSilence(row pgx.Row) (silence.Silence, error) {
	var s silence.Snapshot
	if err := row.Scan(&s.ID, &s.Service, &s.Start, &s.End, &s.Reason, &s.Author); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return silence.Silence{}, silence.ErrNotFound
		}
		return silence.Silence{}, err
	}
	s.Start, s.End = s.Start.UTC(), s.End.UTC()
	return silence.UnmarshalFromDatabase(s)
}

// ActiveSilences returns the service's silences that cover sample time at, in one query on
// the index of silences by service and end.
func (t *Tx) ActiveSilences(service string, at time.Time) ([]silence.Silence, error) {
	rows, err := t.tx.Query(t.ctx, `SELECT `+silenceColumns+` FROM silences
		WHERE service = $1 AND ends_at > $2 AND starts_at <= $2 ORDER BY starts_at, id`, service, at)
	if err != nil {
		return nil, fmt.Errorf("load silences of %s: %w", service, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (silence.Silence, error) { return scanSilence(r) })
	if err != nil {
		return nil, fmt.Errorf("load silences of %s: %w", service, err)
	}
	return out, nil
}

// LoadSilence locks and returns the silence with id, or an error wrapping silence.ErrNotFound.
func (t *Tx) LoadSilence(id string) (silence.Silence, error) {
	if !validID(id) {
		return silence.Silence{}, fmt.Errorf("silence %q: %w", id, silence.ErrNotFound)
	}
	s, err := scanSilence(t.tx.QueryRow(t.ctx, `SELECT `+silenceColumns+` FROM silences WHERE id = $1 FOR UPDATE`, id))
	if err != nil {
		return silence.Silence{}, fmt.Errorf("load silence %s: %w", id, err)
	}
	return s, nil
}

// SaveSilence stores a new silence or the new end of an existing one.
func (t *Tx) SaveSilence(s silence.Silence) error {
	snap := s.Snapshot()
	_, err := t.tx.Exec(t.ctx, `
		INSERT INTO silences (id, service, starts_at, ends_at, reason, author) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (id) DO UPDATE SET ends_at = EXCLUDED.ends_at, updated_at = now()`,
		snap.ID, snap.Service, snap.Start, snap.End, snap.Reason, snap.Author)
	if err != nil {
		return fmt.Errorf("save silence %s: %w", snap.ID, err)
	}
	return nil
}
