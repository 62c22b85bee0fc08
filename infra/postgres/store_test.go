package postgres_test

import (
	"context"
	"errors"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/incident-engine/engine/domain/incident"
	"github.com/incident-engine/engine/domain/sample"
	"github.com/incident-engine/engine/handlers"
	"github.com/incident-engine/engine/handlers/storetest"
	"github.com/incident-engine/engine/infra/postgres"
	"github.com/incident-engine/engine/infra/postgres/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func newStore(t *testing.T) (*postgres.Store, *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	pool, err := postgres.Connect(ctx, pgtest.Database(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	applied, err := postgres.Migrate(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) == 0 {
		t.Fatal("no migration applied to an empty database")
	}
	again, err := postgres.Migrate(ctx, pool)
	if err != nil || len(again) != 0 {
		t.Fatalf("second migration run applied %v, %v; want nothing", again, err)
	}
	return postgres.NewStore(pool, watermill.NopLogger{}), pool
}

var t0 = time.Date(2026, 11, 26, 17, 0, 0, 0, time.UTC)

func sig(min int, score float64) incident.Signal {
	return incident.Signal{At: t0.Add(time.Duration(min) * time.Minute), Score: score, Threshold: 0.6}
}

func TestStoreRoundTrip(t *testing.T) {
	t.Parallel()
	store, pool := newStore(t)
	ctx := context.Background()

	inc, err := incident.Open("0b5c2f0e-7d51-4b55-9c84-5f3c2b0f8a11", "api", []incident.Signal{sig(0, 0.7), sig(1, 0.8), sig(2, 0.75)})
	if err != nil {
		t.Fatal(err)
	}
	if err := inc.EscalateFor(incident.SeverityMedium, "test-rule", incident.Signal{At: sig(2, 0).At, Score: inc.LastScore(), Threshold: inc.Threshold()}, inc.Occurrences()); err != nil {
		t.Fatal(err)
	}
	err = store.InTx(ctx, func(tx *postgres.Tx) error {
		w, err := tx.LoadWatch("api")
		if err != nil {
			return err
		}
		if !w.LastSampleAt().IsZero() || w.IncidentID() != "" {
			t.Errorf("fresh watch = %+v, want empty", w)
		}
		entries, err := tx.SaveIncident(inc)
		if err != nil {
			return err
		}
		if len(entries) != 2 || len(inc.Changes()) != 0 {
			t.Errorf("saved %d entries, %d left pending; want 2 and 0", len(entries), len(inc.Changes()))
		}
		st := w.State()
		st.LastSampleAt, st.IncidentID = sig(2, 0).At, inc.ID()
		st.Recent = []incident.Recent{{Signal: sig(2, 0.75), Anomalous: true}}
		return tx.SaveWatch(incident.UnmarshalWatchFromDatabase(st))
	})
	if err != nil {
		t.Fatal(err)
	}

	err = store.InTx(ctx, func(tx *postgres.Tx) error {
		w, err := tx.LoadWatch("api")
		if err != nil {
			return err
		}
		if !w.LastSampleAt().Equal(sig(2, 0).At) || w.IncidentID() != inc.ID() || len(w.Recent()) != 1 || !w.Recent()[0].Anomalous {
			t.Errorf("watch after reload = %+v", w)
		}
		got, err := tx.LoadIncident(w.IncidentID())
		if err != nil {
			return err
		}
		if got.Snapshot() != inc.Snapshot() {
			t.Errorf("reloaded incident\n got %+v\nwant %+v", got.Snapshot(), inc.Snapshot())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// The seed's query works as written.
	var service, severity, status string
	var count int
	if err := pool.QueryRow(ctx, `SELECT service, severity, status, occurrence_count FROM incidents ORDER BY last_seen DESC;`).Scan(&service, &severity, &status, &count); err != nil {
		t.Fatal(err)
	}
	if service != "api" || severity != "medium" || status != "open" || count != 3 {
		t.Errorf("seed query = %s %s %s %d", service, severity, status, count)
	}
	var events []string
	rows, _ := pool.Query(ctx, `SELECT event FROM incident_timeline WHERE incident_id = $1 ORDER BY id`, inc.ID())
	for rows.Next() {
		var e string
		_ = rows.Scan(&e)
		events = append(events, e)
	}
	if len(events) != 2 || events[0] != "opened" || events[1] != "escalated" {
		t.Errorf("timeline = %v, want [opened escalated]", events)
	}
	open, err := store.ServicesWithOpenIncidents(ctx)
	if err != nil || len(open) != 1 || open[0] != "api" {
		t.Errorf("open services = %v, %v", open, err)
	}
}

// TestWatchRecentIsStoredCompactly checks that a watch's recent samples read back as they
// were saved, an anomaly's whole signal included (a zero score too), and that a sample that
// does not count, kept by its time alone, costs the stored watch about 30 bytes (48 of them:
// 8 minutes of open span at a 10-second spacing).
func TestWatchRecentIsStoredCompactly(t *testing.T) {
	t.Parallel()
	store, pool := newStore(t)
	ctx := context.Background()
	var recent []incident.Recent
	for i := range 48 {
		recent = append(recent, incident.Recent{Signal: incident.Signal{At: t0.Add(time.Duration(10*i) * time.Second)}})
	}
	anomaly := sig(9, 0.93)
	anomaly.ModelVersion, anomaly.Explanation = 3, []incident.Contribution{{Metric: "error_rate", Share: 0.9}, {Metric: "latency_p95", Share: 0.1}}
	recent = append(recent, incident.Recent{Signal: anomaly, Anomalous: true}, incident.Recent{Signal: sig(10, 0), Anomalous: true})
	err := store.InTx(ctx, func(tx *postgres.Tx) error {
		w, err := tx.LoadWatch("api")
		if err != nil {
			return err
		}
		st := w.State()
		st.LastSampleAt, st.Recent = sig(10, 0).At, recent
		return tx.SaveWatch(incident.UnmarshalWatchFromDatabase(st))
	})
	if err != nil {
		t.Fatal(err)
	}
	err = store.InTx(ctx, func(tx *postgres.Tx) error {
		w, err := tx.LoadWatch("api")
		if err != nil {
			return err
		}
		if got := w.Recent(); !reflect.DeepEqual(got, recent) {
			t.Errorf("recent samples after reload\n got %+v\nwant %+v", got, recent)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var healthy int
	if err := pool.QueryRow(ctx, `SELECT length(jsonb_path_query_array(recent, '$[0 to 47]')::text) FROM service_watch WHERE service = 'api'`).Scan(&healthy); err != nil {
		t.Fatal(err)
	}
	if per := float64(healthy) / 48; per > 40 {
		t.Errorf("a healthy sample takes %.0f bytes of the stored watch, want at most 40", per)
	}
}

func TestStoreRollbackLeavesNothing(t *testing.T) {
	t.Parallel()
	store, pool := newStore(t)
	ctx := context.Background()
	sub, err := postgres.NewOutboxSubscriber(pool, postgres.OutboxConfig{}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if err := postgres.InitializeOutbox(sub, "incidents.outbox"); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err = store.InTx(ctx, func(tx *postgres.Tx) error {
		inc, _ := incident.Open("5a0d7a56-55f4-4d7f-8f55-3d0a1b2c3d4e", "db", []incident.Signal{sig(0, 0.9)})
		if _, err := tx.SaveIncident(inc); err != nil {
			return err
		}
		if err := tx.Publish("incidents.outbox", message.NewMessage("e1", []byte(`{}`))); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("InTx error = %v, want boom", err)
	}
	var n int
	_ = pool.QueryRow(ctx, `SELECT count(*) FROM incidents`).Scan(&n)
	var m int
	_ = pool.QueryRow(ctx, `SELECT count(*) FROM "watermill_incidents.outbox"`).Scan(&m)
	if n != 0 || m != 0 {
		t.Errorf("after rollback: %d incidents, %d outbox rows; want none", n, m)
	}
}

func TestStoreOneOpenIncidentPerService(t *testing.T) {
	t.Parallel()
	store, _ := newStore(t)
	ctx := context.Background()
	for i, id := range []string{"11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"} {
		inc, _ := incident.Open(id, "auth", []incident.Signal{sig(i, 0.9)})
		err := store.InTx(ctx, func(tx *postgres.Tx) error { _, err := tx.SaveIncident(inc); return err })
		if i == 0 && err != nil {
			t.Fatal(err)
		}
		if i == 1 && err == nil {
			t.Fatal("a second open incident for the same service was accepted")
		}
	}
}

func TestStoreInboxAndOutbox(t *testing.T) {
	t.Parallel()
	store, pool := newStore(t)
	ctx := context.Background()
	sub, err := postgres.NewOutboxSubscriber(pool, postgres.OutboxConfig{PollInterval: 20 * time.Millisecond}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if err := postgres.InitializeOutbox(sub, "test.out"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		err := store.InTx(ctx, func(tx *postgres.Tx) error {
			first, err := tx.MarkProcessed("stage", "msg-1")
			if err != nil {
				return err
			}
			if first != (i == 0) {
				t.Errorf("attempt %d: first = %v", i, first)
			}
			if !first {
				return nil
			}
			return tx.Publish("test.out", message.NewMessage("m-1", []byte(`{"n":1}`)), message.NewMessage("m-2", []byte(`{"n":2}`)))
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	ch, err := sub.Subscribe(ctx, "test.out")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"m-1", "m-2"} {
		select {
		case m := <-ch:
			if m.UUID != want {
				t.Errorf("got %s, want %s in order", m.UUID, want)
			}
			m.Ack()
		case <-time.After(10 * time.Second):
			t.Fatalf("outbox message %s not delivered", want)
		}
	}
	time.Sleep(100 * time.Millisecond)
	var left int
	_ = pool.QueryRow(ctx, `SELECT count(*) FROM "watermill_test.out"`).Scan(&left)
	if left != 0 {
		t.Errorf("%d acked outbox rows left; the queue deletes on ack", left)
	}
}

func TestSamplesSaveAndRange(t *testing.T) {
	t.Parallel()
	store, pool := newStore(t)
	ctx := context.Background()
	samples := postgres.NewSamples(pool)
	mk := func(min int, judged bool) sample.Scored {
		s, err := sample.New("api", t0.Add(time.Duration(min)*time.Minute), []sample.Metric{{Name: "latency_p95", Value: float64(100 + min)}, {Name: "error_rate", Value: 0.01}})
		if err != nil {
			t.Fatal(err)
		}
		return sample.Scored{Sample: s, Judged: judged, Score: 0.5, Threshold: 0.7, ModelVersion: 1}
	}
	save := func(batch ...sample.Scored) error {
		return store.InTx(ctx, func(tx *postgres.Tx) error { return tx.SaveSamples(batch...) })
	}
	if err := save(mk(0, false), mk(1, true), mk(2, true)); err != nil {
		t.Fatal(err)
	}
	again := mk(1, true)
	again.Score = 0.9
	if err := save(again); err != nil {
		t.Fatalf("saving a sample again: %v, want it ignored", err)
	}
	// A transaction that fails keeps none of its samples.
	if err := store.InTx(ctx, func(tx *postgres.Tx) error {
		if err := tx.SaveSamples(mk(3, true)); err != nil {
			return err
		}
		return errors.New("roll back")
	}); err == nil {
		t.Fatal("the failing transaction committed")
	}
	if later, err := samples.Range(ctx, "api", t0.Add(3*time.Minute), t0.Add(3*time.Minute), 10); err != nil || len(later) != 0 {
		t.Errorf("samples of a rolled-back transaction: %+v, %v", later, err)
	}
	got, err := samples.Range(ctx, "api", t0, t0.Add(time.Minute), 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Judged || !got[1].Judged || got[1].Score != 0.5 {
		t.Fatalf("range = %+v, want minutes 0 (unjudged) and 1 (judged)", got)
	}
	if v, ok := got[1].Value("latency_p95"); !ok || v != 101 {
		t.Errorf("latency of minute 1 = %v, %v", v, ok)
	}
}

// TestDetectorStatesKeepTheLatest checks the detector states' contract: a state saved is
// loaded as it was; an older position on the same partition never replaces a later one (a
// worker that lost the service cannot take its state back); a state of another partition
// replaces it (the topic was repartitioned).
func TestDetectorStatesKeepTheLatest(t *testing.T) {
	t.Parallel()
	_, pool := newStore(t)
	ctx := context.Background()
	states := postgres.NewDetectorStates(pool)
	if _, _, _, ok, err := states.Load(ctx, "api"); ok || err != nil {
		t.Fatalf("Load of a service never saved: ok=%v err=%v, want none", ok, err)
	}
	steps := []struct {
		partition int32
		offset    int64
		state     string
		wantState string
		why       string
	}{
		{2, -1, "first", "first", "the first sample's mark is stored"},
		{2, 40, "at 40", "at 40", "a later state replaces it"},
		{2, 39, "at 39", "at 40", "an earlier one does not"},
		{2, 40, "again 40", "at 40", "nor one of the same position"},
		{5, 3, "moved", "moved", "a state of another partition replaces it"},
	}
	for _, s := range steps {
		if err := states.Save(ctx, "api", s.partition, s.offset, []byte(s.state)); err != nil {
			t.Fatal(err)
		}
		_, _, got, ok, err := states.Load(ctx, "api")
		if err != nil || !ok || string(got) != s.wantState {
			t.Errorf("after saving %q at %d/%d: loaded %q (ok=%v, err=%v), want %q: %s", s.state, s.partition, s.offset, got, ok, err, s.wantState, s.why)
		}
	}
	p, o, _, _, _ := states.Load(ctx, "api")
	if p != 5 || o != 3 {
		t.Errorf("position %d/%d, want 5/3", p, o)
	}
}

// TestPruneRemovesDetailAndKeepsState checks retention: samples, the timeline's anomaly
// entries, inbox ids and delivery rows older than their ages go; newer ones stay, and so do
// incidents, every state change of their timelines and models; a negative age keeps
// everything of its kind.
func TestPruneRemovesDetailAndKeepsState(t *testing.T) {
	t.Parallel()
	_, pool := newStore(t)
	ctx := context.Background()
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	old, recent := now.Add(-100*24*time.Hour), now.Add(-time.Hour)
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := pool.Exec(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec(`INSERT INTO service_watch (service) VALUES ('api')`)
	for _, at := range []time.Time{old, old.Add(time.Minute), recent} {
		exec(`INSERT INTO samples (service, at, metrics) VALUES ('api', $1, '{}')`, at)
	}
	inc := "0b5c2f0e-7d51-4b55-9c84-5f3c2b0f8a11"
	exec(`INSERT INTO incidents (id, service, severity, status, occurrence_count, first_seen, last_seen, episode_start)
		VALUES ($1, 'api', 'low', 'open', 3, $2, $2, $2)`, inc, old)
	for _, e := range []struct {
		event string
		at    time.Time
	}{{"opened", old}, {"anomaly_recorded", old}, {"escalated", old}, {"notified", old}, {"anomaly_recorded", recent}} {
		exec(`INSERT INTO incident_timeline (incident_id, event, occurred_at, recorded_at) VALUES ($1, $2, $3, $3)`, inc, e.event, e.at)
	}
	exec(`INSERT INTO processed_messages (stage, message_id, processed_at) VALUES ('escalate', 'a', $1), ('escalate', 'b', $2)`, old, recent)
	exec(`INSERT INTO deliveries (receiver, event_id, incident_id, event, ok, attempts, delivered_at)
		VALUES ('slack', 'e1', $1, 'opened', true, 1, $2), ('slack', 'e2', $1, 'escalated', true, 1, $3)`, inc, old, recent)

	for v := 1; v <= 12; v++ {
		exec(`INSERT INTO models (service, version, features, typical, threshold, rows, trained_at, forest) VALUES ('api', $1, '{a}', '{0}', 0.5, 1, $2, '\x00')`, v, old)
	}
	got, err := postgres.Prune(ctx, pool, postgres.Retention{Deliveries: -1}, now)
	if err != nil {
		t.Fatal(err)
	}
	want := postgres.Pruned{Samples: 2, TimelineDetail: 1, Inbox: 1, Deliveries: 0, Models: 2}
	if got != want {
		t.Errorf("pruned %+v, want %+v (deliveries kept for ever)", got, want)
	}
	count := func(q string) int {
		var n int
		if err := pool.QueryRow(ctx, q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for q, n := range map[string]int{
		`SELECT count(*) FROM samples`:                                                  1,
		`SELECT count(*) FROM incidents`:                                                1,
		`SELECT count(*) FROM incident_timeline WHERE event <> 'anomaly_recorded'`:      3,
		`SELECT count(*) FROM incident_timeline WHERE event = 'anomaly_recorded'`:       1,
		`SELECT count(*) FROM processed_messages WHERE message_id = 'b'`:                1,
		`SELECT count(*) FROM deliveries`:                                               2,
		`SELECT count(*) FROM samples WHERE at = '` + recent.Format(time.RFC3339) + `'`: 1,
	} {
		if got := count(q); got != n {
			t.Errorf("%s = %d, want %d", q, got, n)
		}
	}
	if again, err := postgres.Prune(ctx, pool, postgres.Retention{}, now); err != nil || again.Deliveries != 1 || again.Samples != 0 {
		t.Errorf("second pruning with the default ages: %+v, %v; want the old delivery only", again, err)
	}
}

// TestStoreHonoursTheContract runs the store contract the handler tests' fake runs too.
func TestStoreHonoursTheContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) handlers.IncidentStore[*postgres.Tx] {
		store, pool := newStore(t)
		// The outbox topic the suite publishes to exists, as the worker creates its topics.
		sub, err := postgres.NewOutboxSubscriber(pool, postgres.OutboxConfig{}, watermill.NopLogger{})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		if err := postgres.InitializeOutbox(sub, storetest.Topic); err != nil {
			t.Fatal(err)
		}
		return store
	})
}

// TestServicesPageInNameOrder reads the services a page at a time: each page the next ones in
// name order after the cursor, the last page short, every service once.
func TestServicesPageInNameOrder(t *testing.T) {
	t.Parallel()
	_, pool := newStore(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `INSERT INTO service_watch (service) VALUES ('db'), ('api'), ('cache'), ('edge'), ('auth')`); err != nil {
		t.Fatal(err)
	}
	var got [][]string
	for after := ""; ; {
		page, err := postgres.Services(ctx, pool, t0, time.Hour, 5, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, s := range page {
			names = append(names, s.Service)
		}
		got = append(got, names)
		if len(page) < 2 {
			break
		}
		after = page[len(page)-1].Service
	}
	want := [][]string{{"api", "auth"}, {"cache", "db"}, {"edge"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("pages %v, want %v", got, want)
	}
}
