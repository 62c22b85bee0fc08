package incident_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/incident-engine/engine/domain/incident"
)

// t0 is minute 0 of every test; at(n) is minute n.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func at(minute int) time.Time { return t0.Add(time.Duration(minute) * time.Minute) }

// thr is the detector threshold of every signal in these tests.
const thr = 0.6

// sig is an anomaly at minute n with the given score against thr.
func sig(minute int, score float64) incident.Signal {
	return incident.Signal{At: at(minute), Score: score, Threshold: thr}
}

// excess is Signal.Excess written out for thr, so expectations do not call the code under test.
func excess(score float64) float64 { return (score - thr) / (1 - thr) }

// opened returns incident "inc-1" of service "api", opened by anomalies at minutes 0, 1 and
// 2 (the middle one the strongest), with its timeline cleared.
func opened(t *testing.T) *incident.Incident {
	t.Helper()
	inc, err := incident.Open("inc-1", "api", []incident.Signal{sig(0, 0.7), sig(1, 0.8), sig(2, 0.65)})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	inc.ClearChanges()
	return inc
}

// resolved returns opened escalated to high and resolved at minute 10, timeline cleared.
func resolved(t *testing.T) *incident.Incident {
	t.Helper()
	inc := opened(t)
	if err := inc.EscalateFor(incident.SeverityHigh, "test", incident.Signal{At: at(2), Score: inc.LastScore(), Threshold: inc.Threshold()}, inc.Occurrences()); err != nil {
		t.Fatalf("Escalate: %v", err)
	}
	if err := inc.Resolve(at(10), "healthy"); err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	inc.ClearChanges()
	return inc
}

// stopped returns opened with a data stop recorded (last sample minute 2, noticed at 8).
func stopped(t *testing.T) *incident.Incident {
	t.Helper()
	inc := opened(t)
	if err := inc.MarkDataStopped(at(2), at(8)); err != nil {
		t.Fatalf("MarkDataStopped: %v", err)
	}
	inc.ClearChanges()
	return inc
}

// escalated returns opened escalated to the given severity, timeline cleared.
func escalated(to incident.Severity) func(*testing.T) *incident.Incident {
	return func(t *testing.T) *incident.Incident {
		t.Helper()
		inc := opened(t)
		if err := inc.EscalateFor(to, "test", incident.Signal{At: at(2), Score: inc.LastScore(), Threshold: inc.Threshold()}, inc.Occurrences()); err != nil {
			t.Fatalf("Escalate: %v", err)
		}
		inc.ClearChanges()
		return inc
	}
}

// acknowledged returns opened, acknowledged by alice at minute 3, timeline cleared.
func acknowledged(t *testing.T) *incident.Incident {
	t.Helper()
	inc := opened(t)
	if err := inc.Acknowledge("alice", at(3)); err != nil {
		t.Fatalf("Acknowledge: %v", err)
	}
	inc.ClearChanges()
	return inc
}

// ackedResolved returns acknowledged, then resolved by the metrics at minute 10, timeline
// cleared: the acknowledgement outlives the resolution.
func ackedResolved(t *testing.T) *incident.Incident {
	t.Helper()
	inc := acknowledged(t)
	if err := inc.Resolve(at(10), "healthy"); err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	inc.ClearChanges()
	return inc
}

// reopenedAt returns resolved, reopened by an operator at minute m, timeline cleared.
func reopenedAt(m int) func(*testing.T) *incident.Incident {
	return func(t *testing.T) *incident.Incident {
		t.Helper()
		inc := resolved(t)
		if err := inc.ReopenByOperator("bob", at(m)); err != nil {
			t.Fatalf("ReopenByOperator: %v", err)
		}
		inc.ClearChanges()
		return inc
	}
}

func ptr(t time.Time) *time.Time { return &t }

func TestOpen(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		id      string
		service string
		trigger []incident.Signal
		// want is the state after opening; Details the opened entry's payload.
		want    incident.Snapshot
		details incident.Details
		why     string
	}{
		{
			name: "one extreme anomaly", id: "inc-1", service: "api",
			trigger: []incident.Signal{sig(5, 0.9)},
			want: incident.Snapshot{
				ID: "inc-1", Service: "api", Severity: incident.SeverityLow, Status: incident.StatusOpen,
				Occurrences: 1, FirstSeen: at(5), LastSeen: at(5), EpisodeStart: at(5),
				PeakExcess: excess(0.9), LastScore: 0.9, Threshold: thr,
			},
			details: incident.Details{Score: 0.9, Threshold: thr, Occurrences: 1, To: "low"},
			why:     "a single anomaly far above the threshold is enough to open",
		},
		{
			name: "three anomalies", id: "inc-2", service: "db",
			trigger: []incident.Signal{sig(0, 0.7), sig(1, 0.8), sig(2, 0.65)},
			want: incident.Snapshot{
				ID: "inc-2", Service: "db", Severity: incident.SeverityLow, Status: incident.StatusOpen,
				Occurrences: 3, FirstSeen: at(0), LastSeen: at(2), EpisodeStart: at(0),
				PeakExcess: excess(0.8), LastScore: 0.65, Threshold: thr,
			},
			details: incident.Details{Score: 0.8, Threshold: thr, Occurrences: 3, To: "low"},
			why:     "first/last seen span the trigger; the entry shows the peak, the state the latest score",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			inc, err := incident.Open(tc.id, tc.service, tc.trigger)
			if err != nil {
				t.Fatalf("Open: %v (%s)", err, tc.why)
			}
			if got := inc.Snapshot(); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("state after Open:\n got %+v\nwant %+v\n(%s)", got, tc.want, tc.why)
			}
			want := []incident.Entry{{Kind: incident.KindOpened, At: tc.trigger[len(tc.trigger)-1].At, Details: tc.details, After: tc.want}}
			if got := inc.Changes(); !reflect.DeepEqual(got, want) {
				t.Errorf("Changes() after Open:\n got %+v\nwant %+v\n(%s)", got, want, tc.why)
			}
			if inc.Severity() != incident.SeverityLow || inc.Status() != incident.StatusOpen {
				t.Errorf("opened at %s/%s, want low/open: the escalate stage raises it", inc.Severity(), inc.Status())
			}
		})
	}
}

func TestOpenRejectsInvalid(t *testing.T) {
	t.Parallel()
	one := []incident.Signal{sig(0, 0.7)}
	cases := []struct {
		name    string
		id      string
		service string
		trigger []incident.Signal
		why     string
	}{
		{"no id", "", "api", one, "the incident could never be found again"},
		{"no service", "inc-1", "", one, "an incident belongs to one service"},
		{"nil trigger", "inc-1", "api", nil, "an incident needs the anomaly that caused it"},
		{"empty trigger", "inc-1", "api", []incident.Signal{}, "an empty slice is no anomaly either"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			inc, err := incident.Open(tc.id, tc.service, tc.trigger)
			if !errors.Is(err, incident.ErrInvalidIncident) {
				t.Errorf("Open error = %v, want ErrInvalidIncident (%s)", err, tc.why)
			}
			if inc != nil {
				t.Errorf("Open returned %+v with the error, want nil", inc.Snapshot())
			}
		})
	}
}

