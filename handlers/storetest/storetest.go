// Package storetest is the contract of handlers.IncidentStore as a test suite: the in-memory
// fake the handler tests use and the PostgreSQL store (infra/postgres) both run it, so the
// handler tests' fake cannot drift from what the real store does.
package storetest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/incident-engine/engine/domain/incident"
	"github.com/incident-engine/engine/handlers"
)

var t0 = time.Date(2026, 11, 26, 17, 0, 0, 0, time.UTC)

func signals(from, n int) []incident.Signal {
	out := make([]incident.Signal, n)
	for i := range out {
		out[i] = incident.Signal{At: t0.Add(time.Duration(from+i) * time.Minute), Score: 0.7, Threshold: 0.6, ModelVersion: 1}
	}
	return out
}

var errRollback = errors.New("roll back")

// pointedAt returns w pointing at incident id, as the correlator leaves it when it opens one.
func pointedAt(w incident.Watch, id string) incident.Watch {
	st := w.State()
	st.IncidentID = id
	return incident.UnmarshalWatchFromDatabase(st)
}

// Topic is the outbox topic the suite publishes to; a store that needs its topics made first
// makes this one.
const Topic = "incidents.correlated"

// Run checks the contract on stores made by newStore, each empty.
func Run[T handlers.IncidentTx](t *testing.T, newStore func(t *testing.T) handlers.IncidentStore[T]) {
	ctx := context.Background()
	inTx := func(t *testing.T, s handlers.IncidentStore[T], fn func(T) error) {
		t.Helper()
		if err := s.InTx(ctx, fn); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("a committed change is read back", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		inc, err := incident.Open("0b5c2f0e-7d51-4b55-9c84-5f3c2b0f8a11", "api", signals(0, 3))
		if err != nil {
			t.Fatal(err)
		}
		var entries []incident.Entry
		inTx(t, s, func(tx T) error {
			w, err := tx.LoadWatch("api")
			if err != nil {
				return err
			}
			w = pointedAt(w, inc.ID())
			if entries, err = tx.SaveIncident(inc); err != nil {
				return err
			}
			if err := tx.Publish(Topic, message.NewMessage("ev-1", []byte(`{}`))); err != nil {
				return err
			}
			return tx.SaveWatch(w)
		})
		if len(entries) != 1 || entries[0].Kind != incident.KindOpened {
			t.Errorf("SaveIncident returned %+v, want the pending opened entry", entries)
		}
		inTx(t, s, func(tx T) error {
			w, err := tx.LoadWatch("api")
			if err != nil {
				return err
			}
			if w.IncidentID() != inc.ID() {
				t.Errorf("watch incident %q, want %q", w.IncidentID(), inc.ID())
			}
			got, err := tx.LoadIncident(inc.ID())
			if err != nil {
				return err
			}
			if got == nil || got.Snapshot().Status != incident.StatusOpen || got.Snapshot().Occurrences != 3 || len(got.Changes()) != 0 {
				t.Errorf("loaded %+v, want the open incident with 3 occurrences and no pending change", got)
			}
			// Saving it again without a change appends nothing.
			again, err := tx.SaveIncident(got)
			if err != nil || len(again) != 0 {
				t.Errorf("second SaveIncident: %v entries, %v; want none", len(again), err)
			}
			return nil
		})
		services, err := s.ServicesWithOpenIncidents(ctx)
		if err != nil || !slices.Equal(services, []string{"api"}) {
			t.Errorf("ServicesWithOpenIncidents = %v, %v; want [api]", services, err)
		}
	})

	t.Run("watches locked together are read and saved in one transaction", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		services := []string{"web", "api", "db", "api"} // unsorted, one twice
		inTx(t, s, func(tx T) error {
			if err := tx.LockWatches(services...); err != nil {
				return err
			}
			for i, name := range services[:3] {
				w, err := tx.LoadWatch(name)
				if err != nil {
					return err
				}
				if st := w.State(); st.Service != name || !st.LastSampleAt.IsZero() {
					t.Errorf("new watch of %s: %+v, want a fresh one", name, st)
				}
				st := w.State()
				st.LastSampleAt, st.HealthyCount = t0.Add(time.Duration(i)*time.Minute), i+1
				if err := tx.SaveWatch(incident.UnmarshalWatchFromDatabase(st)); err != nil {
					return err
				}
			}
			// Read back in the same transaction: what was saved.
			w, err := tx.LoadWatch("db")
			if err != nil {
				return err
			}
			if st := w.State(); !st.LastSampleAt.Equal(t0.Add(2*time.Minute)) || st.HealthyCount != 3 {
				t.Errorf("db's watch read back in its transaction: %+v, want the saved one", st)
			}
			return nil
		})
		inTx(t, s, func(tx T) error {
			for i, name := range services[:3] {
				w, err := tx.LoadWatch(name)
				if err != nil {
					return err
				}
				if st := w.State(); !st.LastSampleAt.Equal(t0.Add(time.Duration(i)*time.Minute)) || st.HealthyCount != i+1 {
					t.Errorf("%s's watch after the commit: %+v, want last sample %s, %d healthy", name, st, t0.Add(time.Duration(i)*time.Minute), i+1)
				}
			}
			return nil
		})
	})

	t.Run("a failed transaction leaves nothing", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		inc, err := incident.Open("1b5c2f0e-7d51-4b55-9c84-5f3c2b0f8a11", "db", signals(0, 3))
		if err != nil {
			t.Fatal(err)
		}
		err = s.InTx(ctx, func(tx T) error {
			w, err := tx.LoadWatch("db")
			if err != nil {
				return err
			}
			w = pointedAt(w, inc.ID())
			if _, err := tx.SaveIncident(inc); err != nil {
				return err
			}
			if _, err := tx.MarkProcessed("escalate", "m-1"); err != nil {
				return err
			}
			if err := tx.SaveWatch(w); err != nil {
				return err
			}
			return errRollback
		})
		if !errors.Is(err, errRollback) {
			t.Fatalf("InTx returned %v, want fn's error", err)
		}
		inTx(t, s, func(tx T) error {
			w, err := tx.LoadWatch("db")
			if err != nil {
				return err
			}
			if w.IncidentID() != "" {
				t.Errorf("watch after a rollback names incident %q", w.IncidentID())
			}
			if _, err := tx.LoadIncident(inc.ID()); !errors.Is(err, incident.ErrNotFound) {
				t.Errorf("LoadIncident after a rollback: %v, want ErrNotFound", err)
			}
			first, err := tx.MarkProcessed("escalate", "m-1")
			if err != nil || !first {
				t.Errorf("MarkProcessed after a rolled-back mark: %v, %v; want the first mark", first, err)
			}
			return nil
		})
		if services, _ := s.ServicesWithOpenIncidents(ctx); len(services) != 0 {
			t.Errorf("ServicesWithOpenIncidents after a rollback = %v, want none", services)
		}
	})

	t.Run("ids and marks", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		inTx(t, s, func(tx T) error {
			if got, err := tx.LoadIncident(""); got != nil || err != nil {
				t.Errorf("LoadIncident(\"\") = %v, %v; want nil, nil", got, err)
			}
			if _, err := tx.LoadIncident("2b5c2f0e-7d51-4b55-9c84-5f3c2b0f8a11"); !errors.Is(err, incident.ErrNotFound) {
				t.Errorf("LoadIncident of an unknown id: %v, want ErrNotFound", err)
			}
			w, err := tx.LoadWatch("new-service")
			if err != nil || w.Service() != "new-service" || !w.LastSampleAt().IsZero() || w.IncidentID() != "" {
				t.Errorf("LoadWatch of a new service = %+v, %v; want a fresh watch", w, err)
			}
			first, err := tx.MarkProcessed("escalate", "m-2")
			if err != nil || !first {
				t.Errorf("first MarkProcessed = %v, %v; want true", first, err)
			}
			return nil
		})
		inTx(t, s, func(tx T) error {
			again, err := tx.MarkProcessed("escalate", "m-2")
			if err != nil || again {
				t.Errorf("MarkProcessed again = %v, %v; want false", again, err)
			}
			other, err := tx.MarkProcessed("remediate", "m-2")
			if err != nil || !other {
				t.Errorf("MarkProcessed by another stage = %v, %v; want true: marks are per stage", other, err)
			}
			return nil
		})
	})

	t.Run("one open incident per service", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		for i, id := range []string{"3b5c2f0e-7d51-4b55-9c84-5f3c2b0f8a11", "4b5c2f0e-7d51-4b55-9c84-5f3c2b0f8a11"} {
			inc, err := incident.Open(id, "auth", signals(10*i, 3))
			if err != nil {
				t.Fatal(err)
			}
			err = s.InTx(ctx, func(tx T) error {
				_, err := tx.SaveIncident(inc)
				return err
			})
			if i == 0 && err != nil {
				t.Fatal(err)
			}
			if i == 1 && err == nil {
				t.Errorf("a second open incident of the same service was saved")
			}
		}
	})
}
