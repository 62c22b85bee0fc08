package handlers_test

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/incident-engine/engine/domain/incident"
	"github.com/incident-engine/engine/domain/silence"
	"github.com/incident-engine/engine/handlers"
	"github.com/incident-engine/engine/infra/api"
)

// silenceFor stores a silence of service covering minutes [from, to) and returns its id.
func (s *stages) silenceFor(t *testing.T, service string, from, to int) string {
	t.Helper()
	op := api.NewActions(s.store, s.correlator, topicOutbox, slog.New(slog.DiscardHandler))
	sil, err := op.Silence(t.Context(), service, minute(from), minute(to), "maintenance", "alice")
	if err != nil {
		t.Fatal(err)
	}
	return sil.ID()
}

func TestCorrelateSilencedService(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		why  string
		// silence covers [from, to) of service; pattern is fed from minute 0.
		service       string
		from, to      int
		pattern       string
		wantIncident  bool
		wantSilenced  int // anomaly_silenced entries on the service
		wantPublished []incident.Kind
	}{
		{"anomalies inside", "a silenced service opens nothing and tells no one, but its anomalies are recorded",
			"api", 0, 60, "AAAAA", false, 5, nil},
		{"extreme inside", "even a meltdown opens nothing during maintenance",
			"api", 0, 60, "HX", false, 1, nil},
		{"other service silenced", "a silence covers only its own service",
			"db", 0, 60, "AAA", true, 0, []incident.Kind{incident.KindOpened}},
		{"silence over", "a silence ends by itself, by sample time",
			"api", 0, 2, "AAAAA", true, 2, []incident.Kind{incident.KindOpened}},
		{"silence not begun", "a silence starting later covers nothing yet",
			"api", 10, 60, "AAA", true, 0, []incident.Kind{incident.KindOpened}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newStages(t)
			id := s.silenceFor(t, tc.service, tc.from, tc.to)
			s.feed(t, "api", 0, tc.pattern)
			if got := len(s.store.Incidents()) > 0; got != tc.wantIncident {
				t.Errorf("%s: incident opened %v, want %v", tc.why, got, tc.wantIncident)
			}
			tl := s.store.ServiceTimeline("api")
			if len(tl) != tc.wantSilenced {
				t.Errorf("%s: %d service entries %v, want %d", tc.why, len(tl), entryKinds(tl), tc.wantSilenced)
			}
			for _, e := range tl {
				if e.Kind != incident.KindAnomalySilenced || !e.Details.Silenced || e.Details.Silence != id || e.Details.Score == 0 {
					t.Errorf("service entry %+v, want anomaly_silenced of silence %s with its evidence", e, id)
				}
			}
			if got := kinds(events(t, s.store.Published(topicCorrelated))); !slices.Equal(got, tc.wantPublished) {
				t.Errorf("%s: published %v, want %v", tc.why, got, tc.wantPublished)
			}
		})
	}
}

// TestSilencedAnomaliesNeverEscalate opens an incident, then silences its service while the
// anomalies go on long enough to meet the sustained-10m rule: nothing escalates inside the
// silence, and the first anomaly after it escalates as the rules say.
func TestSilencedAnomaliesNeverEscalate(t *testing.T) {
	t.Parallel()
	s := newStages(t)
	s.feed(t, "api", 0, "AAA")
	silence := s.silenceFor(t, "api", 3, 20)
	s.feed(t, "api", 3, "XXXXXXXXXXXXXXXXX") // minutes 3-19, extreme and sustained, all silenced
	s.escalateAll(t)
	inc := s.only(t)
	if inc.Severity != incident.SeverityLow || inc.Occurrences != 20 || !inc.LastSeen.Equal(minute(19)) {
		t.Fatalf("after the silence: %s with %d occurrences, last %s; want low, 20, minute 19 (counted, never escalated)", inc.Severity, inc.Occurrences, inc.LastSeen)
	}
	var silenced int
	for _, e := range s.store.Timeline(inc.ID) {
		if e.Kind == incident.KindAnomalyRecorded && e.Details.Silenced && e.Details.Silence == silence {
			silenced++
		}
	}
	if silenced != 17 {
		t.Errorf("%d silenced anomaly entries, want 17", silenced)
	}

	before := len(s.store.Published(topicCorrelated))
	s.feed(t, "api", 20, "A")
	for _, m := range s.store.Published(topicCorrelated)[before:] {
		if err := s.escalate(m); err != nil {
			t.Fatal(err)
		}
	}
	if inc := s.only(t); inc.Severity != incident.SeverityMedium {
		t.Errorf("first anomaly after the silence: severity %s, want medium (sustained-10m, not extreme: the silenced peak does not count)", inc.Severity)
	}
}

