package handlers_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/incident-engine/engine/domain/incident"
	"github.com/incident-engine/engine/domain/sample"
	"github.com/incident-engine/engine/domain/silence"
	"github.com/incident-engine/engine/handlers"
	"github.com/incident-engine/engine/handlers/storetest"
)

// fakeStore is an in-memory handlers.IncidentStore that honours the contract of
// infra/postgres.Store: a transaction works on its own copy of the state and commits it, with
// the messages it published, only when fn returns nil. Transactions are serialised, as the
// database's row locks serialise the stages on one service. Incidents are stored as snapshots
// and rebuilt on load, so a handler can never keep a pointer into the store. Like the
// database's unique index, it refuses a second open incident for a service. Service-level
// timeline entries (Watch.Changes) are appended when the watch is saved, and silences are
// looked up by service and sample time, as the SQL does.
//
// A zero fakeStore is not usable; call newFakeStore.
type fakeStore struct {
	mu        sync.Mutex
	state     fakeState
	published map[string][]*message.Message
	// samples are kept apart from state, which each transaction copies: they only grow.
	samples   map[sampleKey]sample.Scored
	faults    []*fault
	commits   int
	rollbacks int
}

// fakeState is everything a transaction may change.
type fakeState struct {
	watches   map[string]incident.Watch
	incidents map[string]incident.Snapshot
	timeline  map[string][]incident.Entry
	processed map[string]bool
	// serviceTimeline holds the entries that belong to a service, not an incident.
	serviceTimeline map[string][]incident.Entry
	silences        map[string]silence.Silence
}

// fault makes the nth call of op (a method name of fakeTx, or "" for any) fail with err.
type fault struct {
	op  string
	n   int
	err error
}

var _ handlers.IncidentStore[*fakeTx] = (*fakeStore)(nil)

func newFakeStore() *fakeStore {
	return &fakeStore{
		state: fakeState{
			watches:         map[string]incident.Watch{},
			incidents:       map[string]incident.Snapshot{},
			timeline:        map[string][]incident.Entry{},
			processed:       map[string]bool{},
			serviceTimeline: map[string][]incident.Entry{},
			silences:        map[string]silence.Silence{},
		},
		published: map[string][]*message.Message{},
		samples:   map[sampleKey]sample.Scored{},
	}
}

// sampleKey is the samples table's key.
type sampleKey struct {
	service string
	at      time.Time
}

func (s fakeState) clone() fakeState {
	c := fakeState{
		watches:         make(map[string]incident.Watch, len(s.watches)),
		incidents:       maps.Clone(s.incidents),
		timeline:        make(map[string][]incident.Entry, len(s.timeline)),
		processed:       maps.Clone(s.processed),
		serviceTimeline: make(map[string][]incident.Entry, len(s.serviceTimeline)),
		silences:        maps.Clone(s.silences),
	}
	for k, w := range s.watches {
		c.watches[k] = cloneWatch(w)
	}
	for k, es := range s.timeline {
		c.timeline[k] = slices.Clone(es)
	}
	for k, es := range s.serviceTimeline {
		c.serviceTimeline[k] = slices.Clone(es)
	}
	return c
}

func cloneWatch(w incident.Watch) incident.Watch {
	return incident.UnmarshalWatchFromDatabase(w.State())
}

// FailNth makes the nth call (1 for the next one) of the transaction method op fail with err,
// once. An empty op counts calls of every method.
func (s *fakeStore) FailNth(op string, n int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &fault{op: op, n: n, err: err})
}

// InTx runs fn on a copy of the state and commits it only if fn returns nil.
func (s *fakeStore) InTx(ctx context.Context, fn func(*fakeTx) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	tx := &fakeTx{store: s, state: s.state.clone(), published: map[string][]*message.Message{}}
	err := fn(tx)
	tx.done = true
	if err != nil {
		s.rollbacks++
		return err
	}
	s.state = tx.state
	for _, topic := range tx.topics {
		s.published[topic] = append(s.published[topic], tx.published[topic]...)
	}
	for _, x := range tx.samples {
		k := sampleKey{x.Service, x.At.UTC()}
		if _, ok := s.samples[k]; !ok {
			s.samples[k] = x
		}
	}
	s.commits++
	return nil
}

// ServicesWithOpenIncidents lists the services that have an open incident, sorted.
func (s *fakeStore) ServicesWithOpenIncidents(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.injected("ServicesWithOpenIncidents"); err != nil {
		return nil, err
	}
	var out []string
	for _, snap := range s.state.incidents {
		if snap.Status == incident.StatusOpen {
			out = append(out, snap.Service)
		}
	}
	slices.Sort(out)
	return out, nil
}