// TestTransitions drives every method from every relevant state. A legal move must append
// exactly one entry of its kind, dated as given, whose After is the new state; an illegal
// one must return its named error and change nothing at all.
func TestTransitions(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		setup func(*testing.T) *incident.Incident
		act   func(*incident.Incident) error
		// For a legal move: the entry it appends and the state afterwards.
		wantKind    incident.Kind
		wantAt      time.Time
		wantDetails incident.Details
		wantState   func(before incident.Snapshot) incident.Snapshot
		// reasonHas, if set, must appear in Details.Reason, which is then not compared whole.
		reasonHas string
		// For an illegal move: the named error.
		wantErr error
		why     string
	}{
		// RecordAnomaly.
		{
			name: "record anomaly on open", setup: opened,
			act:         func(i *incident.Incident) error { return i.RecordAnomaly(sig(3, 0.9)) },
			wantKind:    incident.KindAnomalyRecorded,
			wantAt:      at(3),
			wantDetails: incident.Details{Score: 0.9, Threshold: thr, Occurrences: 4},
			wantState: func(s incident.Snapshot) incident.Snapshot {
				s.Occurrences, s.LastSeen, s.LastScore, s.PeakExcess = 4, at(3), 0.9, excess(0.9)
				return s
			},
			why: "counts the anomaly, moves last_seen and raises the peak",
		},
		{
			name: "weaker anomaly keeps the peak", setup: opened,
			act:         func(i *incident.Incident) error { return i.RecordAnomaly(sig(3, 0.61)) },
			wantKind:    incident.KindAnomalyRecorded,
			wantAt:      at(3),
			wantDetails: incident.Details{Score: 0.61, Threshold: thr, Occurrences: 4},
			wantState: func(s incident.Snapshot) incident.Snapshot {
				s.Occurrences, s.LastSeen, s.LastScore = 4, at(3), 0.61
				return s
			},
			why: "the peak excess is a maximum over the episode",
		},
		{
			name: "anomaly at last_seen", setup: opened,
			act:         func(i *incident.Incident) error { return i.RecordAnomaly(sig(2, 0.7)) },
			wantKind:    incident.KindAnomalyRecorded,
			wantAt:      at(2),
			wantDetails: incident.Details{Score: 0.7, Threshold: thr, Occurrences: 4},
			wantState: func(s incident.Snapshot) incident.Snapshot {
				s.Occurrences, s.LastScore = 4, 0.7
				return s
			},
			why: "only strictly older anomalies are out of order",
		},
		{
			name: "record anomaly on resolved", setup: resolved,
			act:     func(i *incident.Incident) error { return i.RecordAnomaly(sig(11, 0.9)) },
			wantErr: incident.ErrResolved,
			why:     "a resolved incident comes back only through Reopen",
		},
		{
			name: "record anomaly out of order", setup: opened,
			act:     func(i *incident.Incident) error { return i.RecordAnomaly(sig(1, 0.9)) },
			wantErr: incident.ErrOutOfOrder,
			why:     "an anomaly older than last_seen would move it backwards",
		},

		// Escalate.
		{
			name: "escalate low to medium", setup: opened,
			act: func(i *incident.Incident) error {
				return i.EscalateFor(incident.SeverityMedium, "sustained-10m", incident.Signal{At: at(4), Score: i.LastScore(), Threshold: i.Threshold()}, i.Occurrences())
			},
			wantKind:    incident.KindEscalated,
			wantAt:      at(4),
			wantDetails: incident.Details{From: "low", To: "medium", Rule: "sustained-10m", Score: 0.65, Threshold: thr, Occurrences: 3},
			wantState: func(s incident.Snapshot) incident.Snapshot {
				s.Severity = incident.SeverityMedium
				return s
			},
			why: "the timeline says from, to, which rule fired and the latest score",
		},
		{
			name: "escalate low to critical", setup: opened,
			act: func(i *incident.Incident) error {
				return i.EscalateFor(incident.SeverityCritical, "extreme-sustained-15m", incident.Signal{At: at(4), Score: i.LastScore(), Threshold: i.Threshold()}, i.Occurrences())
			},
			wantKind:    incident.KindEscalated,
			wantAt:      at(4),
			wantDetails: incident.Details{From: "low", To: "critical", Rule: "extreme-sustained-15m", Score: 0.65, Threshold: thr, Occurrences: 3},
			wantState: func(s incident.Snapshot) incident.Snapshot {
				s.Severity = incident.SeverityCritical
				return s
			},
			why: "severity may skip steps",
		},
		{
			name: "escalate high to critical", setup: escalated(incident.SeverityHigh),
			act: func(i *incident.Incident) error {
				return i.EscalateFor(incident.SeverityCritical, "sustained-60m", incident.Signal{At: at(4), Score: i.LastScore(), Threshold: i.Threshold()}, i.Occurrences())
			},
			wantKind:    incident.KindEscalated,
			wantAt:      at(4),
			wantDetails: incident.Details{From: "high", To: "critical", Rule: "sustained-60m", Score: 0.65, Threshold: thr, Occurrences: 3},
			wantState: func(s incident.Snapshot) incident.Snapshot {
				s.Severity = incident.SeverityCritical
				return s
			},
			why: "from is the current severity, not low",
		},
		{
			name: "escalate to same", setup: escalated(incident.SeverityMedium),
			act: func(i *incident.Incident) error {
				return i.EscalateFor(incident.SeverityMedium, "again", incident.Signal{At: at(4), Score: i.LastScore(), Threshold: i.Threshold()}, i.Occurrences())
			},
			wantErr: incident.ErrNotHigher,
			why:     "re-applying the same rule must not write a second escalation",
		},
		{
			name: "escalate to lower", setup: escalated(incident.SeverityHigh),
			act: func(i *incident.Incident) error {
				return i.EscalateFor(incident.SeverityMedium, "late", incident.Signal{At: at(4), Score: i.LastScore(), Threshold: i.Threshold()}, i.Occurrences())
			},
			wantErr: incident.ErrNotHigher,
			why:     "severity never goes down while open",
		},
		{
			name: "escalate to zero severity", setup: opened,
			act: func(i *incident.Incident) error {
				return i.EscalateFor(0, "bad", incident.Signal{At: at(4), Score: i.LastScore(), Threshold: i.Threshold()}, i.Occurrences())
			},
			wantErr: incident.ErrNotHigher,
			why:     "the zero Severity is invalid",
		},
		{
			name: "escalate beyond critical", setup: opened,
			act: func(i *incident.Incident) error {
				return i.EscalateFor(incident.SeverityCritical+1, "bad", incident.Signal{At: at(4), Score: i.LastScore(), Threshold: i.Threshold()}, i.Occurrences())
			},
			wantErr: incident.ErrNotHigher,
			why:     "numerically higher but not a severity",
		},
		{
			name: "escalate resolved", setup: resolved,
			act: func(i *incident.Incident) error {
				return i.EscalateFor(incident.SeverityCritical, "late", incident.Signal{At: at(11), Score: i.LastScore(), Threshold: i.Threshold()}, i.Occurrences())
			},
			wantErr: incident.ErrResolved,
			why:     "an escalation dated after the resolution must not touch a closed incident",
		},
		{
			name: "escalate resolved, dated before resolution", setup: resolved,
			act: func(i *incident.Incident) error {
				return i.EscalateFor(incident.SeverityCritical, "late", incident.Signal{At: at(5), Score: i.LastScore(), Threshold: i.Threshold()}, i.Occurrences())
			},
			wantKind:    incident.KindEscalated,
			wantAt:      at(5),
			wantDetails: incident.Details{From: "high", To: "critical", Rule: "late", Score: 0.65, Threshold: thr, Occurrences: 3},
			wantState: func(s incident.Snapshot) incident.Snapshot {
				s.Severity = incident.SeverityCritical
				return s
			},
			why: "the escalate stage may run behind: a change made while open still counts, and the incident stays resolved",
		},
		{
			name: "escalate resolved, dated at resolution", setup: resolved,
			act: func(i *incident.Incident) error {
				return i.EscalateFor(incident.SeverityCritical, "late", incident.Signal{At: at(10), Score: i.LastScore(), Threshold: i.Threshold()}, i.Occurrences())
			},
			wantKind:    incident.KindEscalated,
			wantAt:      at(10),
			wantDetails: incident.Details{From: "high", To: "critical", Rule: "late", Score: 0.65, Threshold: thr, Occurrences: 3},
			wantState: func(s incident.Snapshot) incident.Snapshot {
				s.Severity = incident.SeverityCritical
				return s
			},
			why: "only a change strictly after the resolution is refused",
		},
		{
			name: "escalate for an earlier change", setup: opened,
			act: func(i *incident.Incident) error {
				return i.EscalateFor(incident.SeverityMedium, "sustained-10m", incident.Signal{At: at(1), Score: 0.8, Threshold: 0.55}, 2)
			},
			wantKind:    incident.KindEscalated,
			wantAt:      at(1),
			wantDetails: incident.Details{From: "low", To: "medium", Rule: "sustained-10m", Score: 0.8, Threshold: 0.55, Occurrences: 2},
			wantState: func(s incident.Snapshot) incident.Snapshot {
				s.Severity = incident.SeverityMedium
				return s
			},
			why: "the entry names the change that made the rule fire, not the incident's latest state",
		},
		{
			name: "escalate for a change after resolution", setup: resolved,
			act: func(i *incident.Incident) error {
				return i.EscalateFor(incident.SeverityCritical, "late", incident.Signal{At: at(10).Add(time.Nanosecond), Score: 0.9, Threshold: thr}, 4)
			},
			wantErr: incident.ErrResolved,
			why:     "the incident was not open when that change happened",
		},
		{
			name: "escalate for, not higher", setup: escalated(incident.SeverityHigh),
			act: func(i *incident.Incident) error {
				return i.EscalateFor(incident.SeverityHigh, "again", incident.Signal{At: at(2), Score: 0.9, Threshold: thr}, 3)
			},
			wantErr: incident.ErrNotHigher,
			why:     "a redelivered or replayed judgement must not write twice",
		},

		// Resolve.
		{
			name: "resolve open", setup: opened,
			act:         func(i *incident.Incident) error { return i.Resolve(at(20), "healthy for 15m") },
			wantKind:    incident.KindResolved,
			wantAt:      at(20),
			wantDetails: incident.Details{Reason: "healthy for 15m", Occurrences: 3},
			wantState: func(s incident.Snapshot) incident.Snapshot {
				s.Status, s.ResolvedAt = incident.StatusResolved, at(20)
				return s
			},
			why: "status and resolved_at change together",
		},
		{
			name: "resolve at last_seen", setup: opened,
			act:         func(i *incident.Incident) error { return i.Resolve(at(2), "operator") },
			wantKind:    incident.KindResolved,
			wantAt:      at(2),
			wantDetails: incident.Details{Reason: "operator", Occurrences: 3},
			wantState: func(s incident.Snapshot) incident.Snapshot {
				s.Status, s.ResolvedAt = incident.StatusResolved, at(2)
				return s
			},
			why: "only a time strictly before the last anomaly is out of order",
		},
		{
			name: "resolve clears data stop", setup: stopped,
			act:         func(i *incident.Incident) error { return i.Resolve(at(20), "healthy") },
			wantKind:    incident.KindResolved,
			wantAt:      at(20),
			wantDetails: incident.Details{Reason: "healthy", Occurrences: 3},
			wantState: func(s incident.Snapshot) incident.Snapshot {
				s.Status, s.ResolvedAt, s.DataStopped = incident.StatusResolved, at(20), false
				return s
			},
			why: "a resolved incident has no data stop pending",
		},
		{
			name: "resolve twice", setup: resolved,
			act:     func(i *incident.Incident) error { return i.Resolve(at(20), "again") },
			wantErr: incident.ErrResolved,
			why:     "a redelivered tick must not resolve again",
		},
		{
			name: "resolve before last_seen", setup: opened,
			act:     func(i *incident.Incident) error { return i.Resolve(at(1), "early") },
			wantErr: incident.ErrOutOfOrder,
			why:     "an incident cannot end before its last anomaly",
		},

		// Reopen.
		{
			name: "reopen within window", setup: resolved,
			act: func(i *incident.Incident) error {
				return i.Reopen([]incident.Signal{sig(20, 0.7), sig(21, 0.95), sig(22, 0.62)}, 30*time.Minute)
			},
			wantKind:    incident.KindReopened,
			wantAt:      at(22),
			wantDetails: incident.Details{Score: 0.95, Threshold: thr, Occurrences: 6},
			reasonHas:   "anomalies again 10m0s after resolution (reopen window 30m0s)",
			wantState: func(s incident.Snapshot) incident.Snapshot {
				s.Status, s.ResolvedAt, s.Reopens, s.Occurrences = incident.StatusOpen, time.Time{}, 1, 6
				s.EpisodeStart, s.LastSeen, s.LastScore, s.PeakExcess = at(20), at(22), 0.62, excess(0.95)
				return s
			},
			why: "open again, occurrences add up, severity and first_seen kept, a new episode starts",
		},
		{
			name: "reopen at window edge", setup: resolved,
			act:         func(i *incident.Incident) error { return i.Reopen([]incident.Signal{sig(40, 0.7)}, 30*time.Minute) },
			wantKind:    incident.KindReopened,
			wantAt:      at(40),
			wantDetails: incident.Details{Score: 0.7, Threshold: thr, Occurrences: 4},
			reasonHas:   "30m0s after resolution",
			wantState: func(s incident.Snapshot) incident.Snapshot {
				s.Status, s.ResolvedAt, s.Reopens, s.Occurrences = incident.StatusOpen, time.Time{}, 1, 4
				s.EpisodeStart, s.LastSeen, s.LastScore, s.PeakExcess = at(40), at(40), 0.7, excess(0.7)
				return s
			},
			why: "exactly the window after resolution is still within it",
		},
		{
			name: "reopen at resolution time", setup: resolved,
			act:         func(i *incident.Incident) error { return i.Reopen([]incident.Signal{sig(10, 0.7)}, 30*time.Minute) },
			wantKind:    incident.KindReopened,
			wantAt:      at(10),
			wantDetails: incident.Details{Score: 0.7, Threshold: thr, Occurrences: 4},
			reasonHas:   "0s after resolution",
			wantState: func(s incident.Snapshot) incident.Snapshot {
				s.Status, s.ResolvedAt, s.Reopens, s.Occurrences = incident.StatusOpen, time.Time{}, 1, 4
				s.EpisodeStart, s.LastSeen, s.LastScore, s.PeakExcess = at(10), at(10), 0.7, excess(0.7)
				return s
			},
			why: "only an anomaly strictly before resolution is out of order",
		},
		{
			name: "reopen open", setup: opened,
			act:     func(i *incident.Incident) error { return i.Reopen([]incident.Signal{sig(20, 0.7)}, 30*time.Minute) },
			wantErr: incident.ErrNotResolved,
			why:     "an open incident records anomalies instead",
		},
		{
			name: "reopen after window", setup: resolved,
			act:     func(i *incident.Incident) error { return i.Reopen([]incident.Signal{sig(41, 0.7)}, 30*time.Minute) },
			wantErr: incident.ErrReopenWindowPassed,
			why:     "later anomalies are a new incident",
		},
		{
			name: "reopen before resolution", setup: resolved,
			act: func(i *incident.Incident) error {
				return i.Reopen([]incident.Signal{sig(9, 0.7), sig(11, 0.7)}, 30*time.Minute)
			},
			wantErr: incident.ErrOutOfOrder,
			why:     "an anomaly from before the resolution cannot reopen it",
		},
		{
			name: "reopen without anomalies", setup: resolved,
			act:     func(i *incident.Incident) error { return i.Reopen(nil, 30*time.Minute) },
			wantErr: incident.ErrInvalidIncident,
			why:     "reopening needs the anomaly that caused it",
		},

		// Acknowledge (an operator's action, dated by the request).
		{
			name: "acknowledge open", setup: opened,
			act:         func(i *incident.Incident) error { return i.Acknowledge("alice", at(5)) },
			wantKind:    incident.KindAcknowledged,
			wantAt:      at(5),
			wantDetails: incident.Details{By: "alice", Occurrences: 3},
			wantState: func(s incident.Snapshot) incident.Snapshot {
				s.AckedBy, s.AckedAt = "alice", at(5)
				return s
			},
			why: "records who took the incident on, and when; nothing else changes",
		},
		{
			name: "acknowledge dated before last_seen", setup: opened,
			act:         func(i *incident.Incident) error { return i.Acknowledge(" alice ", at(1)) },
			wantKind:    incident.KindAcknowledged,
			wantAt:      at(1),
			wantDetails: incident.Details{By: "alice", Occurrences: 3},
			wantState: func(s incident.Snapshot) incident.Snapshot {
				s.AckedBy, s.AckedAt = "alice", at(1)
				return s
			},
			why: "an operator's clock is not the samples': the time is kept as given, the name trimmed",
		},
		{
			name: "acknowledge twice", setup: acknowledged,
			act:     func(i *incident.Incident) error { return i.Acknowledge("bob", at(6)) },
			wantErr: incident.ErrAlreadyAcknowledged,
			why:     "the first acknowledgement stands; a second would hide who took it on",
		},
		{
			name: "acknowledge resolved", setup: resolved,
			act:     func(i *incident.Incident) error { return i.Acknowledge("alice", at(11)) },
			wantErr: incident.ErrResolved,
			why:     "there is nothing left to take on",
		},
		{
			name: "acknowledge without a name", setup: opened,
			act:     func(i *incident.Incident) error { return i.Acknowledge("  ", at(5)) },
			wantErr: incident.ErrNoOperator,
			why:     "the timeline must say who acted",
		},
		{
			name: "escalate acknowledged", setup: acknowledged,
			act: func(i *incident.Incident) error {
				return i.EscalateFor(incident.SeverityHigh, "sustained-30m", incident.Signal{At: at(4), Score: i.LastScore(), Threshold: i.Threshold()}, i.Occurrences())
			},
			wantKind:    incident.KindEscalated,
			wantAt:      at(4),
			wantDetails: incident.Details{From: "low", To: "high", Rule: "sustained-30m", Score: 0.65, Threshold: thr, Occurrences: 3},
			wantState: func(s incident.Snapshot) incident.Snapshot {
				s.Severity = incident.SeverityHigh
				return s
			},
			why: "severity keeps tracking the metrics after an acknowledgement, which it keeps",
		},
		{
			name: "anomaly on acknowledged", setup: acknowledged,
			act:         func(i *incident.Incident) error { return i.RecordAnomaly(sig(4, 0.7)) },
			wantKind:    incident.KindAnomalyRecorded,
			wantAt:      at(4),
			wantDetails: incident.Details{Score: 0.7, Threshold: thr, Occurrences: 4},
			wantState: func(s incident.Snapshot) incident.Snapshot {
				s.Occurrences, s.LastSeen, s.LastScore = 4, at(4), 0.7
				return s
			},
			why: "further anomalies of the same episode keep the acknowledgement",
		},

		// ResolveByOperator.
		{
			name: "resolve manually", setup: opened,
			act:         func(i *incident.Incident) error { return i.ResolveByOperator("alice", "rolled back", at(20)) },
			wantKind:    incident.KindResolved,
			wantAt:      at(20),
			wantDetails: incident.Details{By: "alice", Reason: "rolled back", Manual: true, Occurrences: 3},
			wantState: func(s incident.Snapshot) incident.Snapshot {
				s.Status, s.ResolvedAt = incident.StatusResolved, at(20)
				return s
			},
			why: "the entry names the operator and the reason, and says it was manual",
		},
		{
			name: "resolve manually dated before last_seen", setup: opened,
			act:         func(i *incident.Incident) error { return i.ResolveByOperator("alice", "rolled back", at(1)) },
			wantKind:    incident.KindResolved,
			wantAt:      at(2),
			wantDetails: incident.Details{By: "alice", Reason: "rolled back", Manual: true, Occurrences: 3},
			wantState: func(s incident.Snapshot) incident.Snapshot {
				s.Status, s.ResolvedAt = incident.StatusResolved, at(2)
				return s
			},
			why: "an incident never ends before its last anomaly, whatever the operator's clock says",
		},
		{
			name: "resolve manually keeps the acknowledgement", setup: acknowledged,
			act:         func(i *incident.Incident) error { return i.ResolveByOperator("bob", "fixed", at(20)) },
			wantKind:    incident.KindResolved,
			wantAt:      at(20),
			wantDetails: incident.Details{By: "bob", Reason: "fixed", Manual: true, Occurrences: 3},
			wantState: func(s incident.Snapshot) incident.Snapshot {
				s.Status, s.ResolvedAt = incident.StatusResolved, at(20)
				return s
			},
			why: "who took the incident on stays part of its story",
		},
		{
			name: "resolve manually clears data stop", setup: stopped,
			act:         func(i *incident.Incident) error { return i.ResolveByOperator("alice", "service retired", at(20)) },
			wantKind:    incident.KindResolved,
			wantAt:      at(20),
			wantDetails: incident.Details{By: "alice", Reason: "service retired", Manual: true, Occurrences: 3},
			wantState: func(s incident.Snapshot) incident.Snapshot {
				s.Status, s.ResolvedAt, s.DataStopped = incident.StatusResolved, at(20), false
				return s
			},
			why: "a resolved incident has no data stop pending",
		},
		{
			name: "resolve manually resolved", setup: resolved,
			act:     func(i *incident.Incident) error { return i.ResolveByOperator("alice", "again", at(20)) },
			wantErr: incident.ErrResolved,
			why:     "an incident resolves once per episode",
		},
		{
			name: "resolve manually without a reason", setup: opened,
			act:     func(i *incident.Incident) error { return i.ResolveByOperator("alice", " ", at(20)) },
			wantErr: incident.ErrNoReason,
			why:     "a manual resolution must say why",
		},
		{
			name: "resolve manually without a name", setup: opened,
			act:     func(i *incident.Incident) error { return i.ResolveByOperator("", "fixed", at(20)) },
			wantErr: incident.ErrNoOperator,
			why:     "the timeline must say who acted",
		},

		// ReopenByOperator.
		{
			name: "reopen manually long after", setup: resolved,
			act:         func(i *incident.Incident) error { return i.ReopenByOperator("bob", at(500)) },
			wantKind:    incident.KindReopened,
			wantAt:      at(500),
			wantDetails: incident.Details{By: "bob", Manual: true, Occurrences: 3, Reason: "reopened by an operator"},
			wantState: func(s incident.Snapshot) incident.Snapshot {
				s.Status, s.ResolvedAt, s.EpisodeStart, s.PeakExcess = incident.StatusOpen, time.Time{}, at(500), 0
				return s
			},
			why: "the reopen window binds the metrics only; a new episode starts, severity and reopen count stay",
		},
		{
			name: "reopen manually dated before resolution", setup: resolved,
			act:         func(i *incident.Incident) error { return i.ReopenByOperator("bob", at(5)) },
			wantKind:    incident.KindReopened,
			wantAt:      at(10),
			wantDetails: incident.Details{By: "bob", Manual: true, Occurrences: 3, Reason: "reopened by an operator"},
			wantState: func(s incident.Snapshot) incident.Snapshot {
				s.Status, s.ResolvedAt, s.EpisodeStart, s.PeakExcess = incident.StatusOpen, time.Time{}, at(10), 0
				return s
			},
			why: "a reopening never comes before the resolution it undoes",
		},
		{
			name: "reopen manually clears the acknowledgement", setup: ackedResolved,
			act:         func(i *incident.Incident) error { return i.ReopenByOperator("bob", at(30)) },
			wantKind:    incident.KindReopened,
			wantAt:      at(30),
			wantDetails: incident.Details{By: "bob", Manual: true, Occurrences: 3, Reason: "reopened by an operator"},
			wantState: func(s incident.Snapshot) incident.Snapshot {
				s.Status, s.ResolvedAt, s.EpisodeStart, s.PeakExcess = incident.StatusOpen, time.Time{}, at(30), 0
				s.AckedBy, s.AckedAt = "", time.Time{}
				return s
			},
			why: "a new episode needs someone to take it on again",
		},
		{
			name: "automatic reopen clears the acknowledgement", setup: ackedResolved,
			act:         func(i *incident.Incident) error { return i.Reopen([]incident.Signal{sig(20, 0.7)}, 30*time.Minute) },
			wantKind:    incident.KindReopened,
			wantAt:      at(20),
			wantDetails: incident.Details{Score: 0.7, Threshold: thr, Occurrences: 4},
			reasonHas:   "10m0s after resolution",
			wantState: func(s incident.Snapshot) incident.Snapshot {
				s.Status, s.ResolvedAt, s.Reopens, s.Occurrences = incident.StatusOpen, time.Time{}, 1, 4
				s.EpisodeStart, s.LastSeen, s.LastScore, s.PeakExcess = at(20), at(20), 0.7, excess(0.7)
				s.AckedBy, s.AckedAt = "", time.Time{}
				return s
			},
			why: "a relapse is a new episode, whoever reopened it",
		},
		{
			name: "anomaly before a manual reopening's time", setup: reopenedAt(500),
			act:         func(i *incident.Incident) error { return i.RecordAnomaly(sig(30, 0.7)) },
			wantKind:    incident.KindAnomalyRecorded,
			wantAt:      at(30),
			wantDetails: incident.Details{Score: 0.7, Threshold: thr, Occurrences: 4},
			wantState: func(s incident.Snapshot) incident.Snapshot {
				s.Occurrences, s.LastSeen, s.LastScore, s.PeakExcess, s.EpisodeStart = 4, at(30), 0.7, excess(0.7), at(30)
				return s
			},
			why: "samples behind the operator's clock: the episode starts at its first anomaly, never after it",
		},
		{
			name: "reopen manually open", setup: opened,
			act:     func(i *incident.Incident) error { return i.ReopenByOperator("bob", at(30)) },
			wantErr: incident.ErrNotResolved,
			why:     "an open incident cannot be reopened",
		},
		{
			name: "reopen manually without a name", setup: resolved,
			act:     func(i *incident.Incident) error { return i.ReopenByOperator("", at(30)) },
			wantErr: incident.ErrNoOperator,
			why:     "the timeline must say who acted",
		},

		// RecordSilencedAnomaly.
		{
			name: "silenced anomaly on open", setup: opened,
			act:         func(i *incident.Incident) error { return i.RecordSilencedAnomaly(sig(3, 0.95), "sil-1") },
			wantKind:    incident.KindAnomalyRecorded,
			wantAt:      at(3),
			wantDetails: incident.Details{Score: 0.95, Threshold: thr, Occurrences: 4, Silenced: true, Silence: "sil-1"},
			wantState: func(s incident.Snapshot) incident.Snapshot {
				s.Occurrences, s.LastSeen, s.LastScore = 4, at(3), 0.95
				return s
			},
			why: "counted and marked silenced, but the peak excess stays: maintenance is no evidence of severity",
		},
		{
			name: "silenced anomaly on resolved", setup: resolved,
			act:     func(i *incident.Incident) error { return i.RecordSilencedAnomaly(sig(11, 0.9), "sil-1") },
			wantErr: incident.ErrResolved,
			why:     "silenced anomalies never reopen",
		},
		{
			name: "silenced anomaly out of order", setup: opened,
			act:     func(i *incident.Incident) error { return i.RecordSilencedAnomaly(sig(1, 0.9), "sil-1") },
			wantErr: incident.ErrOutOfOrder,
			why:     "last_seen never moves backwards",
		},

		// MarkDataStopped.
		{
			name: "data stopped on open", setup: opened,
			act:      func(i *incident.Incident) error { return i.MarkDataStopped(at(3), at(9)) },
			wantKind: incident.KindDataStopped,
			wantAt:   at(3),
			wantDetails: incident.Details{
				LastSample: ptr(at(3)), DetectedAt: ptr(at(9)),
				Reason: "no samples received; the incident stays open until the service reports healthy metrics",
			},
			wantState: func(s incident.Snapshot) incident.Snapshot {
				s.DataStopped = true
				return s
			},
			why: "dated at the last sample, noting when the silence was noticed; stays open",
		},
		{
			name: "data stopped twice", setup: stopped,
			act:     func(i *incident.Incident) error { return i.MarkDataStopped(at(2), at(20)) },
			wantErr: incident.ErrDataAlreadyStopped,
			why:     "every tick of a long silence must not add an entry",
		},
		{
			name: "data stopped on resolved", setup: resolved,
			act:     func(i *incident.Incident) error { return i.MarkDataStopped(at(10), at(20)) },
			wantErr: incident.ErrResolved,
			why:     "a resolved incident does not care about silence",
		},

		// MarkDataResumed.
		{
			name: "data resumed after stop", setup: stopped,
			act:      func(i *incident.Incident) error { return i.MarkDataResumed(at(15)) },
			wantKind: incident.KindDataResumed,
			wantAt:   at(15),
			wantState: func(s incident.Snapshot) incident.Snapshot {
				s.DataStopped = false
				return s
			},
			why: "the first sample after a silence closes it",
		},
		{
			name: "data resumed without stop", setup: opened,
			act:     func(i *incident.Incident) error { return i.MarkDataResumed(at(15)) },
			wantErr: incident.ErrDataNotStopped,
			why:     "every sample would otherwise write a resumption",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			inc := tc.setup(t)
			before := inc.Snapshot()
			err := tc.act(inc)

			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("error = %v, want %v (%s)", err, tc.wantErr, tc.why)
				}
				if got := inc.Snapshot(); !reflect.DeepEqual(got, before) {
					t.Errorf("state changed by an illegal move:\n got %+v\nwant %+v", got, before)
				}
				if n := len(inc.Changes()); n != 0 {
					t.Errorf("illegal move appended %d timeline entries, want 0: %+v", n, inc.Changes())
				}
				return
			}

			if err != nil {
				t.Fatalf("error = %v, want none (%s)", err, tc.why)
			}
			want := tc.wantState(before)
			if got := inc.Snapshot(); !reflect.DeepEqual(got, want) {
				t.Errorf("state after move:\n got %+v\nwant %+v\n(%s)", got, want, tc.why)
			}
			changes := inc.Changes()
			if len(changes) != 1 {
				t.Fatalf("move appended %d timeline entries, want 1: %+v", len(changes), changes)
			}
			e := changes[0]
			if e.Kind != tc.wantKind || !e.At.Equal(tc.wantAt) {
				t.Errorf("entry %s at %s, want %s at %s", e.Kind, e.At, tc.wantKind, tc.wantAt)
			}
			if !reflect.DeepEqual(e.After, want) {
				t.Errorf("entry.After:\n got %+v\nwant %+v (the state right after the change)", e.After, want)
			}
			if tc.reasonHas != "" {
				// The reason is prose for operators; check only what it must say.
				if !strings.Contains(e.Details.Reason, tc.reasonHas) {
					t.Errorf("reason %q does not mention %q", e.Details.Reason, tc.reasonHas)
				}
				e.Details.Reason = ""
			}
			if !reflect.DeepEqual(e.Details, tc.wantDetails) {
				t.Errorf("entry details:\n got %+v\nwant %+v", e.Details, tc.wantDetails)
			}
		})
	}
}

