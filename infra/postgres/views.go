package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/incident-engine/engine/domain/incident"
	"github.com/incident-engine/engine/domain/silence"
)

// Views reads what the operator API shows: incidents with their timelines, and silences. It
// reads committed state outside the stages' transactions and changes nothing.
type Views struct {
	pool *pgxpool.Pool
}

// NewViews returns the read side over pool.
func NewViews(pool *pgxpool.Pool) *Views { return &Views{pool: pool} }

// IncidentKey is a position in the incident list, which is ordered by last_seen, then id,
// newest first.
type IncidentKey struct {
	LastSeen time.Time
	ID       string
}

// IncidentFilter selects incidents. A zero field selects everything.
type IncidentFilter struct {
	Service  string
	Status   incident.Status
	Severity incident.Severity
	// From and To bound last_seen: From <= last_seen < To.
	From, To time.Time
	// After, when set, starts the list right after this key (keyset pagination).
	After *IncidentKey
	// Limit is the most incidents returned (required, at least 1).
	Limit int
}

// Incidents returns the incidents that match f, newest last_seen first.
func (v *Views) Incidents(ctx context.Context, f IncidentFilter) ([]incident.Snapshot, error) {
	if f.Limit < 1 {
		return nil, errors.New("list incidents: limit must be at least 1")
	}
	var (
		where []string
		args  []any
	)
	// cond adds a condition whose ? placeholders take vals, in order.
	cond := func(sql string, vals ...any) {
		for _, val := range vals {
			args = append(args, val)
			sql = strings.Replace(sql, "?", fmt.Sprintf("$%d", len(args)), 1)
		}
		where = append(where, sql)
	}
	if f.Service != "" {
		cond("service = ?", f.Service)
	}
	if f.Status != 0 {
		cond("status = ?", f.Status.String())
	}
	if f.Severity != 0 {
		cond("severity = ?", f.Severity.String())
	}
	if !f.From.IsZero() {
		cond("last_seen >= ?", f.From)
	}
	if !f.To.IsZero() {
		cond("last_seen < ?", f.To)
	}
	if f.After != nil {
		if !validID(f.After.ID) {
			return nil, fmt.Errorf("list incidents: cursor id %q is not an incident id", f.After.ID)
		}
		cond("(last_seen, id) < (?, ?::uuid)", f.After.LastSeen, f.After.ID)
	}
	q := `SELECT ` + incidentColumns + ` FROM incidents`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	args = append(args, f.Limit)
	q += fmt.Sprintf(` ORDER BY last_seen DESC, id DESC LIMIT $%d`, len(args))
	rows, err := v.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list incidents: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (incident.Snapshot, error) { return scanIncident(r) })
	if err != nil {
		return nil, fmt.Errorf("list incidents: %w", err)
	}
	return out, nil
}

// TimelineEntry is one row of a timeline as stored. Details differ by kind (incident changes,
// deliveries, remediations), so they stay raw JSON.
type TimelineEntry struct {
	ID         int64           `json:"id"`
	Event      string          `json:"event"`
	OccurredAt time.Time       `json:"occurred_at"`
	RecordedAt time.Time       `json:"recorded_at"`
	Details    json.RawMessage `json:"details"`
}

// Incident returns incident id and its whole timeline, ordered by occurred_at then id, or an
// error wrapping incident.ErrNotFound.
func (v *Views) Incident(ctx context.Context, id string) (incident.Snapshot, []TimelineEntry, error) {
	if !validID(id) {
		return incident.Snapshot{}, nil, fmt.Errorf("incident %q: %w", id, incident.ErrNotFound)
	}
	s, err := scanIncident(v.pool.QueryRow(ctx, `SELECT `+incidentColumns+` FROM incidents WHERE id = $1`, id))
	if err != nil {
		return s, nil, fmt.Errorf("load incident %s: %w", id, err)
	}
	rows, err := v.pool.Query(ctx, `SELECT id, event, occurred_at, recorded_at, details FROM incident_timeline
		WHERE incident_id = $1 ORDER BY occurred_at, id`, id)
	if err != nil {
		return s, nil, fmt.Errorf("load timeline of %s: %w", id, err)
	}
	timeline, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (TimelineEntry, error) {
		var e TimelineEntry
		err := r.Scan(&e.ID, &e.Event, &e.OccurredAt, &e.RecordedAt, &e.Details)
		e.OccurredAt, e.RecordedAt = e.OccurredAt.UTC(), e.RecordedAt.UTC()
		return e, err
	})
	if err != nil {
		return s, nil, fmt.Errorf("load timeline of %s: %w", id, err)
	}
	return s, timeline, nil
}

// SilenceView is a stored silence with when it was created.
type SilenceView struct {
	Silence   silence.Silence
	CreatedAt time.Time
}

// SilenceFilter selects silences. A zero field selects everything.
type SilenceFilter struct {
	Service string
	// State keeps the silences in that state at time Now (see silence.Silence.State).
	State silence.State
	Now   time.Time
	// Limit is the most silences returned (required, at least 1).
	Limit int
}

// silenceStates are the SQL conditions of silence.Silence.State, with ? the time.
var silenceStates = map[silence.State]string{
	silence.StateActive:  `starts_at <= ? AND ends_at > ? AND ends_at > starts_at`,
	silence.StatePending: `starts_at > ? AND ends_at > starts_at`,
	silence.StateEnded:   `(ends_at <= ? OR ends_at = starts_at)`,
}

// Silences returns the silences that match f, latest start first.
func (v *Views) Silences(ctx context.Context, f SilenceFilter) ([]SilenceView, error) {
	if f.Limit < 1 {
		return nil, errors.New("list silences: limit must be at least 1")
	}
	var where []string
	var args []any
	if f.Service != "" {
		args = append(args, f.Service)
		where = append(where, fmt.Sprintf("service = $%d", len(args)))
	}
	if f.State != "" {
		cond, ok := silenceStates[f.State]
		if !ok {
			return nil, fmt.Errorf("list silences: unknown state %q", f.State)
		}
		args = append(args, f.Now)
		where = append(where, strings.ReplaceAll(cond, "?", fmt.Sprintf("$%d", len(args))))
	}
	q := `SELECT ` + silenceColumns + `, created_at FROM silences`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	args = append(args, f.Limit)
	q += fmt.Sprintf(` ORDER BY starts_at DESC, id DESC LIMIT $%d`, len(args))
	rows, err := v.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list silences: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (SilenceView, error) {
		var s silence.Snapshot
		var created time.Time
		if err := r.Scan(&s.ID, &s.Service, &s.Start, &s.End, &s.Reason, &s.Author, &created); err != nil {
			return SilenceView{}, err
		}
		s.Start, s.End = s.Start.UTC(), s.End.UTC()
		sil, err := silence.UnmarshalFromDatabase(s)
		return SilenceView{Silence: sil, CreatedAt: created.UTC()}, err
	})
	if err != nil {
		return nil, fmt.Errorf("list silences: %w", err)
	}
	return out, nil
}
