package handlers_test

// The operator API's actions (infra/api.Actions) tested here, against the state the stages
// leave (incidents opened, resolved and reopened by correlate and resolve), on the store fake
// the stage tests use.

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/incident-engine/engine/domain/incident"
	"github.com/incident-engine/engine/infra/api"
)

// wall is an operator's request time in these tests: well after the samples.
var wall = minute(100)

type operateCase struct {
	name string
	why  string
	// setup brings the pipeline to the state before the action and returns the incident id.
	setup func(t *testing.T, s *stages) string
	act   func(ctx context.Context, op *api.Actions[*fakeTx], id string) (incident.Snapshot, error)
	// For a legal action: the entry it appends and a check of the state after it.
	wantKind    incident.Kind
	wantDetails incident.Details
	check       func(t *testing.T, s *stages, after incident.Snapshot)
	// For an illegal one: the named error; nothing may change.
	wantErr error
}

func openIncident(t *testing.T, s *stages) string {
	t.Helper()
	s.feed(t, "api", 0, "AAA")
	return s.only(t).ID
}

func resolvedIncident(t *testing.T, s *stages) string {
	t.Helper()
	s.feed(t, "api", 0, "AAA"+"HHHHHHHHHHHHHHHH")
	if err := s.resolve(checkMsg(t, minute(19))); err != nil {
		t.Fatal(err)
	}
	return s.only(t).ID
}

func ackOf(by string) func(context.Context, *api.Actions[*fakeTx], string) (incident.Snapshot, error) {
	return func(ctx context.Context, op *api.Actions[*fakeTx], id string) (incident.Snapshot, error) {
		return op.Acknowledge(ctx, id, by, wall)
	}
}