// TestTimeline checks that a sequence of changes appends one entry each, in order, each with
// a snapshot frozen at its own change, and that ClearChanges starts a fresh list.
func TestTimeline(t *testing.T) {
	t.Parallel()
	inc, err := incident.Open("inc-1", "api", []incident.Signal{sig(0, 0.7), sig(1, 0.7), sig(2, 0.7)})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	steps := []struct {
		name string
		do   func() error
	}{
		{"record", func() error { return inc.RecordAnomaly(sig(3, 0.8)) }},
		{"escalate", func() error {
			return inc.EscalateFor(incident.SeverityMedium, "sustained-10m", incident.Signal{At: at(3), Score: inc.LastScore(), Threshold: inc.Threshold()}, inc.Occurrences())
		}},
		{"stop", func() error { return inc.MarkDataStopped(at(3), at(9)) }},
		{"resume", func() error { return inc.MarkDataResumed(at(10)) }},
		{"resolve", func() error { return inc.Resolve(at(25), "healthy") }},
		{"reopen", func() error { return inc.Reopen([]incident.Signal{sig(30, 0.9)}, 30*time.Minute) }},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
	}

	type row struct {
		kind        incident.Kind
		at          time.Time
		severity    incident.Severity
		status      incident.Status
		occurrences int
		stopped     bool
	}
	want := []row{
		{incident.KindOpened, at(2), incident.SeverityLow, incident.StatusOpen, 3, false},
		{incident.KindAnomalyRecorded, at(3), incident.SeverityLow, incident.StatusOpen, 4, false},
		{incident.KindEscalated, at(3), incident.SeverityMedium, incident.StatusOpen, 4, false},
		{incident.KindDataStopped, at(3), incident.SeverityMedium, incident.StatusOpen, 4, true},
		{incident.KindDataResumed, at(10), incident.SeverityMedium, incident.StatusOpen, 4, false},
		{incident.KindResolved, at(25), incident.SeverityMedium, incident.StatusResolved, 4, false},
		{incident.KindReopened, at(30), incident.SeverityMedium, incident.StatusOpen, 5, false},
	}
	changes := inc.Changes()
	if len(changes) != len(want) {
		t.Fatalf("%d entries, want %d: %+v", len(changes), len(want), changes)
	}
	for i, e := range changes {
		got := row{e.Kind, e.At, e.After.Severity, e.After.Status, e.After.Occurrences, e.After.DataStopped}
		if got != want[i] {
			t.Errorf("entry %d = %+v, want %+v", i, got, want[i])
		}
	}
	if last := changes[len(changes)-1].After; !reflect.DeepEqual(last, inc.Snapshot()) {
		t.Errorf("last entry's After = %+v, want the current state %+v", last, inc.Snapshot())
	}

	inc.ClearChanges()
	if n := len(inc.Changes()); n != 0 {
		t.Fatalf("%d entries after ClearChanges, want 0", n)
	}
	if err := inc.RecordAnomaly(sig(31, 0.7)); err != nil {
		t.Fatalf("RecordAnomaly: %v", err)
	}
	if got := inc.Changes(); len(got) != 1 || got[0].Kind != incident.KindAnomalyRecorded {
		t.Errorf("Changes() after clear and one anomaly = %+v, want only that anomaly", got)
	}
}