// injected returns the error of a fault due at this call of op. s.mu must be held.
func (s *fakeStore) injected(op string) error {
	var due error
	kept := s.faults[:0]
	for _, f := range s.faults {
		if f.op == "" || f.op == op {
			f.n--
			if f.n <= 0 && due == nil {
				due = f.err
				continue
			}
		}
		kept = append(kept, f)
	}
	s.faults = kept
	return due
}

// Test accessors. Each returns copies, taken under the lock.

// Incident returns the committed state of incident id.
func (s *fakeStore) Incident(id string) (incident.Snapshot, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap, ok := s.state.incidents[id]
	return snap, ok
}

// Incidents returns every committed incident, ordered by first anomaly.
func (s *fakeStore) Incidents() []incident.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Collect(maps.Values(s.state.incidents))
	slices.SortFunc(out, func(a, b incident.Snapshot) int { return a.FirstSeen.Compare(b.FirstSeen) })
	return out
}

// Timeline returns the committed timeline of incident id.
func (s *fakeStore) Timeline(id string) []incident.Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.state.timeline[id])
}

// ServiceTimeline returns the committed service-level timeline of service.
func (s *fakeStore) ServiceTimeline(service string) []incident.Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.state.serviceTimeline[service])
}

// Silence returns the committed silence id.
func (s *fakeStore) Silence(id string) (silence.Silence, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sil, ok := s.state.silences[id]
	return sil, ok
}

// Watch returns the committed watch of service.
func (s *fakeStore) Watch(service string) (incident.Watch, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.state.watches[service]
	return cloneWatch(w), ok
}

// Samples returns the committed samples of service, oldest first.
func (s *fakeStore) Samples(service string) []sample.Scored {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []sample.Scored
	for k, x := range s.samples {
		if k.service == service {
			out = append(out, x)
		}
	}
	slices.SortFunc(out, func(a, b sample.Scored) int { return a.At.Compare(b.At) })
	return out
}

// Published returns the committed messages of topic, in publishing order.
func (s *fakeStore) Published(topic handlers.OutboxTopic) []*message.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.published[string(topic)])
}

// fakeDump is the whole observable state, comparable with reflect.DeepEqual.
type fakeDump struct {
	State     fakeState
	Published map[string][]string // topic -> message UUIDs
}

// Dump returns the whole observable state.
func (s *fakeStore) Dump() fakeDump {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := fakeDump{State: s.state.clone(), Published: map[string][]string{}}
	for topic, msgs := range s.published {
		for _, m := range msgs {
			d.Published[topic] = append(d.Published[topic], m.UUID)
		}
	}
	return d
}

// fakeTx is one transaction of fakeStore. It is valid only inside InTx.
type fakeTx struct {
	store     *fakeStore
	state     fakeState
	published map[string][]*message.Message
	topics    []string // in order of first publication
	samples   []sample.Scored
	done      bool
}

var _ handlers.OperatorTx = (*fakeTx)(nil)

var errTxDone = errors.New("fake store: transaction used after it ended")

func (tx *fakeTx) begin(op string) error {
	if tx.done {
		return errTxDone
	}
	return tx.store.injected(op)
}

// LoadWatch returns the service's watch, a fresh one if new.
func (tx *fakeTx) LoadWatch(service string) (incident.Watch, error) {
	if err := tx.begin("LoadWatch"); err != nil {
		return incident.Watch{}, err
	}
	w, ok := tx.state.watches[service]
	if !ok {
		return incident.NewWatch(service), nil
	}
	return cloneWatch(w), nil
}

// SaveSamples keeps samples with the commit; one already kept (same service and time) stays
// as it was.
func (tx *fakeTx) SaveSamples(batch ...sample.Scored) error {
	if err := tx.begin("SaveSamples"); err != nil {
		return err
	}
	tx.samples = append(tx.samples, batch...)
	return nil
}

// LockWatches locks nothing: the fake runs one transaction at a time.
func (tx *fakeTx) LockWatches(services ...string) error { return tx.begin("LockWatches") }

// SaveWatch stores the service's watch and appends its pending service-level entries.
func (tx *fakeTx) SaveWatch(w incident.Watch) error {
	if err := tx.begin("SaveWatch"); err != nil {
		return err
	}
	if w.Service() == "" {
		return errors.New("fake store: watch without service")
	}
	if w.IncidentID() != "" {
		if _, ok := tx.state.incidents[w.IncidentID()]; !ok {
			return fmt.Errorf("fake store: watch of %s refers to unknown incident %s (foreign key)", w.Service(), w.IncidentID())
		}
	}
	stored := cloneWatch(w)
	stored.ClearChanges()
	tx.state.watches[w.Service()] = stored
	tx.state.serviceTimeline[w.Service()] = append(tx.state.serviceTimeline[w.Service()], w.Changes()...)
	return nil
}