func TestOperateIncidents(t *testing.T) {
	t.Parallel()
	cases := []operateCase{
		{
			name: "acknowledge", why: "the author and time are recorded, the incident stays open",
			setup: openIncident, act: ackOf("alice"),
			wantKind: incident.KindAcknowledged, wantDetails: incident.Details{By: "alice", Occurrences: 3},
			check: func(t *testing.T, s *stages, after incident.Snapshot) {
				if after.AckedBy != "alice" || !after.AckedAt.Equal(wall) || after.Status != incident.StatusOpen {
					t.Errorf("after acknowledging: %+v", after)
				}
			},
		},
		{
			name: "acknowledge twice", why: "the first acknowledgement stands",
			setup: func(t *testing.T, s *stages) string {
				id := openIncident(t, s)
				if _, err := ackOf("alice")(t.Context(), operator(s), id); err != nil {
					t.Fatal(err)
				}
				return id
			},
			act: ackOf("bob"), wantErr: incident.ErrAlreadyAcknowledged,
		},
		{
			name: "acknowledge resolved", why: "nothing left to take on",
			setup: resolvedIncident, act: ackOf("alice"), wantErr: incident.ErrResolved,
		},
		{
			name: "acknowledge unknown", why: "no such incident",
			setup: openIncident,
			act: func(ctx context.Context, op *api.Actions[*fakeTx], _ string) (incident.Snapshot, error) {
				return op.Acknowledge(ctx, "no-such-incident", "alice", wall)
			},
			wantErr: incident.ErrNotFound,
		},
		{
			name: "acknowledge without a name", why: "the timeline must say who acted",
			setup: openIncident, act: ackOf(" "), wantErr: incident.ErrNoOperator,
		},
		{
			name: "resolve", why: "a manual resolution names the operator and the reason and forgets the recent samples",
			setup: openIncident,
			act: func(ctx context.Context, op *api.Actions[*fakeTx], id string) (incident.Snapshot, error) {
				return op.Resolve(ctx, id, "alice", "rolled back", wall)
			},
			wantKind: incident.KindResolved, wantDetails: incident.Details{By: "alice", Reason: "rolled back", Manual: true, Occurrences: 3},
			check: func(t *testing.T, s *stages, after incident.Snapshot) {
				if after.Status != incident.StatusResolved || !after.ResolvedAt.Equal(wall) {
					t.Errorf("after resolving: %+v", after)
				}
				if w, _ := s.store.Watch("api"); len(w.Recent()) != 0 {
					t.Errorf("the watch still remembers %d samples; the old anomalies would reopen the incident", len(w.Recent()))
				}
			},
		},
		{
			name: "resolve resolved", why: "an incident resolves once",
			setup: resolvedIncident,
			act: func(ctx context.Context, op *api.Actions[*fakeTx], id string) (incident.Snapshot, error) {
				return op.Resolve(ctx, id, "alice", "again", wall)
			},
			wantErr: incident.ErrResolved,
		},
		{
			name: "resolve without reason", why: "a manual resolution must say why",
			setup: openIncident,
			act: func(ctx context.Context, op *api.Actions[*fakeTx], id string) (incident.Snapshot, error) {
				return op.Resolve(ctx, id, "alice", "", wall)
			},
			wantErr: incident.ErrNoReason,
		},
		{
			name: "reopen", why: "an operator reopens regardless of the reopen window, and the recovery streak restarts",
			setup: resolvedIncident,
			act: func(ctx context.Context, op *api.Actions[*fakeTx], id string) (incident.Snapshot, error) {
				return op.Reopen(ctx, id, "bob", wall.Add(24*time.Hour))
			},
			wantKind: incident.KindReopened, wantDetails: incident.Details{By: "bob", Manual: true, Occurrences: 3, Reason: "reopened by an operator"},
			check: func(t *testing.T, s *stages, after incident.Snapshot) {
				if after.Status != incident.StatusOpen {
					t.Errorf("after reopening: %+v", after)
				}
				if w, _ := s.store.Watch("api"); !w.RecoveredAt().IsZero() || !w.HealthySince().IsZero() {
					t.Errorf("watch %+v still holds the old recovery; the next check would resolve at once", w)
				}
				if err := s.resolve(checkMsg(t, wall.Add(24*time.Hour))); err != nil {
					t.Fatal(err)
				}
				if inc := s.only(t); inc.Status != incident.StatusOpen {
					t.Errorf("a resolution check right after the reopening resolved it again")
				}
			},
		},
		{
			name: "reopen open", why: "only a resolved incident reopens",
			setup: openIncident,
			act: func(ctx context.Context, op *api.Actions[*fakeTx], id string) (incident.Snapshot, error) {
				return op.Reopen(ctx, id, "bob", wall)
			},
			wantErr: incident.ErrNotResolved,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newStages(t)
			id := tc.setup(t, s)
			before := s.store.Dump()
			beforeOut := len(s.store.Published(topicOutbox))
			after, err := tc.act(t.Context(), operator(s), id)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("%s: error %v, want %v", tc.why, err, tc.wantErr)
				}
				if !reflect.DeepEqual(before, s.store.Dump()) {
					t.Errorf("%s: a refused action changed the store", tc.why)
				}
				return
			}
			if err != nil {
				t.Fatalf("%s: %v", tc.why, err)
			}
			stored, _ := s.store.Incident(id)
			if !reflect.DeepEqual(stored, after) {
				t.Errorf("returned %+v, stored %+v; want the committed state", after, stored)
			}
			tl := s.store.Timeline(id)
			last := tl[len(tl)-1]
			if last.Kind != tc.wantKind || !reflect.DeepEqual(last.Details, tc.wantDetails) {
				t.Errorf("%s: timeline ends %s %+v, want %s %+v", tc.why, last.Kind, last.Details, tc.wantKind, tc.wantDetails)
			}
			out := events(t, s.store.Published(topicOutbox)[beforeOut:])
			if len(out) != 1 || out[0].Event != tc.wantKind || out[0].IncidentID != id || out[0].Details.By != tc.wantDetails.By || out[0].Status != after.Status.String() {
				t.Errorf("%s: published %+v, want one %s event naming %s", tc.why, out, tc.wantKind, tc.wantDetails.By)
			}
			if tc.check != nil {
				tc.check(t, s, after)
			}
		})
	}
}

func operator(s *stages) *api.Actions[*fakeTx] {
	return api.NewActions(s.store, s.correlator, topicOutbox, slog.New(slog.DiscardHandler))
}

// TestOperateRollsBack checks that an action whose outbox write fails leaves nothing behind.
func TestOperateRollsBack(t *testing.T) {
	t.Parallel()
	errDB := errors.New("outbox unreachable")
	s := newStages(t)
	id := openIncident(t, s)
	before := s.store.Dump()
	s.store.FailNth("Publish", 1, errDB)
	if _, err := operator(s).Acknowledge(t.Context(), id, "alice", wall); !errors.Is(err, errDB) {
		t.Fatalf("acknowledge with the outbox failing: %v, want its error", err)
	}
	if !reflect.DeepEqual(before, s.store.Dump()) {
		t.Error("the acknowledgement committed without its event")
	}
	if _, err := operator(s).Acknowledge(t.Context(), id, "alice", wall); err != nil {
		t.Errorf("the retry: %v", err)
	}
}
