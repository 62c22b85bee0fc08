package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/incident-engine/engine/domain/incident"
	"github.com/incident-engine/engine/domain/silence"
	"github.com/incident-engine/engine/infra/postgres"
	"github.com/incident-engine/engine/infra/postgres/pgtest"
	"github.com/incident-engine/engine/migrations"
)

func TestStoreAcknowledgementAndServiceTimeline(t *testing.T) {
	t.Parallel()
	store, pool := newStore(t)
	ctx := context.Background()
	inc, err := incident.Open("3f1c2a8e-4b7d-4e0f-9a3c-2d8e1b7f4c61", "api", []incident.Signal{sig(0, 0.7)})
	if err != nil {
		t.Fatal(err)
	}
	if err := inc.Acknowledge("alice", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	w := incident.UnmarshalWatchFromDatabase(incident.WatchState{Service: "api", IncidentID: inc.ID()})
	c, _ := incident.NewCorrelator(incident.CorrelationConfig{})
	// A silenced anomaly of another service with no incident is recorded on that service.
	quiet := incident.NewWatch("db")
	if _, err := c.Observe(&quiet, nil, incident.Observation{At: t0, Score: 0.9, Threshold: 0.6, Judged: true, Anomalous: true, Silence: "s-1"}, nil); err != nil {
		t.Fatal(err)
	}
	err = store.InTx(ctx, func(tx *postgres.Tx) error {
		if _, err := tx.LoadWatch("api"); err != nil {
			return err
		}
		if _, err := tx.SaveIncident(inc); err != nil {
			return err
		}
		if err := tx.SaveWatch(w); err != nil {
			return err
		}
		if _, err := tx.LoadWatch("db"); err != nil {
			return err
		}
		return tx.SaveWatch(quiet)
	})
	if err != nil {
		t.Fatal(err)
	}
	err = store.InTx(ctx, func(tx *postgres.Tx) error {
		got, err := tx.LoadIncident(inc.ID())
		if err != nil {
			return err
		}
		if got.Snapshot() != inc.Snapshot() || got.AckedBy() != "alice" {
			t.Errorf("reloaded %+v, want %+v", got.Snapshot(), inc.Snapshot())
		}
		if _, err := tx.LoadIncident("0b5c2f0e-0000-4b55-9c84-5f3c2b0f8a11"); !errors.Is(err, incident.ErrNotFound) {
			t.Errorf("unknown incident: %v, want ErrNotFound", err)
		}
		if _, err := tx.LoadIncident("not-a-uuid"); !errors.Is(err, incident.ErrNotFound) {
			t.Errorf("malformed id: %v, want ErrNotFound, not a database error", err)
		}
		if svc, err := tx.IncidentService(inc.ID()); err != nil || svc != "api" {
			t.Errorf("IncidentService = %q, %v", svc, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	rows, err := pool.Query(ctx, `SELECT coalesce(incident_id::text, ''), service, event, details->>'silence_id' FROM incident_timeline ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var id, svc, ev string
		var sil *string
		if err := rows.Scan(&id, &svc, &ev, &sil); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%v|%s|%s|%v", id == inc.ID(), svc, ev, sil != nil && *sil == "s-1"))
	}
	want := []string{"true|api|opened|false", "true|api|acknowledged|false", "false|db|anomaly_silenced|true"}
	if !slices.Equal(got, want) {
		t.Errorf("timeline rows %v, want %v", got, want)
	}

	// Writers that name only the incident get its service from the trigger.
	if _, err := pool.Exec(ctx, `INSERT INTO incident_timeline (incident_id, event, occurred_at) VALUES ($1, 'notified', now())`, inc.ID()); err != nil {
		t.Fatal(err)
	}
	var svc string
	if err := pool.QueryRow(ctx, `SELECT service FROM incident_timeline WHERE event = 'notified'`).Scan(&svc); err != nil || svc != "api" {
		t.Errorf("service of an entry written without one: %q, %v; want api", svc, err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO incident_timeline (service, event, occurred_at) VALUES ('api', 'opened', now())`); err == nil {
		t.Error("an incident kind without an incident was accepted")
	}
}

func TestStoreSilences(t *testing.T) {
	t.Parallel()
	store, pool := newStore(t)
	ctx := context.Background()
	mk := func(id, service string, from, to int) silence.Silence {
		s, err := silence.New(id, service, t0.Add(time.Duration(from)*time.Minute), t0.Add(time.Duration(to)*time.Minute), "upgrade", "alice")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a := mk("aaaaaaaa-0000-4000-8000-000000000001", "api", 0, 60)
	b := mk("aaaaaaaa-0000-4000-8000-000000000002", "api", 30, 90)
	c := mk("aaaaaaaa-0000-4000-8000-000000000003", "db", 0, 60)
	err := store.InTx(ctx, func(tx *postgres.Tx) error {
		for _, s := range []silence.Silence{a, b, c} {
			if err := tx.SaveSilence(s); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		service string
		minute  int
		want    []string
		why     string
	}{
		{"before", "api", -1, nil, "nothing has started"},
		{"first only", "api", 10, []string{a.ID()}, "the second starts at 30"},
		{"both", "api", 45, []string{a.ID(), b.ID()}, "overlapping windows, earliest start first"},
		{"end is exclusive", "api", 60, []string{b.ID()}, "the first ended at 60"},
		{"other service", "auth", 45, nil, "silences are per service"},
	}
	for _, tc := range cases {
		err := store.InTx(ctx, func(tx *postgres.Tx) error {
			got, err := tx.ActiveSilences(tc.service, t0.Add(time.Duration(tc.minute)*time.Minute))
			if err != nil {
				return err
			}
			var ids []string
			for _, s := range got {
				ids = append(ids, s.ID())
			}
			if !slices.Equal(ids, tc.want) {
				t.Errorf("%s: active %v, want %v (%s)", tc.name, ids, tc.want, tc.why)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	// Ending one early moves only its end.
	err = store.InTx(ctx, func(tx *postgres.Tx) error {
		s, err := tx.LoadSilence(a.ID())
		if err != nil {
			return err
		}
		if s != a {
			t.Errorf("loaded %+v, want %+v", s.Snapshot(), a.Snapshot())
		}
		if err := s.Expire(t0.Add(20 * time.Minute)); err != nil {
			return err
		}
		return tx.SaveSilence(s)
	})
	if err != nil {
		t.Fatal(err)
	}
	views := postgres.NewViews(pool)
	list, err := views.Silences(ctx, postgres.SilenceFilter{Service: "api", Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Silence.ID() != b.ID() || !list[1].Silence.End().Equal(t0.Add(20*time.Minute)) || list[1].CreatedAt.IsZero() {
		t.Errorf("api's silences %+v, want b then a ended at minute 20", list)
	}
	for _, tc := range []struct {
		state  silence.State
		minute int
		want   []string
	}{
		{silence.StateActive, 45, []string{b.ID(), c.ID()}},
		{silence.StatePending, 25, []string{b.ID()}},
		{silence.StateEnded, 25, []string{a.ID()}},
		{silence.StateEnded, 90, []string{b.ID(), c.ID(), a.ID()}},
	} {
		list, err := views.Silences(ctx, postgres.SilenceFilter{State: tc.state, Now: t0.Add(time.Duration(tc.minute) * time.Minute), Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, v := range list {
			ids = append(ids, v.Silence.ID())
			if got := v.Silence.State(t0.Add(time.Duration(tc.minute) * time.Minute)); got != tc.state {
				t.Errorf("%s at minute %d: %s is %s by the domain's rule", tc.state, tc.minute, v.Silence.ID(), got)
			}
		}
		if !slices.Equal(ids, tc.want) {
			t.Errorf("%s at minute %d: %v, want %v", tc.state, tc.minute, ids, tc.want)
		}
	}
	err = store.InTx(ctx, func(tx *postgres.Tx) error {
		_, err := tx.LoadSilence("aaaaaaaa-0000-4000-8000-00000000000f")
		if !errors.Is(err, silence.ErrNotFound) {
			t.Errorf("unknown silence: %v, want ErrNotFound", err)
		}
		_, err = tx.LoadSilence("nope")
		if !errors.Is(err, silence.ErrNotFound) {
			t.Errorf("malformed id: %v, want ErrNotFound", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestViewsIncidentPages walks the incident list page by page under several filters and
// checks every page against the same selection made in Go.
func TestViewsIncidentPages(t *testing.T) {
	t.Parallel()
	store, pool := newStore(t)
	ctx := context.Background()
	var all []incident.Snapshot
	// 23 incidents over three services; some share a last_seen, so the id breaks ties.
	for i := range 23 {
		svc := []string{"api", "db", "auth"}[i%3]
		if i%5 == 0 { // stays open: one open incident per service
			svc = fmt.Sprintf("open-%d", i)
		}
		at := i / 2 // pairs share a minute
		id := fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
		inc, err := incident.Open(id, svc, []incident.Signal{sig(at, 0.7)})
		if err != nil {
			t.Fatal(err)
		}
		if i%4 == 0 {
			if err := inc.EscalateFor(incident.SeverityHigh, "test", incident.Signal{At: sig(at, 0).At, Score: inc.LastScore(), Threshold: inc.Threshold()}, inc.Occurrences()); err != nil {
				t.Fatal(err)
			}
		}
		if i%5 != 0 {
			if err := inc.Resolve(sig(at+1, 0).At, "healthy"); err != nil {
				t.Fatal(err)
			}
		}
		if err := store.InTx(ctx, func(tx *postgres.Tx) error { _, err := tx.SaveIncident(inc); return err }); err != nil {
			t.Fatal(err)
		}
		all = append(all, inc.Snapshot())
	}
	slices.SortFunc(all, func(a, b incident.Snapshot) int {
		if c := b.LastSeen.Compare(a.LastSeen); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	views := postgres.NewViews(pool)
	cases := []struct {
		name   string
		filter postgres.IncidentFilter
		keep   func(incident.Snapshot) bool
	}{
		{"everything", postgres.IncidentFilter{}, func(incident.Snapshot) bool { return true }},
		{"service", postgres.IncidentFilter{Service: "db"}, func(s incident.Snapshot) bool { return s.Service == "db" }},
		{"open", postgres.IncidentFilter{Status: incident.StatusOpen}, func(s incident.Snapshot) bool { return s.Status == incident.StatusOpen }},
		{"high", postgres.IncidentFilter{Severity: incident.SeverityHigh}, func(s incident.Snapshot) bool { return s.Severity == incident.SeverityHigh }},
		{"time range", postgres.IncidentFilter{From: sig(3, 0).At, To: sig(8, 0).At}, func(s incident.Snapshot) bool {
			return !s.LastSeen.Before(sig(3, 0).At) && s.LastSeen.Before(sig(8, 0).At)
		}},
	}
	for _, tc := range cases {
		for _, size := range []int{1, 4, 50} {
			var want []string
			for _, s := range all {
				if tc.keep(s) {
					want = append(want, s.ID)
				}
			}
			var got []string
			f := tc.filter
			f.Limit = size
			for page := 0; ; page++ {
				if page > 30 {
					t.Fatalf("%s by %d: more pages than incidents", tc.name, size)
				}
				rows, err := views.Incidents(ctx, f)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range rows {
					got = append(got, r.ID)
				}
				if len(rows) < size {
					break
				}
				last := rows[len(rows)-1]
				f.After = &postgres.IncidentKey{LastSeen: last.LastSeen, ID: last.ID}
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s in pages of %d:\n got %v\nwant %v", tc.name, size, got, want)
			}
		}
	}
	if _, err := views.Incidents(ctx, postgres.IncidentFilter{Limit: 5, After: &postgres.IncidentKey{ID: "junk"}}); err == nil {
		t.Error("a cursor with a malformed id was accepted")
	}
	snap, tl, err := views.Incident(ctx, all[0].ID)
	if err != nil || snap.ID != all[0].ID || len(tl) == 0 || tl[0].Event != "opened" {
		t.Errorf("Incident(%s) = %+v, %+v, %v", all[0].ID, snap, tl, err)
	}
	if _, _, err := views.Incident(ctx, "00000000-0000-4000-8000-999999999999"); !errors.Is(err, incident.ErrNotFound) {
		t.Errorf("unknown incident: %v, want ErrNotFound", err)
	}
}

// TestMigrationsOutOfOrder applies every migration but 00003 (as on a database that ran the
// later ones first), writes a timeline row, then the full set: 00003 is applied late, fills
// in the row's service and leaves the full list of timeline kinds.
func TestMigrationsOutOfOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.Database(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	without := fstest.MapFS{}
	names, err := fs.Glob(migrations.FS, "*.sql")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if strings.HasPrefix(n, "00003_") {
			continue
		}
		b, err := fs.ReadFile(migrations.FS, n)
		if err != nil {
			t.Fatal(err)
		}
		without[n] = &fstest.MapFile{Data: b}
	}
	if _, err := postgres.MigrateFS(ctx, db, without); err != nil {
		t.Fatal(err)
	}
	id := "3f1c2a8e-4b7d-4e0f-9a3c-2d8e1b7f4c62"
	if _, err := pool.Exec(ctx, `INSERT INTO incidents (id, service, severity, status, occurrence_count, first_seen, last_seen, episode_start)
		VALUES ($1, 'api', 'low', 'open', 1, now(), now(), now())`, id); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO incident_timeline (incident_id, event, occurred_at) VALUES ($1, 'opened', now())`, id); err != nil {
		t.Fatal(err)
	}
	applied, err := postgres.Migrate(ctx, pool)
	if err != nil || !slices.Equal(applied, []int64{3}) {
		t.Fatalf("late migration: applied %v, %v; want [3]", applied, err)
	}
	var svc string
	if err := pool.QueryRow(ctx, `SELECT service FROM incident_timeline WHERE incident_id = $1`, id).Scan(&svc); err != nil || svc != "api" {
		t.Errorf("backfilled service %q, %v; want api", svc, err)
	}
	for _, kind := range []string{"acknowledged", "remediation_ineffective", "notified"} {
		if _, err := pool.Exec(ctx, `INSERT INTO incident_timeline (incident_id, event, occurred_at) VALUES ($1, $2, now())`, id, kind); err != nil {
			t.Errorf("timeline kind %s refused after the late migration: %v", kind, err)
		}
	}
}