func TestFacts(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		build func(*testing.T) *incident.Incident
		want  incident.Facts
		why   string
	}{
		{
			name:  "just opened",
			build: opened,
			want:  incident.Facts{Active: 2 * time.Minute, Occurrences: 3, PeakExcess: excess(0.8)},
			why:   "active spans the trigger, peak is the strongest trigger anomaly",
		},
		{
			name: "anomalies recorded",
			build: func(t *testing.T) *incident.Incident {
				inc := opened(t)
				for m := 3; m <= 12; m++ {
					if err := inc.RecordAnomaly(sig(m, 0.7)); err != nil {
						t.Fatal(err)
					}
				}
				return inc
			},
			want: incident.Facts{Active: 12 * time.Minute, Occurrences: 13, PeakExcess: excess(0.8)},
			why:  "active grows with last_seen; weaker anomalies keep the peak",
		},
		{
			name: "escalation changes no fact",
			build: func(t *testing.T) *incident.Incident {
				return escalated(incident.SeverityHigh)(t)
			},
			want: incident.Facts{Active: 2 * time.Minute, Occurrences: 3, PeakExcess: excess(0.8)},
			why:  "the policy's input must not depend on its own output",
		},
		{
			name: "reopened",
			build: func(t *testing.T) *incident.Incident {
				inc := resolved(t)
				if err := inc.Reopen([]incident.Signal{sig(20, 0.65), sig(21, 0.7)}, 30*time.Minute); err != nil {
					t.Fatal(err)
				}
				return inc
			},
			want: incident.Facts{Active: time.Minute, Occurrences: 5, Reopens: 1, PeakExcess: excess(0.7)},
			why:  "active and peak restart with the episode, occurrences count the whole life",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.build(t).Facts(); got != tc.want {
				t.Errorf("Facts() = %+v, want %+v (%s)", got, tc.want, tc.why)
			}
		})
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		build func(*testing.T) *incident.Incident
		// next is a move that must behave the same on the original and the rehydrated copy.
		next func(*incident.Incident) error
		why  string
	}{
		{"open", opened, func(i *incident.Incident) error { return i.RecordAnomaly(sig(5, 0.9)) }, "open incidents accept anomalies"},
		{"escalated", escalated(incident.SeverityHigh), func(i *incident.Incident) error {
			return i.EscalateFor(incident.SeverityMedium, "x", incident.Signal{At: at(5), Score: i.LastScore(), Threshold: i.Threshold()}, i.Occurrences())
		}, "the severity survives, so lower is still refused"},
		{"data stopped", stopped, func(i *incident.Incident) error { return i.MarkDataStopped(at(2), at(30)) }, "the stop flag survives, so it is not recorded twice"},
		{"resolved", resolved, func(i *incident.Incident) error { return i.Reopen([]incident.Signal{sig(41, 0.7)}, 30*time.Minute) }, "resolved_at survives, so the reopen window is kept"},
		{"acknowledged", acknowledged, func(i *incident.Incident) error { return i.Acknowledge("bob", at(9)) }, "the acknowledgement survives, so a second one is refused"},
		{
			name: "reopened",
			build: func(t *testing.T) *incident.Incident {
				inc := resolved(t)
				if err := inc.Reopen([]incident.Signal{sig(15, 0.9)}, 30*time.Minute); err != nil {
					t.Fatal(err)
				}
				return inc
			},
			next: func(i *incident.Incident) error { return i.Resolve(at(14), "early") },
			why:  "episode and last_seen survive, so resolving before them is refused",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			orig := tc.build(t)
			snap := orig.Snapshot()
			loaded, err := incident.UnmarshalFromDatabase(snap)
			if err != nil {
				t.Fatalf("UnmarshalFromDatabase: %v", err)
			}
			if got := loaded.Snapshot(); !reflect.DeepEqual(got, snap) {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, snap)
			}
			if n := len(loaded.Changes()); n != 0 {
				t.Errorf("loaded incident has %d pending entries, want 0: loading is not a change", n)
			}
			errOrig, errLoaded := tc.next(orig), tc.next(loaded)
			if (errOrig == nil) != (errLoaded == nil) || errOrig != nil && errOrig.Error() != errLoaded.Error() {
				t.Errorf("next move: original %v, loaded %v; want the same (%s)", errOrig, errLoaded, tc.why)
			}
			if !reflect.DeepEqual(orig.Snapshot(), loaded.Snapshot()) {
				t.Errorf("after next move:\noriginal %+v\n  loaded %+v", orig.Snapshot(), loaded.Snapshot())
			}
		})
	}
}

