package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	fastjson "github.com/segmentio/encoding/json"

	"github.com/incident-engine/engine/domain/incident"
)

// Store is the incident repository. A zero Store is not usable; build it with NewStore.
type Store struct {
	pool   *pgxpool.Pool
	logger watermill.LoggerAdapter
}

// NewStore returns a repository over pool.
func NewStore(pool *pgxpool.Pool, logger watermill.LoggerAdapter) *Store {
	return &Store{pool: pool, logger: logger}
}

// InTx runs fn in one transaction and commits it when fn returns nil. Everything fn saves and
// publishes through the Tx commits together or not at all.
func (s *Store) InTx(ctx context.Context, fn func(*Tx) error) error {
	return pgx.BeginFunc(ctx, s.pool, func(ptx pgx.Tx) error {
		pub, err := wsql.NewPublisher(wsql.TxFromPgx(ptx), wsql.PublisherConfig{SchemaAdapter: QueueSchema()}, s.logger)
		if err != nil {
			return fmt.Errorf("outbox publisher: %w", err)
		}
		t := &Tx{ctx: ctx, tx: ptx, outbox: pub, watches: map[string]incident.WatchState{}, isDirty: map[string]bool{}}
		if err := fn(t); err != nil {
			return err
		}
		return t.sendWatches()
	})
}

