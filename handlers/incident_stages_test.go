package handlers_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/incident-engine/engine/domain/incident"
	"github.com/incident-engine/engine/handlers"
)

const (
	topicCorrelated handlers.OutboxTopic = "incidents.correlated"
	topicOutbox     handlers.OutboxTopic = "incidents.outbox"
)

var t0 = time.Date(2026, 11, 26, 17, 0, 0, 0, time.UTC)

// minute returns t0 plus m minutes.
func minute(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }

// stages are the incident stages of one pipeline, sharing one fake store.
type stages struct {
	store        *fakeStore
	correlator   incident.Correlator
	correlate    message.NoPublishHandlerFunc
	escalate     message.NoPublishHandlerFunc
	resolve      message.NoPublishHandlerFunc
	resolveStage *handlers.ResolveHandler[*fakeTx]
}

func newStages(t *testing.T) *stages {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	c, err := incident.NewCorrelator(incident.CorrelationConfig{OpenAfter: 3, Window: 5}) // the scenarios count 3 of 5
	if err != nil {
		t.Fatal(err)
	}
	store := newFakeStore()
	resolve := handlers.NewResolveHandler(store, c, logger)
	esc, err := handlers.NewEscalateHandler(store, incident.DefaultPolicy(), logger)
	if err != nil {
		t.Fatal(err)
	}
	return &stages{
		store:        store,
		correlator:   c,
		correlate:    handlers.NewCorrelateHandler(store, c, logger).To(topicCorrelated),
		escalate:     esc.To(topicOutbox),
		resolve:      resolve.To(topicOutbox),
		resolveStage: resolve,
	}
}

// scoredMsg builds score's output for one sample of service at time at. kind is one of
// 'A' (anomalous), 'X' (anomalous, far above the threshold), 'H' (healthy) and 'W' (not
// judged, the model still warming up). The broker received it at its own time.
func scoredMsg(t *testing.T, service string, at time.Time, kind byte) *message.Message {
	t.Helper()
	s := handlers.ScoredSample{
		DecodedSample: handlers.DecodedSample{Service: service, Timestamp: at, ReceivedAt: at, Metrics: map[string]float64{"error_rate": 0.01}},
		Threshold:     0.6, Judged: true, ModelVersion: 1,
	}
	switch kind {
	case 'A':
		s.Score, s.Anomalous = 0.7, true // excess 0.25: not extreme
	case 'X':
		s.Score, s.Anomalous = 0.95, true // excess 0.875: extreme
	case 'H':
		s.Score = 0.4
	case 'W':
		s.Score, s.Threshold, s.Judged, s.ModelVersion, s.WarmUpLeft = 0, 0, false, 0, 7
	default:
		t.Fatalf("unknown sample kind %q", kind)
	}
	payload, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	m := message.NewMessage(fmt.Sprintf("scored-%s-%s", service, at.Format(time.RFC3339)), payload)
	m.Metadata.Set(handlers.MetadataService, service)
	return m
}