func TestUnmarshalRejectsInconsistent(t *testing.T) {
	t.Parallel()
	valid := incident.Snapshot{
		ID: "inc-1", Service: "api", Severity: incident.SeverityMedium, Status: incident.StatusOpen,
		Occurrences: 3, FirstSeen: at(0), LastSeen: at(2), EpisodeStart: at(0), PeakExcess: 0.25, LastScore: 0.7, Threshold: thr,
	}
	if _, err := incident.UnmarshalFromDatabase(valid); err != nil {
		t.Fatalf("UnmarshalFromDatabase(valid) = %v; the cases below must each break one thing", err)
	}
	cases := []struct {
		name   string
		change func(*incident.Snapshot)
		why    string
	}{
		{"no id", func(s *incident.Snapshot) { s.ID = "" }, "an incident must be addressable"},
		{"no service", func(s *incident.Snapshot) { s.Service = "" }, "an incident belongs to a service"},
		{"zero severity", func(s *incident.Snapshot) { s.Severity = 0 }, "the zero Severity is invalid"},
		{"severity beyond critical", func(s *incident.Snapshot) { s.Severity = incident.SeverityCritical + 1 }, "only four severities exist"},
		{"zero status", func(s *incident.Snapshot) { s.Status = 0 }, "the zero Status is invalid"},
		{"unknown status", func(s *incident.Snapshot) { s.Status = incident.StatusResolved + 1 }, "only open and resolved exist"},
		{"open with resolved_at", func(s *incident.Snapshot) { s.ResolvedAt = at(10) }, "an open incident has not resolved"},
		{"resolved without resolved_at", func(s *incident.Snapshot) { s.Status = incident.StatusResolved }, "a resolution has a time"},
		{"no occurrences", func(s *incident.Snapshot) { s.Occurrences = 0 }, "an incident starts with at least one anomaly"},
		{"negative occurrences", func(s *incident.Snapshot) { s.Occurrences = -1 }, "a count cannot be negative"},
		{"last before first", func(s *incident.Snapshot) { s.LastSeen = at(-1) }, "time runs forwards"},
		{"acknowledged without time", func(s *incident.Snapshot) { s.AckedBy = "alice" }, "an acknowledgement has a time"},
		{"acknowledgement time without name", func(s *incident.Snapshot) { s.AckedAt = at(3) }, "an acknowledgement has an author"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := valid
			tc.change(&s)
			inc, err := incident.UnmarshalFromDatabase(s)
			if !errors.Is(err, incident.ErrInvalidIncident) {
				t.Errorf("UnmarshalFromDatabase error = %v, want ErrInvalidIncident (%s)", err, tc.why)
			}
			if inc != nil {
				t.Errorf("UnmarshalFromDatabase returned an incident with the error, want nil")
			}
		})
	}

	t.Run("every problem reported", func(t *testing.T) {
		t.Parallel()
		s := valid
		s.Severity, s.ResolvedAt, s.Occurrences = 0, at(10), 0
		_, err := incident.UnmarshalFromDatabase(s)
		for _, frag := range []string{"severity 0", "open incident with resolved_at", "occurrences"} {
			if err == nil || !strings.Contains(err.Error(), frag) {
				t.Errorf("error %v does not mention %q", err, frag)
			}
		}
	})
}