// ServicesWithOpenIncidents lists the services that have an open incident.
func (s *Store) ServicesWithOpenIncidents(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT service FROM incidents WHERE status = 'open' ORDER BY service`)
	if err != nil {
		return nil, fmt.Errorf("list open incidents: %w", err)
	}
	services, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list open incidents: %w", err)
	}
	return services, nil
}

// Tx is one transaction of the repository. It is valid only inside Store.InTx.
type Tx struct {
	ctx    context.Context
	tx     pgx.Tx
	outbox *wsql.Publisher
	// watches are the watches this transaction has locked or saved, as they stand in it, so
	// that LoadWatch reads them without a round trip.
	watches map[string]incident.WatchState
	// dirty lists the services whose watch was saved, each once, in order; isDirty is its set.
	dirty   []string
	isDirty map[string]bool
	// saved queues the sample writes and, at the commit, the watches'; they go to the server
	// together. Only LoadWatch reads service_watch inside a transaction, and it reads watches;
	// nothing reads samples inside one.
	saved pgx.Batch
}

// LoadWatch locks and returns the service's correlation state, a fresh one for a new service.
func (t *Tx) LoadWatch(service string) (incident.Watch, error) {
	if _, ok := t.watches[service]; !ok {
		if err := t.LockWatches(service); err != nil {
			return incident.Watch{}, err
		}
	}
	return incident.UnmarshalWatchFromDatabase(t.watches[service]), nil
}

// LockWatches locks the services' watches, creating those that are new: one round trip when
// every service has a watch, as all but a new service's first samples find; the LoadWatch of
// each that follows reads it from the transaction. Existing rows are locked in the order of
// the services' names, new ones created and locked after them in that order, so only two
// transactions (of two workers during a rebalance) creating the same services at once can
// deadlock; PostgreSQL then aborts one, whose message is retried.
func (t *Tx) LockWatches(services ...string) error {
	todo := t.unlocked(services)
	if len(todo) == 0 {
		return nil
	}
	slices.Sort(todo)
	todo = slices.Compact(todo)
	if err := t.lockWatches(todo); err != nil {
		return err
	}
	missing := t.unlocked(todo)
	if len(missing) == 0 {
		return nil
	}
	// Watches of services seen for the first time. A watch another transaction has created
	// meanwhile is kept as it is, and locked by the select.
	if _, err := t.tx.Exec(t.ctx, `INSERT INTO service_watch (service) SELECT unnest($1::text[]) ORDER BY 1 ON CONFLICT DO NOTHING`, missing); err != nil {
		return fmt.Errorf("create watches for %d services: %w", len(missing), err)
	}
	if err := t.lockWatches(missing); err != nil {
		return err
	}
	if still := t.unlocked(missing); len(still) > 0 {
		return fmt.Errorf("load watches of %d services: %s not found", len(todo), still[0])
	}
	return nil
}

// unlocked returns the services, in their order, whose watch the transaction does not hold yet.
func (t *Tx) unlocked(services []string) []string {
	var out []string
	for _, s := range services {
		if _, ok := t.watches[s]; !ok {
			out = append(out, s)
		}
	}
	return out
}

// lockWatches locks and reads the watches of services (sorted) that exist.
func (t *Tx) lockWatches(services []string) error {
	rows, err := t.tx.Query(t.ctx, `
		SELECT service, last_sample_at, last_received_at, healthy_since, healthy_count, recovered_at, recent, incident_id::text
		FROM service_watch WHERE service = ANY($1) ORDER BY service FOR UPDATE`, services)
	if err != nil {
		return fmt.Errorf("load watches of %d services: %w", len(services), err)
	}
	states, err := pgx.CollectRows(rows, scanWatch)
	if err != nil {
		return fmt.Errorf("load watches of %d services: %w", len(services), err)
	}
	for _, st := range states {
		t.watches[st.Service] = st
	}
	return nil
}

func scanWatch(row pgx.CollectableRow) (incident.WatchState, error) {
	var (
		st                                                incident.WatchState
		lastSample, lastReceived, healthySince, recovered *time.Time
		recent                                            []byte
		incidentID                                        *string
	)
	if err := row.Scan(&st.Service, &lastSample, &lastReceived, &healthySince, &st.HealthyCount, &recovered, &recent, &incidentID); err != nil {
		return st, err
	}
	st.LastSampleAt, st.LastReceivedAt = deref(lastSample), deref(lastReceived)
	st.HealthySince, st.RecoveredAt = deref(healthySince), deref(recovered)
	if incidentID != nil {
		st.IncidentID = *incidentID
	}
	if err := fastjson.Unmarshal(recent, &st.Recent); err != nil {
		return st, fmt.Errorf("decode recent samples of %s: %w", st.Service, err)
	}
	return st, nil
}

// SaveWatch stores the service's correlation state and appends its pending service-level
// timeline entries (w.Changes). The state is written with the commit, with every other watch
// the transaction saves, in one round trip: one update per service, of its last state, however
// many of its samples the transaction correlated.
func (t *Tx) SaveWatch(w incident.Watch) error {
	st := w.State()
	if !t.isDirty[st.Service] {
		t.dirty, t.isDirty[st.Service] = append(t.dirty, st.Service), true
	}
	t.watches[st.Service] = st
	return t.appendTimeline(st.Service, "", w.Changes())
}

// sendWatches writes the saved watches and samples, before the commit.
func (t *Tx) sendWatches() error {
	for _, service := range t.dirty {
		st := t.watches[service]
		recent, err := fastjson.Marshal(st.Recent)
		if err != nil {
			return fmt.Errorf("encode recent samples of %s: %w", st.Service, err)
		}
		t.saved.Queue(`
			UPDATE service_watch SET last_sample_at = $2, last_received_at = $3, healthy_since = $4,
				recovered_at = $5, recent = $6, incident_id = $7, healthy_count = $8, updated_at = now()
			WHERE service = $1`,
			st.Service, ptr(st.LastSampleAt), ptr(st.LastReceivedAt), ptr(st.HealthySince), ptr(st.RecoveredAt),
			recent, nullable(st.IncidentID), st.HealthyCount)
	}
	if t.saved.Len() == 0 {
		return nil
	}
	if err := t.tx.SendBatch(t.ctx, &t.saved).Close(); err != nil {
		return fmt.Errorf("save %d watches and the samples: %w", len(t.dirty), err)
	}
	return nil
}

// LoadIncident locks and returns the incident with id, nil when id is empty, or an error
// wrapping incident.ErrNotFound when there is no such incident.
func (t *Tx) LoadIncident(id string) (*incident.Incident, error) {
	if id == "" {
		return nil, nil
	}
	if !validID(id) {
		return nil, fmt.Errorf("load incident %q: %w", id, incident.ErrNotFound)
	}
	s, err := scanIncident(t.tx.QueryRow(t.ctx, `SELECT `+incidentColumns+` FROM incidents WHERE id = $1 FOR UPDATE`, id))
	if err != nil {
		return nil, fmt.Errorf("load incident %s: %w", id, err)
	}
	return incident.UnmarshalFromDatabase(s)
}

// incidentColumns are the columns scanIncident reads, in its order.
const incidentColumns = `id::text, service, severity, status, occurrence_count, first_seen, last_seen, resolved_at,
	episode_start, peak_excess, last_score, threshold, reopen_count, data_stopped, acked_by, acked_at`

// scanIncident reads one row of incidentColumns; no row is incident.ErrNotFound.
func scanIncident(row pgx.Row) (incident.Snapshot, error) {
	var (
		s                   incident.Snapshot
		severity, status    string
		resolvedAt, ackedAt *time.Time
		ackedBy             *string
	)
	err := row.Scan(&s.ID, &s.Service, &severity, &status, &s.Occurrences, &s.FirstSeen, &s.LastSeen, &resolvedAt,
		&s.EpisodeStart, &s.PeakExcess, &s.LastScore, &s.Threshold, &s.Reopens, &s.DataStopped, &ackedBy, &ackedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, incident.ErrNotFound
	}
	if err != nil {
		return s, err
	}
	s.ResolvedAt, s.AckedAt = deref(resolvedAt), deref(ackedAt)
	if ackedBy != nil {
		s.AckedBy = *ackedBy
	}
	s.FirstSeen, s.LastSeen, s.EpisodeStart = s.FirstSeen.UTC(), s.LastSeen.UTC(), s.EpisodeStart.UTC()
	var e1, e2 error
	s.Severity, e1 = incident.ParseSeverity(severity)
	s.Status, e2 = incident.ParseStatus(status)
	return s, errors.Join(e1, e2)
}

// IncidentService returns the service of incident id without locking anything, or an error
// wrapping incident.ErrNotFound. Operator actions use it to lock the service's watch before
// the incident, in the order every stage locks them.
func (t *Tx) IncidentService(id string) (string, error) {
	if !validID(id) {
		return "", fmt.Errorf("incident %q: %w", id, incident.ErrNotFound)
	}
	var service string
	err := t.tx.QueryRow(t.ctx, `SELECT service FROM incidents WHERE id = $1`, id).Scan(&service)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("incident %s: %w", id, incident.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("look up incident %s: %w", id, err)
	}
	return service, nil
}

// validID reports whether id can be an incident or silence id (a UUID); any other string
// names nothing, and asking PostgreSQL about it would be an error rather than no row.
func validID(id string) bool {
	_, err := uuid.Parse(id)
	return err == nil
}

// SaveIncident upserts the incident's state and appends its pending timeline entries, then
// clears them. It returns the entries it saved, oldest first.
func (t *Tx) SaveIncident(inc *incident.Incident) ([]incident.Entry, error) {
	s := inc.Snapshot()
	_, err := t.tx.Exec(t.ctx, `
		INSERT INTO incidents (id, service, severity, status, occurrence_count, first_seen, last_seen, resolved_at,
			episode_start, peak_excess, last_score, threshold, reopen_count, data_stopped, acked_by, acked_at, updated_at)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16, now())
		ON CONFLICT (id) DO UPDATE SET severity = EXCLUDED.severity, status = EXCLUDED.status,
			occurrence_count = EXCLUDED.occurrence_count, last_seen = EXCLUDED.last_seen,
			resolved_at = EXCLUDED.resolved_at, episode_start = EXCLUDED.episode_start,
			peak_excess = EXCLUDED.peak_excess, last_score = EXCLUDED.last_score,
			threshold = EXCLUDED.threshold, reopen_count = EXCLUDED.reopen_count,
			data_stopped = EXCLUDED.data_stopped, acked_by = EXCLUDED.acked_by,
			acked_at = EXCLUDED.acked_at, updated_at = now()`,
		s.ID, s.Service, s.Severity.String(), s.Status.String(), s.Occurrences, s.FirstSeen, s.LastSeen,
		ptr(s.ResolvedAt), s.EpisodeStart, s.PeakExcess, s.LastScore, s.Threshold, s.Reopens, s.DataStopped,
		nullable(s.AckedBy), ptr(s.AckedAt))
	if err != nil {
		return nil, fmt.Errorf("save incident %s: %w", s.ID, err)
	}
	entries := inc.Changes()
	if err := t.appendTimeline(s.Service, s.ID, entries); err != nil {
		return nil, err
	}
	inc.ClearChanges()
	return entries, nil
}

// appendTimeline writes entries to the timeline of service and, unless incidentID is empty,
// of that incident.
func (t *Tx) appendTimeline(service, incidentID string, entries []incident.Entry) error {
	return appendTimeline(t.ctx, t.tx, service, incidentID, entries)
}

// appendTimeline is the one writer of the timeline: every entry, whatever recorded it, goes
// through here, in the caller's transaction.
func appendTimeline(ctx context.Context, tx pgx.Tx, service, incidentID string, entries []incident.Entry) error {
	for _, e := range entries {
		details, err := fastjson.Marshal(e.Details)
		if err != nil {
			return fmt.Errorf("encode timeline details: %w", err)
		}
		if _, err := tx.Exec(ctx,
			`INSERT INTO incident_timeline (incident_id, service, event, occurred_at, details) VALUES ($1, $2, $3, $4, $5)`,
			nullable(incidentID), service, string(e.Kind), e.At, details); err != nil {
			return fmt.Errorf("append %s to timeline of %s %s: %w", e.Kind, service, incidentID, err)
		}
	}
	return nil
}

// MarkProcessed records that stage handled the message with id. It returns false when the
// stage already did: the caller then skips the message (the inbox half of exactly-once).
func (t *Tx) MarkProcessed(stage, id string) (bool, error) {
	tag, err := t.tx.Exec(t.ctx, `INSERT INTO processed_messages (stage, message_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, stage, id)
	if err != nil {
		return false, fmt.Errorf("mark %s processed by %s: %w", id, stage, err)
	}
	return tag.RowsAffected() == 1, nil
}

// Publish writes messages to the outbox topic inside this transaction: they become visible to
// the outbox's subscribers only if the transaction commits.
func (t *Tx) Publish(topic string, msgs ...*message.Message) error {
	for _, m := range msgs {
		m.SetContext(t.ctx)
	}
	if err := t.outbox.Publish(topic, msgs...); err != nil {
		return fmt.Errorf("publish to outbox %s: %w", topic, err)
	}
	return nil
}

func deref(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

func ptr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