// feed correlates one sample a minute for service, the first at minute start, one per
// character of pattern (see scoredMsg), and returns the messages it handled.
func (s *stages) feed(t *testing.T, service string, start int, pattern string) []*message.Message {
	t.Helper()
	var msgs []*message.Message
	for i := range len(pattern) {
		m := scoredMsg(t, service, minute(start+i), pattern[i])
		if err := s.correlate(m); err != nil {
			t.Fatalf("correlate sample %d (%c) of %q: %v", i, pattern[i], pattern, err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// escalateAll hands every message of the correlated topic to escalate, in order.
func (s *stages) escalateAll(t *testing.T) {
	t.Helper()
	for _, m := range s.store.Published(topicCorrelated) {
		if err := s.escalate(m); err != nil {
			t.Fatalf("escalate %s: %v", m.UUID, err)
		}
	}
}

func checkMsg(t *testing.T, now time.Time) *message.Message {
	t.Helper()
	payload, err := json.Marshal(handlers.ResolutionCheck{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return message.NewMessage("check-"+now.Format(time.RFC3339Nano), payload)
}

// events decodes incident events, checking each message's id and service key.
func events(t *testing.T, msgs []*message.Message) []handlers.IncidentEvent {
	t.Helper()
	out := make([]handlers.IncidentEvent, 0, len(msgs))
	for _, m := range msgs {
		ev := decodeBody[handlers.IncidentEvent](t, m.Payload)
		if m.UUID != ev.EventID {
			t.Errorf("event message id %s differs from its event id %s", m.UUID, ev.EventID)
		}
		if got := m.Metadata.Get(handlers.MetadataService); got != ev.Service {
			t.Errorf("event %s has service metadata %q, want %q", ev.EventID, got, ev.Service)
		}
		out = append(out, ev)
	}
	return out
}

func kinds(evs []handlers.IncidentEvent) []incident.Kind {
	out := make([]incident.Kind, len(evs))
	for i, ev := range evs {
		out[i] = ev.Event
	}
	return out
}

func entryKinds(es []incident.Entry) []incident.Kind {
	out := make([]incident.Kind, len(es))
	for i, e := range es {
		out[i] = e.Kind
	}
	return out
}

// only returns the service's single incident, failing if it has none or several.
func (s *stages) only(t *testing.T) incident.Snapshot {
	t.Helper()
	incs := s.store.Incidents()
	if len(incs) != 1 {
		t.Fatalf("got %d incidents, want exactly one: %+v", len(incs), incs)
	}
	return incs[0]
}

func TestCorrelateOpensOneIncident(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name        string
		reason      string
		pattern     string
		wantOpen    bool
		wantCount   int             // occurrences of the incident
		wantFirst   int             // minute of its first anomaly
		wantEvents  []incident.Kind // published on the correlated topic
		wantWatchID bool
	}{
		{"3 of 5 open", "three anomalies among five judged samples open an incident", "HAHAA", true, 3, 1, []incident.Kind{incident.KindOpened}, true},
		{"2 of 5 do not", "two anomalies are noise", "AHHAH", false, 0, 0, nil, false},
		{"3 spread over 7", "anomalies must fall within the window of five", "AHHAHHA", false, 0, 0, nil, false},
		{"warm-up never opens", "unjudged samples are never anomalous", "WWWWWWW", false, 0, 0, nil, false},
		{"extreme anomaly opens alone", "one sample far above the threshold is enough", "HHX", true, 1, 2, []incident.Kind{incident.KindOpened}, true},
		{"later anomalies grow it", "an open incident counts further anomalies instead of opening another", "AAAHAA",
			true, 5, 0, []incident.Kind{incident.KindOpened, incident.KindAnomalyRecorded, incident.KindAnomalyRecorded}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newStages(t)
			s.feed(t, "api", 0, tc.pattern)
			evs := events(t, s.store.Published(topicCorrelated))
			if !slices.Equal(kinds(evs), tc.wantEvents) {
				t.Errorf("%s: published %v, want %v", tc.reason, kinds(evs), tc.wantEvents)
			}
			incs := s.store.Incidents()
			if !tc.wantOpen {
				if len(incs) != 0 {
					t.Errorf("%s: got incidents %+v, want none", tc.reason, incs)
				}
				return
			}
			inc := s.only(t)
			if inc.Status != incident.StatusOpen || inc.Severity != incident.SeverityLow || inc.Service != "api" ||
				inc.Occurrences != tc.wantCount || !inc.FirstSeen.Equal(minute(tc.wantFirst)) {
				t.Errorf("%s: got %+v, want an open low incident of api with %d occurrences from minute %d", tc.reason, inc, tc.wantCount, tc.wantFirst)
			}
			if w, _ := s.store.Watch("api"); w.IncidentID() != inc.ID {
				t.Errorf("%s: the watch points at incident %q, want %q", tc.reason, w.IncidentID(), inc.ID)
			}
			if got := entryKinds(s.store.Timeline(inc.ID)); !slices.Equal(got, tc.wantEvents) {
				t.Errorf("%s: timeline %v, want %v", tc.reason, got, tc.wantEvents)
			}
			opened := evs[0]
			if opened.IncidentID != inc.ID || opened.Service != "api" || opened.Status != "open" || opened.Severity != "low" ||
				!opened.FirstSeen.Equal(minute(tc.wantFirst)) {
				t.Errorf("%s: opened event %+v does not describe the incident", tc.reason, opened)
			}
		})
	}
}

func TestCorrelateRedeliveryChangesNothing(t *testing.T) {
	t.Parallel()
	s := newStages(t)
	msgs := s.feed(t, "api", 0, "WHAAAHA") // opens at minute 4, records minute 6
	inc := s.only(t)
	if inc.Occurrences != 4 {
		t.Fatalf("setup: incident with %d occurrences, want 4", inc.Occurrences)
	}
	cases := []struct {
		name   string
		reason string
		msg    *message.Message
	}{
		{"warm-up sample", "an unjudged sample must not move the watermark back", msgs[0]},
		{"healthy sample", "must not count towards recovery twice", msgs[1]},
		{"first anomaly", "must not count towards opening twice", msgs[2]},
		{"opening sample", "must not open a second incident", msgs[4]},
		{"healthy sample in the incident", "must not restart the healthy streak", msgs[5]},
		{"latest sample", "the most likely redelivery: the broker lost the ack", msgs[6]},
		{"late sample never seen", "an older sample than the watermark is ignored too", scoredMsg(t, "api", minute(3).Add(30*time.Second), 'A')},
	}
	for _, tc := range cases { // sequential: each case must leave the shared state as it was
		before := s.store.Dump()
		if err := s.correlate(tc.msg.Copy()); err != nil {
			t.Errorf("%s: redelivery failed: %v", tc.name, err)
		}
		if after := s.store.Dump(); !reflect.DeepEqual(before, after) {
			t.Errorf("%s: %s, but the store changed:\nbefore %+v\nafter  %+v", tc.name, tc.reason, before, after)
		}
	}
	if got := len(s.store.Published(topicCorrelated)); got != 2 {
		t.Errorf("published %d events, want 2 (opened, anomaly_recorded)", got)
	}
}

func TestCorrelateRejectsMalformedSamples(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		reason  string
		payload string
	}{
		{"not JSON", "a corrupt message never becomes valid", `{`},
		{"no service", "a sample without service has no watch", `{"service":"","timestamp":"2026-11-26T17:00:00Z","judged":true}`},
		{"no timestamp", "a sample without time cannot be ordered", `{"service":"api","judged":true}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newStages(t)
			before := s.store.Dump()
			err := s.correlate(message.NewMessage("bad", []byte(tc.payload)))
			if !errors.Is(err, handlers.ErrPermanent) {
				t.Errorf("%s: got %v, want a permanent error", tc.reason, err)
			}
			if !reflect.DeepEqual(before, s.store.Dump()) {
				t.Errorf("%s: the store changed", tc.reason)
			}
		})
	}
}

func TestEscalate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		reason     string
		pattern    string
		wantSev    incident.Severity
		wantRule   string // "" for no escalation
		wantMinute int    // when the escalation is dated
	}{
		{"short episode stays low", "five anomalies over four minutes meet no rule", "AAAAA", incident.SeverityLow, "", 0},
		{"sustained 10 minutes", "ten minutes of anomalies make it medium", "AAAAAAAAAAAA", incident.SeverityMedium, "sustained-10m", 10},
		{"extreme anomaly", "an anomaly far above the threshold starts at high", "X", incident.SeverityHigh, "extreme", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newStages(t)
			s.feed(t, "api", 0, tc.pattern)
			correlated := s.store.Published(topicCorrelated)
			s.escalateAll(t)

			inc := s.only(t)
			if inc.Severity != tc.wantSev {
				t.Errorf("%s: severity %s, want %s", tc.reason, inc.Severity, tc.wantSev)
			}
			out := s.store.Published(topicOutbox)
			var forwarded, escalated []string
			for _, ev := range events(t, out) {
				if ev.Event == incident.KindEscalated {
					escalated = append(escalated, ev.EventID)
					if ev.Details.Rule != tc.wantRule || ev.Details.To != tc.wantSev.String() || !ev.OccurredAt.Equal(minute(tc.wantMinute)) {
						t.Errorf("%s: escalation %+v, want rule %q to %s at minute %d", tc.reason, ev, tc.wantRule, tc.wantSev, tc.wantMinute)
					}
					continue
				}
				forwarded = append(forwarded, ev.EventID)
			}
			var want []string
			for _, m := range correlated {
				want = append(want, m.UUID)
			}
			if !slices.Equal(forwarded, want) {
				t.Errorf("forwarded %v, want every correlated event once, in order: %v", forwarded, want)
			}
			wantEscalations := 0
			if tc.wantRule != "" {
				wantEscalations = 1
			}
			if len(escalated) != wantEscalations {
				t.Errorf("%s: %d escalation events, want %d", tc.reason, len(escalated), wantEscalations)
			}
			var rules []string
			for _, e := range s.store.Timeline(inc.ID) {
				if e.Kind == incident.KindEscalated {
					rules = append(rules, e.Details.Rule)
				}
			}
			if wantRules := slices.DeleteFunc([]string{tc.wantRule}, func(r string) bool { return r == "" }); !slices.Equal(rules, wantRules) {
				t.Errorf("%s: timeline escalations %v, want %v", tc.reason, rules, wantRules)
			}

			// Redelivery (the inbox): nothing is forwarded or escalated twice.
			before := s.store.Dump()
			for _, m := range correlated {
				if err := s.escalate(m.Copy()); err != nil {
					t.Errorf("redelivered %s: %v", m.UUID, err)
				}
			}
			if !reflect.DeepEqual(before, s.store.Dump()) {
				t.Errorf("redelivered events changed the store:\nbefore %+v\nafter  %+v", before, s.store.Dump())
			}
		})
	}
}

func TestEscalateForwardsOtherEventsOnly(t *testing.T) {
	t.Parallel()
	s := newStages(t)
	s.feed(t, "api", 0, "AAAAAAAAAAAA") // would escalate if the event were judged
	inc := s.only(t)
	ev := events(t, s.store.Published(topicCorrelated)[len(s.store.Published(topicCorrelated))-1:])[0]
	ev.Event, ev.EventID = incident.KindDataStopped, "data-stopped-1"
	payload, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	m := message.NewMessage(ev.EventID, payload)
	m.Metadata.Set(handlers.MetadataService, "api")
	if err := s.escalate(m); err != nil {
		t.Fatal(err)
	}
	if got := s.store.Published(topicOutbox); len(got) != 1 || got[0].UUID != ev.EventID || string(got[0].Payload) != string(payload) {
		t.Errorf("a data_stopped event is forwarded unchanged, got %d messages", len(got))
	}
	if got, _ := s.store.Incident(inc.ID); got.Severity != incident.SeverityLow {
		t.Errorf("only opened, anomaly and reopened events escalate; severity is %s", got.Severity)
	}

	err = s.escalate(message.NewMessage("bad", []byte(`{"event":`)))
	if !errors.Is(err, handlers.ErrPermanent) {
		t.Errorf("a malformed event: got %v, want a permanent error", err)
	}
}

func TestResolveRecoveredIncident(t *testing.T) {
	t.Parallel()
	s := newStages(t)
	// Anomalies at minutes 0-2 open the incident; healthy samples from minute 3 reach the
	// recovery window of 15 minutes at minute 18.
	s.feed(t, "api", 0, "AAA"+"HHHHHHHHHHHHHHHH")
	recovery := s.correlator.Config().Recovery
	w, _ := s.store.Watch("api")
	if want := minute(3).Add(recovery); !w.RecoveredAt().Equal(want) {
		t.Fatalf("setup: watch recovered at %s, want %s", w.RecoveredAt(), want)
	}
	inc := s.only(t)
	if inc.Status != incident.StatusOpen {
		t.Fatalf("setup: incident %s before the check, want it still open (only settling resolves)", inc.Status)
	}

	check := checkMsg(t, minute(19))
	if err := s.resolve(check); err != nil {
		t.Fatal(err)
	}
	inc = s.only(t)
	if inc.Status != incident.StatusResolved || !inc.ResolvedAt.Equal(w.RecoveredAt()) {
		t.Errorf("incident %s at %s, want resolved at the recovery %s (not at the check's time)", inc.Status, inc.ResolvedAt, w.RecoveredAt())
	}
	evs := events(t, s.store.Published(topicOutbox))
	if len(evs) != 1 || evs[0].Event != incident.KindResolved || evs[0].ResolvedAt == nil || !evs[0].ResolvedAt.Equal(w.RecoveredAt()) || evs[0].Status != "resolved" {
		t.Errorf("published %+v, want one resolved event dated %s", evs, w.RecoveredAt())
	}
	if tl := s.store.Timeline(inc.ID); tl[len(tl)-1].Kind != incident.KindResolved || !tl[len(tl)-1].At.Equal(w.RecoveredAt()) {
		t.Errorf("timeline ends %+v, want the resolution", tl[len(tl)-1])
	}

	cases := []struct {
		name   string
		reason string
		msg    *message.Message
	}{
		{"same check again", "a redelivered check changes nothing", check.Copy()},
		{"later check", "a resolved incident is not resolved twice", checkMsg(t, minute(60))},
	}
	for _, tc := range cases {
		before := s.store.Dump()
		if err := s.resolve(tc.msg); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		if !reflect.DeepEqual(before, s.store.Dump()) {
			t.Errorf("%s: %s, but the store changed", tc.name, tc.reason)
		}
	}
}

func TestResolveRecordsDataStopped(t *testing.T) {
	t.Parallel()
	staleAfter := newStages(t).correlator.Config().StaleAfter
	last := minute(2) // the last sample's broker time
	cases := []struct {
		name        string
		reason      string
		now         time.Time
		wantStopped bool
	}{
		{"just before stale", "a quiet moment shorter than StaleAfter is no stop", last.Add(staleAfter - time.Second), false},
		{"exactly stale", "StaleAfter without samples records the stop", last.Add(staleAfter), true},
		{"long silent", "a long silence records it once", last.Add(3 * time.Hour), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newStages(t)
			s.feed(t, "api", 0, "AAA")
			before := s.store.Dump()
			check := checkMsg(t, tc.now)
			if err := s.resolve(check); err != nil {
				t.Fatal(err)
			}
			inc := s.only(t)
			if inc.Status != incident.StatusOpen || inc.DataStopped != tc.wantStopped {
				t.Errorf("%s: incident %s with data stopped %v, want open with %v", tc.reason, inc.Status, inc.DataStopped, tc.wantStopped)
			}
			if !tc.wantStopped {
				if !reflect.DeepEqual(before, s.store.Dump()) {
					t.Errorf("%s: the store changed", tc.reason)
				}
				return
			}
			tl := s.store.Timeline(inc.ID)
			stop := tl[len(tl)-1]
			if stop.Kind != incident.KindDataStopped || !stop.At.Equal(last) || stop.Details.DetectedAt == nil || !stop.Details.DetectedAt.Equal(tc.now) {
				t.Errorf("%s: timeline ends %+v, want data_stopped at the last sample %s, detected %s", tc.reason, stop, last, tc.now)
			}
			if evs := events(t, s.store.Published(topicOutbox)); len(evs) != 1 || evs[0].Event != incident.KindDataStopped {
				t.Errorf("%s: published %v, want one data_stopped event", tc.reason, kinds(evs))
			}

			// The same check again, and a later one, record nothing more.
			before = s.store.Dump()
			for _, m := range []*message.Message{check.Copy(), checkMsg(t, tc.now.Add(time.Hour))} {
				if err := s.resolve(m); err != nil {
					t.Fatal(err)
				}
			}
			if !reflect.DeepEqual(before, s.store.Dump()) {
				t.Errorf("a second check after the stop changed the store")
			}

			// Samples coming back are recorded by correlate.
			s.feed(t, "api", 200, "A")
			if got := entryKinds(s.store.Timeline(inc.ID)); !slices.Equal(got[len(got)-2:], []incident.Kind{incident.KindDataResumed, incident.KindAnomalyRecorded}) {
				t.Errorf("after samples resume the timeline ends %v, want data_resumed, anomaly_recorded", got)
			}
		})
	}
}

func TestResolveWithoutOpenIncidents(t *testing.T) {
	t.Parallel()
	s := newStages(t)
	s.feed(t, "api", 0, "AHAH")
	before := s.store.Dump()
	if err := s.resolve(checkMsg(t, minute(100))); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(before, s.store.Dump()) {
		t.Error("a check with no open incident changed the store")
	}
	if err := s.resolve(message.NewMessage("bad", []byte(`"now"`))); !errors.Is(err, handlers.ErrPermanent) {
		t.Errorf("a malformed check: got %v, want a permanent error", err)
	}
}

func TestPersistPassesEventsThrough(t *testing.T) {
	t.Parallel()
	s := newStages(t)
	s.feed(t, "api", 0, "AAA")
	opened := s.store.Published(topicCorrelated)[0]

	cases := []struct {
		name    string
		reason  string
		msg     *message.Message
		wantErr bool
	}{
		{"committed event", "persist relays the event under its own id and service key", opened, false},
		{"malformed payload", "a corrupt outbox row can never be delivered", message.NewMessage("bad", []byte(`{"event_id":`)), true},
		{"wrong JSON type", "an array is no event", message.NewMessage("bad", []byte(`[]`)), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, err := handlers.NewPersistHandler().Handle(tc.msg)
			if tc.wantErr {
				if !errors.Is(err, handlers.ErrPermanent) || out != nil {
					t.Errorf("%s: got %d messages and %v, want a permanent error", tc.reason, len(out), err)
				}
				return
			}
			if err != nil || len(out) != 1 {
				t.Fatalf("%s: got %d messages and %v", tc.reason, len(out), err)
			}
			if out[0].UUID != tc.msg.UUID || out[0].Metadata.Get(handlers.MetadataService) != "api" || string(out[0].Payload) != string(tc.msg.Payload) {
				t.Errorf("%s: got %s %v %s", tc.reason, out[0].UUID, out[0].Metadata, out[0].Payload)
			}
		})
	}
}

func TestStoreErrorRollsBack(t *testing.T) {
	t.Parallel()
	errDB := errors.New("connection reset by fake database")
	cases := []struct {
		name   string
		reason string
		failOp string
		// prepare brings the store to the state before the message and returns the message
		// and the stage that handles it.
		prepare func(t *testing.T, s *stages) (*message.Message, func(*message.Message) error)
		// after checks the state once the message was handled successfully, after the failure.
		after func(t *testing.T, s *stages)
	}{
		{
			name: "correlate: watch save fails", reason: "the incident and its event were written before the watch; all three go",
			failOp: "SaveWatch",
			prepare: func(t *testing.T, s *stages) (*message.Message, func(*message.Message) error) {
				s.feed(t, "api", 0, "AA")
				return scoredMsg(t, "api", minute(2), 'A'), s.correlate
			},
			after: func(t *testing.T, s *stages) {
				if inc := s.only(t); inc.Occurrences != 3 || len(s.store.Published(topicCorrelated)) != 1 {
					t.Errorf("after the retry: %+v with %d events, want one incident of 3 and one opened event", inc, len(s.store.Published(topicCorrelated)))
				}
			},
		},
		{
			name: "correlate: outbox write fails", reason: "an incident must not exist without its event",
			failOp: "Publish",
			prepare: func(t *testing.T, s *stages) (*message.Message, func(*message.Message) error) {
				s.feed(t, "api", 0, "AA")
				return scoredMsg(t, "api", minute(2), 'A'), s.correlate
			},
			after: func(t *testing.T, s *stages) {
				s.only(t)
				if got := len(s.store.Published(topicCorrelated)); got != 1 {
					t.Errorf("after the retry: %d events, want 1", got)
				}
			},
		},
		{
			name: "escalate: incident save fails", reason: "the inbox mark and the forwarded event go with the escalation",
			failOp: "SaveIncident",
			prepare: func(t *testing.T, s *stages) (*message.Message, func(*message.Message) error) {
				s.feed(t, "api", 0, "X")
				return s.store.Published(topicCorrelated)[0], s.escalate
			},
			after: func(t *testing.T, s *stages) {
				if got := kinds(events(t, s.store.Published(topicOutbox))); !slices.Equal(got, []incident.Kind{incident.KindOpened, incident.KindEscalated}) {
					t.Errorf("after the retry: published %v, want the opened event forwarded once and one escalation", got)
				}
				if inc := s.only(t); inc.Severity != incident.SeverityHigh {
					t.Errorf("after the retry: severity %s, want high", inc.Severity)
				}
			},
		},
		{
			name: "resolve: outbox write fails", reason: "a resolution must not commit without its event",
			failOp: "Publish",
			prepare: func(t *testing.T, s *stages) (*message.Message, func(*message.Message) error) {
				s.feed(t, "api", 0, "AAA"+"HHHHHHHHHHHHHHHH")
				return checkMsg(t, minute(19)), s.resolve
			},
			after: func(t *testing.T, s *stages) {
				if inc := s.only(t); inc.Status != incident.StatusResolved {
					t.Errorf("after the retry: %s, want resolved", inc.Status)
				}
			},
		},
		{
			name: "resolve: listing fails", reason: "nothing is checked when the open incidents cannot be listed",
			failOp: "ServicesWithOpenIncidents",
			prepare: func(t *testing.T, s *stages) (*message.Message, func(*message.Message) error) {
				s.feed(t, "api", 0, "AAA")
				return checkMsg(t, minute(60)), s.resolve
			},
			after: func(t *testing.T, s *stages) {
				if inc := s.only(t); !inc.DataStopped {
					t.Error("after the retry: the data stop is not recorded")
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newStages(t)
			msg, handle := tc.prepare(t, s)
			before := s.store.Dump()
			s.store.FailNth(tc.failOp, 1, errDB)

			err := handle(msg.Copy())
			if !errors.Is(err, errDB) || errors.Is(err, handlers.ErrPermanent) {
				t.Fatalf("%s: got %v, want the store's error, not marked permanent (it is retried)", tc.reason, err)
			}
			if after := s.store.Dump(); !reflect.DeepEqual(before, after) {
				t.Fatalf("%s: the failed transaction left state behind:\nbefore %+v\nafter  %+v", tc.reason, before, after)
			}

			if err := handle(msg.Copy()); err != nil { // the retry, the fault spent
				t.Fatalf("retry: %v", err)
			}
			tc.after(t, s)
		})
	}
}

func TestFakeStoreRefusesSecondOpenIncident(t *testing.T) {
	t.Parallel()
	store := newFakeStore()
	open := func(id string, at time.Time) error {
		inc, err := incident.Open(id, "api", []incident.Signal{{At: at, Score: 0.7, Threshold: 0.6}})
		if err != nil {
			t.Fatal(err)
		}
		return store.InTx(t.Context(), func(tx *fakeTx) error {
			_, err := tx.SaveIncident(inc)
			return err
		})
	}
	if err := open("first", minute(0)); err != nil {
		t.Fatal(err)
	}
	if err := open("second", minute(5)); err == nil {
		t.Error("a second open incident of the service was saved; the unique index forbids it")
	}
	if got := len(store.Incidents()); got != 1 {
		t.Errorf("%d incidents stored, want 1", got)
	}
	if tl := store.Timeline("first"); len(tl) != 1 || tl[0].Kind != incident.KindOpened {
		t.Errorf("timeline of the first incident: %v", entryKinds(tl))
	}
}

// TestEscalateEventsDoNotDependOnLag checks that what escalate sends on describes each change
// as it was, however far behind correlate it runs: run in step with correlate, or only after
// correlate has already resolved the incident, it sends the same events in the same order
// with the same contents, the escalation saying "open" and the resolution the severity the
// episode ended with.
func TestEscalateEventsDoNotDependOnLag(t *testing.T) {
	t.Parallel()
	pattern := "AAAAAAAAAAAA" + strings.Repeat("H", 20) // escalates to medium, then recovers
	inStep := newStages(t)
	done := 0
	for i := range len(pattern) {
		inStep.feed(t, "api", i, pattern[i:i+1])
		correlated := inStep.store.Published(topicCorrelated)
		for _, m := range correlated[done:] {
			if err := inStep.escalate(m); err != nil {
				t.Fatal(err)
			}
		}
		done = len(correlated)
	}
	behind := newStages(t)
	behind.feed(t, "api", 0, pattern)
	if got := behind.only(t); got.Status != incident.StatusResolved {
		t.Fatalf("the incident is %s before escalate runs, want it resolved", got.Status)
	}
	behind.escalateAll(t)

	want, got := events(t, inStep.store.Published(topicOutbox)), events(t, behind.store.Published(topicOutbox))
	if !reflect.DeepEqual(got, want) {
		t.Errorf("escalate behind correlate sent\n%+v\nin step it sends\n%+v", got, want)
	}
	var sawEscalation, sawResolution bool
	for _, ev := range got {
		switch ev.Event {
		case incident.KindEscalated:
			sawEscalation = true
			if ev.Status != "open" || ev.Severity != "medium" || ev.ResolvedAt != nil {
				t.Errorf("escalation says %s/%s resolved %v, want open/medium as at its change", ev.Status, ev.Severity, ev.ResolvedAt)
			}
		case incident.KindResolved:
			sawResolution = true
			if !sawEscalation || ev.Severity != "medium" {
				t.Errorf("resolution (after the escalation: %v) says %s, want medium after the escalation", sawEscalation, ev.Severity)
			}
		}
	}
	if !sawEscalation || !sawResolution {
		t.Errorf("events %v, want an escalation and a resolution", kinds(got))
	}
	if final := behind.only(t); final.Severity != incident.SeverityMedium {
		t.Errorf("the incident ended %s, want medium", final.Severity)
	}
}

// TestResolveJudgesStalenessAgainstTheBacklog checks that a service is judged silent only as
// of what the engine has heard: a check that finds samples still pending on the service's
// partition since before the stale-data limit records no stop; one whose backlog is on
// another partition, or whose backlog came after the silence, does; and one that could not
// ask the broker judges no service stale.
func TestResolveJudgesStalenessAgainstTheBacklog(t *testing.T) {
	t.Parallel()
	staleAfter := newStages(t).correlator.Config().StaleAfter
	last := minute(2)
	now := last.Add(3 * staleAfter)
	partitionOf := func(service string, n int32) int32 {
		if n != 6 {
			t.Errorf("partition count %d, want the check's 6", n)
		}
		return map[string]int32{"api": 4}[service]
	}
	cases := []struct {
		name        string
		check       handlers.ResolutionCheck
		wantStopped bool
		why         string
	}{
		{"backlog on its partition", handlers.ResolutionCheck{Now: now, Partitions: 6, Pending: map[int32]time.Time{4: last.Add(time.Second)}}, false,
			"samples received a second after the last one wait in Kafka: the service did not stop"},
		{"backlog elsewhere", handlers.ResolutionCheck{Now: now, Partitions: 6, Pending: map[int32]time.Time{1: last}}, true,
			"another partition's backlog says nothing of this service"},
		{"backlog after the silence", handlers.ResolutionCheck{Now: now, Partitions: 6, Pending: map[int32]time.Time{4: last.Add(2 * staleAfter)}}, true,
			"what waits arrived after the limit had passed in silence"},
		{"broker unknown", handlers.ResolutionCheck{Now: now, BacklogUnknown: true}, false,
			"without the broker's word nothing is judged stale"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newStages(t)
			s.resolveStage.SetPartitionOf(partitionOf)
			s.feed(t, "api", 0, "AAA")
			payload, err := json.Marshal(tc.check)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.resolve(message.NewMessage("check", payload)); err != nil {
				t.Fatal(err)
			}
			if got := s.only(t).DataStopped; got != tc.wantStopped {
				t.Errorf("data stopped %v, want %v: %s", got, tc.wantStopped, tc.why)
			}
		})
	}
}