func TestParseSeverity(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		in   string
		want incident.Severity
		ok   bool
		why  string
	}{
		{"low", "low", incident.SeverityLow, true, "database value of the lowest severity"},
		{"medium", "medium", incident.SeverityMedium, true, "database value"},
		{"high", "high", incident.SeverityHigh, true, "database value"},
		{"critical", "critical", incident.SeverityCritical, true, "database value of the highest severity"},
		{"empty", "", 0, false, "no severity is not low"},
		{"upper case", "HIGH", 0, false, "the stored form is lower case"},
		{"padded", " low", 0, false, "no trimming: the stored form is exact"},
		{"unknown", "urgent", 0, false, "not one of the four"},
		{"invalid's own string", incident.Severity(0).String(), 0, false, "String of an invalid value does not parse back"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := incident.ParseSeverity(tc.in)
			if tc.ok {
				if err != nil || got != tc.want {
					t.Fatalf("ParseSeverity(%q) = %v, %v; want %v (%s)", tc.in, got, err, tc.want, tc.why)
				}
				if !got.Valid() || got.String() != tc.in {
					t.Errorf("%v: Valid() = %v, String() = %q; want true, %q (round trip)", got, got.Valid(), got.String(), tc.in)
				}
				return
			}
			if !errors.Is(err, incident.ErrInvalidIncident) || got != 0 {
				t.Errorf("ParseSeverity(%q) = %v, %v; want 0, ErrInvalidIncident (%s)", tc.in, got, err, tc.why)
			}
		})
	}
}