func TestCorrelateLooksUpSilencesForAnomaliesOnly(t *testing.T) {
	t.Parallel()
	errDB := errors.New("silences table unreachable")
	s := newStages(t)
	s.store.FailNth("ActiveSilences", 1, errDB)
	s.feed(t, "api", 0, "HH") // healthy: no lookup, so the fault stays armed
	before := s.store.Dump()
	if err := s.correlate(scoredMsg(t, "api", minute(2), 'A')); !errors.Is(err, errDB) || errors.Is(err, handlers.ErrPermanent) {
		t.Fatalf("anomaly with the lookup failing: %v, want the store's error, retried", err)
	}
	if !reflect.DeepEqual(before, s.store.Dump()) {
		t.Error("a failed lookup left state behind")
	}
}

func TestRemediationNotJudgedOnSilencedAnomalies(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name         string
		silenced     bool
		wantEscalate bool
		why          string
	}{
		{"silenced anomaly", true, false, "maintenance is no verdict on the remediation"},
		{"anomaly", false, true, "still failing after the verification time: the remediation did not help"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newStages(t)
			s.feed(t, "api", 0, "AAA")
			inc := s.only(t)
			log := &fakeRemediations{log: []incident.Remediation{{Hook: "restart", IncidentID: inc.ID, Service: "api", RanFor: minute(2), Status: "ok"}}}
			h := handlers.NewRemediateHandler[*fakeTx](s.store, &fakeHooks{}, log, nil, slog.New(slog.NewTextHandler(io.Discard, nil))).To(topicOutbox)
			ev := incident.Event{EventID: "ev-30", IncidentID: inc.ID, Service: "api", Event: incident.KindAnomalyRecorded, OccurredAt: minute(30),
				Severity: "low", Status: "open", Details: incident.Details{Score: 0.7, Threshold: 0.6, Silenced: tc.silenced, Silence: "s-1"}}
			payload, _ := json.Marshal(ev)
			if err := h(message.NewMessage(ev.EventID, payload)); err != nil {
				t.Fatal(err)
			}
			got := s.only(t).Severity > incident.SeverityLow
			if got != tc.wantEscalate {
				t.Errorf("escalated %v, want %v (%s)", got, tc.wantEscalate, tc.why)
			}
		})
	}
}

func TestOperateSilences(t *testing.T) {
	t.Parallel()
	s := newStages(t)
	op := api.NewActions(s.store, s.correlator, topicOutbox, slog.New(slog.DiscardHandler))
	ctx := t.Context()

	if _, err := op.Silence(ctx, "api", minute(10), minute(5), "upgrade", "alice"); !errors.Is(err, silence.ErrInvalid) {
		t.Errorf("a silence ending before it starts: %v, want ErrInvalid", err)
	}
	sil, err := op.Silence(ctx, "api", minute(0), minute(60), "upgrade", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if stored, ok := s.store.Silence(sil.ID()); !ok || stored != sil {
		t.Fatalf("stored %+v, want %+v", stored.Snapshot(), sil.Snapshot())
	}
	ended, err := op.EndSilence(ctx, sil.ID(), minute(30))
	if err != nil || !ended.End().Equal(minute(30)) {
		t.Fatalf("EndSilence = %+v, %v; want it ended at minute 30", ended.Snapshot(), err)
	}
	if stored, _ := s.store.Silence(sil.ID()); !stored.End().Equal(minute(30)) {
		t.Errorf("stored end %s, want minute 30", stored.End())
	}
	cases := []struct {
		name    string
		id      string
		at      time.Time
		wantErr error
		why     string
	}{
		{"ended twice", sil.ID(), minute(40), silence.ErrEnded, "it is over already"},
		{"unknown", "no-such-silence", minute(40), silence.ErrNotFound, "nothing to end"},
	}
	for _, tc := range cases {
		before := s.store.Dump()
		if _, err := op.EndSilence(ctx, tc.id, tc.at); !errors.Is(err, tc.wantErr) {
			t.Errorf("%s: %v, want %v (%s)", tc.name, err, tc.wantErr, tc.why)
		}
		if !reflect.DeepEqual(before, s.store.Dump()) {
			t.Errorf("%s: a refused end changed the store", tc.name)
		}
	}
}