// LoadIncident rebuilds incident id from its stored snapshot, as the database does; nil for
// an empty id, incident.ErrNotFound for an unknown one.
func (tx *fakeTx) LoadIncident(id string) (*incident.Incident, error) {
	if err := tx.begin("LoadIncident"); err != nil {
		return nil, err
	}
	if id == "" {
		return nil, nil
	}
	snap, ok := tx.state.incidents[id]
	if !ok {
		return nil, fmt.Errorf("load incident %s: %w", id, incident.ErrNotFound)
	}
	return incident.UnmarshalFromDatabase(snap)
}

// IncidentService returns the service of incident id, incident.ErrNotFound for an unknown one.
func (tx *fakeTx) IncidentService(id string) (string, error) {
	if err := tx.begin("IncidentService"); err != nil {
		return "", err
	}
	snap, ok := tx.state.incidents[id]
	if !ok {
		return "", fmt.Errorf("incident %s: %w", id, incident.ErrNotFound)
	}
	return snap.Service, nil
}

// ActiveSilences returns the service's silences that cover sample time at, ordered by start.
func (tx *fakeTx) ActiveSilences(service string, at time.Time) ([]silence.Silence, error) {
	if err := tx.begin("ActiveSilences"); err != nil {
		return nil, err
	}
	var out []silence.Silence
	for _, s := range tx.state.silences {
		if s.Service() == service && s.Active(at) {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b silence.Silence) int { return a.Start().Compare(b.Start()) })
	return out, nil
}

// LoadSilence returns silence id, silence.ErrNotFound for an unknown one.
func (tx *fakeTx) LoadSilence(id string) (silence.Silence, error) {
	if err := tx.begin("LoadSilence"); err != nil {
		return silence.Silence{}, err
	}
	s, ok := tx.state.silences[id]
	if !ok {
		return silence.Silence{}, fmt.Errorf("silence %s: %w", id, silence.ErrNotFound)
	}
	return s, nil
}

// SaveSilence stores a silence; like the SQL, only the end of an existing one can change.
func (tx *fakeTx) SaveSilence(s silence.Silence) error {
	if err := tx.begin("SaveSilence"); err != nil {
		return err
	}
	if old, ok := tx.state.silences[s.ID()]; ok {
		snap := old.Snapshot()
		snap.End = s.End()
		s, _ = silence.UnmarshalFromDatabase(snap)
	}
	tx.state.silences[s.ID()] = s
	return nil
}

// SaveIncident stores the incident's snapshot and appends its pending changes to its
// timeline, returning and clearing them.
func (tx *fakeTx) SaveIncident(inc *incident.Incident) ([]incident.Entry, error) {
	if err := tx.begin("SaveIncident"); err != nil {
		return nil, err
	}
	snap := inc.Snapshot()
	if _, err := incident.UnmarshalFromDatabase(snap); err != nil {
		return nil, fmt.Errorf("fake store: save incident: %w", err) // a CHECK constraint would refuse it
	}
	if snap.Status == incident.StatusOpen {
		for id, other := range tx.state.incidents {
			if id != snap.ID && other.Service == snap.Service && other.Status == incident.StatusOpen {
				return nil, fmt.Errorf("fake store: save incident %s: service %s already has open incident %s (unique index)", snap.ID, snap.Service, id)
			}
		}
	}
	if old, ok := tx.state.incidents[snap.ID]; ok && old.Service != snap.Service {
		return nil, fmt.Errorf("fake store: incident %s moved from service %s to %s", snap.ID, old.Service, snap.Service)
	}
	tx.state.incidents[snap.ID] = snap
	entries := slices.Clone(inc.Changes())
	tx.state.timeline[snap.ID] = append(tx.state.timeline[snap.ID], entries...)
	inc.ClearChanges()
	return entries, nil
}

// MarkProcessed records that stage handled message id, false if it already had.
func (tx *fakeTx) MarkProcessed(stage, id string) (bool, error) {
	if err := tx.begin("MarkProcessed"); err != nil {
		return false, err
	}
	key := stage + "\x00" + id
	if tx.state.processed[key] {
		return false, nil
	}
	tx.state.processed[key] = true
	return true, nil
}

// Publish queues copies of msgs for topic; they become visible when the transaction commits.
func (tx *fakeTx) Publish(topic string, msgs ...*message.Message) error {
	if err := tx.begin("Publish"); err != nil {
		return err
	}
	if _, ok := tx.published[topic]; !ok {
		tx.topics = append(tx.topics, topic)
	}
	for _, m := range msgs {
		tx.published[topic] = append(tx.published[topic], m.Copy())
	}
	return nil
}

// TestFakeStoreHonoursTheContract runs the store contract on the fake the handler tests use;
// infra/postgres runs the same suite on the real store.
func TestFakeStoreHonoursTheContract(t *testing.T) {
	storetest.Run(t, func(*testing.T) handlers.IncidentStore[*fakeTx] { return newFakeStore() })
}