func TestParseStatus(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		in   string
		want incident.Status
		ok   bool
		why  string
	}{
		{"open", "open", incident.StatusOpen, true, "database value"},
		{"resolved", "resolved", incident.StatusResolved, true, "database value"},
		{"empty", "", 0, false, "no status is not open"},
		{"upper case", "Open", 0, false, "the stored form is lower case"},
		{"closed", "closed", 0, false, "a synonym is still unknown"},
		{"invalid's own string", incident.Status(0).String(), 0, false, "String of an invalid value does not parse back"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := incident.ParseStatus(tc.in)
			if tc.ok {
				if err != nil || got != tc.want || got.String() != tc.in {
					t.Errorf("ParseStatus(%q) = %v, %v; want %v round-tripping (%s)", tc.in, got, err, tc.want, tc.why)
				}
				return
			}
			if !errors.Is(err, incident.ErrInvalidIncident) || got != 0 {
				t.Errorf("ParseStatus(%q) = %v, %v; want 0, ErrInvalidIncident (%s)", tc.in, got, err, tc.why)
			}
		})
	}
}

func TestSignalExcess(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		score     float64
		threshold float64
		want      float64
		why       string
	}{
		{"below threshold", 0.4, 0.6, 0, "a healthy score has no excess"},
		{"at threshold", 0.6, 0.6, 0, "zero at the threshold"},
		{"halfway", 0.75, 0.5, 0.5, "half the headroom above the threshold"},
		{"quarter", 0.625, 0.5, 0.25, "a fraction of the headroom, not of the score"},
		{"maximum score", 1, 0.5, 1, "one at the maximum score"},
		{"threshold at 1", 1, 1, 0, "no headroom: no division by zero"},
		{"threshold above 1", 1.5, 1.2, 0, "a nonsense threshold gives no excess rather than a negative one"},
		{"zero threshold", 0.3, 0, 0.3, "with the whole range as headroom excess equals the score"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := incident.Signal{At: t0, Score: tc.score, Threshold: tc.threshold}
			if got := s.Excess(); got != tc.want {
				t.Errorf("Excess() of score %v over %v = %v, want %v (%s)", tc.score, tc.threshold, got, tc.want, tc.why)
			}
		})
	}
}
