package incident_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/incident-engine/engine/domain/incident"
)

// Scores of the pattern letters against thr (0.6): an ordinary anomaly has an excess of
// 0.125, an extreme one 0.75 (at least the default ExtremeExcess of 0.5).
const (
	healthyScore = 0.4
	anomalyScore = 0.65
	extremeScore = 0.9
)

// receiptLag is how long after its own timestamp the broker receives a sample by default.
const receiptLag = 2 * time.Second

// observation is the sample at minute m written as one pattern letter:
//
//	'.' healthy   'x' anomaly   'X' extreme anomaly
//	'E' an anomaly exactly at the extreme excess (score 0.75 over a threshold of 0.5: 0.5)
//	'w' warm-up (not judged; its flags are set as if anomalous, to show they are ignored)
//	's' an anomaly inside silence "sil-1"   'S' an extreme anomaly inside it
//	'q' a healthy sample inside it
func observation(m int, letter byte, lag time.Duration) incident.Observation {
	o := incident.Observation{At: at(m), ReceivedAt: at(m).Add(lag), Threshold: thr, Judged: true}
	switch letter {
	case '.':
		o.Score = healthyScore
	case 'x':
		o.Score, o.Anomalous = anomalyScore, true
	case 'X':
		o.Score, o.Anomalous = extremeScore, true
	case 'E':
		o.Score, o.Threshold, o.Anomalous = 0.75, 0.5, true
	case 'w':
		o.Score, o.Anomalous, o.Judged = extremeScore, true, false
	case 's':
		o.Score, o.Anomalous, o.Silence = anomalyScore, true, "sil-1"
	case 'S':
		o.Score, o.Anomalous, o.Silence = extremeScore, true, "sil-1"
	case 'q':
		o.Score, o.Silence = healthyScore, "sil-1"
	default:
		panic(fmt.Sprintf("unknown pattern letter %q", letter))
	}
	return o
}

// idCall is one call of the NewID function.
type idCall struct {
	service   string
	firstSeen time.Time
}

// run is one service's correlation: the watch and incident a handler would load and save,
// every incident ever created, and the NewID calls.
type run struct {
	c   incident.Correlator
	w   incident.Watch
	cur *incident.Incident
	all []*incident.Incident
	ids []idCall
	lag time.Duration
}

func newRun(t *testing.T, cfg incident.CorrelationConfig) *run {
	t.Helper()
	if cfg.OpenAfter == 0 && cfg.Window == 0 && cfg.OpenSpan == 0 {
		// The scenarios are written for 3 anomalies of 5 samples, counted in samples only; the
		// defaults (2 of 3, and that share of the last 8 minutes) are checked in
		// TestCorrelationConfig and TestCorrelatorOpenSpan.
		cfg.OpenAfter, cfg.Window, cfg.OpenSpan = 3, 5, -1
	}
	c, err := incident.NewCorrelator(cfg)
	if err != nil {
		t.Fatalf("NewCorrelator: %v", err)
	}
	return &run{c: c, w: incident.NewWatch("api"), lag: receiptLag}
}

func (r *run) newID(service string, firstSeen time.Time) string {
	r.ids = append(r.ids, idCall{service, firstSeen})
	return fmt.Sprintf("%s-%d", service, len(r.ids))
}

// observe applies one observation the way the correlate stage does.
func (r *run) observe(o incident.Observation) error {
	inc, err := r.c.Observe(&r.w, r.cur, o, r.newID)
	if err != nil {
		return err
	}
	if inc != nil && inc != r.cur {
		r.all = append(r.all, inc)
		r.cur = inc
	}
	return nil
}

// feed observes pattern, one letter per minute starting at minute from.
func (r *run) feed(t *testing.T, from int, pattern string) {
	t.Helper()
	for i := range len(pattern) {
		if err := r.observe(observation(from+i, pattern[i], r.lag)); err != nil {
			t.Fatalf("minute %d (%q): %v", from+i, pattern[i], err)
		}
	}
}

// kinds lists the kinds of the entries, for compact comparison.
func kinds(es []incident.Entry) []incident.Kind {
	ks := make([]incident.Kind, len(es))
	for i, e := range es {
		ks[i] = e.Kind
	}
	return ks
}

func cloneWatch(w incident.Watch) incident.Watch {
	return incident.UnmarshalWatchFromDatabase(w.State())
}

// resolvedAt18 is an incident opened by minutes 0-2 whose 15-minute healthy streak starts
// at minute 3 and reaches the recovery window at minute 18.
var resolvedAt18 = "xxx" + strings.Repeat(".", 16)

func TestCorrelatorOpens(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		pattern string
		// wantFirst/wantLast are minutes; wantOcc 0 means no incident.
		wantFirst, wantLast, wantOcc int
		wantKinds                    []incident.Kind
		why                          string
	}{
		{name: "warm-up never opens", pattern: "wwwwwwwwww", why: "unjudged samples are never anomalous, whatever their flags"},
		{name: "healthy", pattern: "..........", why: "nothing to see"},
		{name: "2 of 5", pattern: "x.x..", why: "below the open-after count"},
		{name: "pairs too far apart", pattern: "xx...xx", why: "anomalies that left the 5-sample window no longer count"},
		{name: "spread out", pattern: "x...x...x...x", why: "never 3 anomalies among 5 samples"},
		{
			name: "3 of 5", pattern: "x.x.x", wantFirst: 0, wantLast: 4, wantOcc: 3,
			wantKinds: []incident.Kind{incident.KindOpened},
			why:       "the third anomaly in the window opens, dated from the first",
		},
		{
			name: "3 in a row after calm", pattern: "......xxx", wantFirst: 6, wantLast: 8, wantOcc: 3,
			wantKinds: []incident.Kind{incident.KindOpened},
			why:       "healthy history does not delay opening",
		},
		{
			name: "warm-up inside the window", pattern: "xwwxwwx", wantFirst: 0, wantLast: 6, wantOcc: 3,
			wantKinds: []incident.Kind{incident.KindOpened},
			why:       "the window counts judged samples only, so unjudged ones do not push anomalies out",
		},
		{
			name: "single extreme", pattern: "....X", wantFirst: 4, wantLast: 4, wantOcc: 1,
			wantKinds: []incident.Kind{incident.KindOpened},
			why:       "an excess of at least 0.5 opens at once",
		},
		{
			name: "exactly extreme", pattern: "..E", wantFirst: 2, wantLast: 2, wantOcc: 1,
			wantKinds: []incident.Kind{incident.KindOpened},
			why:       "an excess equal to ExtremeExcess is extreme",
		},
		{
			name: "extreme after an anomaly", pattern: ".x..X", wantFirst: 1, wantLast: 4, wantOcc: 2,
			wantKinds: []incident.Kind{incident.KindOpened},
			why:       "the incident starts at the earliest anomaly still in the window",
		},
		{
			name: "further anomalies recorded", pattern: "xxx.x.xX", wantFirst: 0, wantLast: 7, wantOcc: 6,
			wantKinds: []incident.Kind{incident.KindOpened, incident.KindAnomalyRecorded, incident.KindAnomalyRecorded, incident.KindAnomalyRecorded},
			why:       "once open, every anomaly is counted into the same incident",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRun(t, incident.CorrelationConfig{})
			r.feed(t, 0, tc.pattern)
			if tc.wantOcc == 0 {
				if r.cur != nil || len(r.ids) != 0 || r.w.IncidentID() != "" {
					t.Fatalf("incident %+v opened (ids %v), want none (%s)", r.cur.Snapshot(), r.ids, tc.why)
				}
				return
			}
			if r.cur == nil || len(r.all) != 1 {
				t.Fatalf("%d incidents opened, want 1 (%s)", len(r.all), tc.why)
			}
			inc := r.cur
			if !inc.FirstSeen().Equal(at(tc.wantFirst)) || !inc.LastSeen().Equal(at(tc.wantLast)) || inc.Occurrences() != tc.wantOcc {
				t.Errorf("first %s, last %s, %d occurrences; want %s, %s, %d (%s)",
					inc.FirstSeen(), inc.LastSeen(), inc.Occurrences(), at(tc.wantFirst), at(tc.wantLast), tc.wantOcc, tc.why)
			}
			if want := []idCall{{"api", at(tc.wantFirst)}}; !reflect.DeepEqual(r.ids, want) {
				t.Errorf("NewID calls %v, want %v", r.ids, want)
			}
			if inc.ID() != "api-1" || inc.Service() != "api" || r.w.IncidentID() != "api-1" {
				t.Errorf("incident %q of %q, watch points at %q; want api-1 of api, pointed at", inc.ID(), inc.Service(), r.w.IncidentID())
			}
			if got := kinds(inc.Changes()); !slices.Equal(got, tc.wantKinds) {
				t.Errorf("timeline %v, want %v", got, tc.wantKinds)
			}
		})
	}
}

func TestCorrelatorRecovery(t *testing.T) {
	t.Parallel()
	r := newRun(t, incident.CorrelationConfig{})
	r.feed(t, 0, resolvedAt18[:18]) // minutes 0-17: 15 healthy samples, 14 minutes of health
	if !r.w.RecoveredAt().IsZero() || r.cur.Status() != incident.StatusOpen {
		t.Fatalf("after 14 healthy minutes: recovered at %s, status %s; want not yet", r.w.RecoveredAt(), r.cur.Status())
	}
	r.feed(t, 18, ".")
	if !r.w.HealthySince().Equal(at(3)) || !r.w.RecoveredAt().Equal(at(18)) {
		t.Fatalf("healthy since %s, recovered at %s; want %s, %s", r.w.HealthySince(), r.w.RecoveredAt(), at(3), at(18))
	}
	if r.cur.Status() != incident.StatusOpen {
		t.Fatalf("status %s at the sample that completed recovery, want open until settled", r.cur.Status())
	}

	t.Run("streak broken by an anomaly", func(t *testing.T) {
		t.Parallel()
		r := newRun(t, incident.CorrelationConfig{})
		r.feed(t, 0, "xxx"+strings.Repeat(".", 10)+"x"+strings.Repeat(".", 15))
		if !r.w.RecoveredAt().IsZero() || r.cur.Status() != incident.StatusOpen || !r.w.HealthySince().Equal(at(14)) {
			t.Fatalf("recovered at %s, healthy since %s, status %s; want the streak restarted at minute 14 and not complete",
				r.w.RecoveredAt(), r.w.HealthySince(), r.cur.Status())
		}
		r.feed(t, 29, ".")
		if !r.w.RecoveredAt().Equal(at(29)) {
			t.Errorf("recovered at %s, want %s: 15 minutes after the streak restarted", r.w.RecoveredAt(), at(29))
		}
	})

	t.Run("unjudged samples are no evidence of health", func(t *testing.T) {
		t.Parallel()
		r := newRun(t, incident.CorrelationConfig{})
		r.feed(t, 0, "xxx"+strings.Repeat("w", 30))
		if !r.w.HealthySince().IsZero() || !r.w.RecoveredAt().IsZero() {
			t.Errorf("healthy since %s, recovered at %s after warm-up samples only; want neither", r.w.HealthySince(), r.w.RecoveredAt())
		}
	})
}

// TestCorrelatorResolves checks that whatever settles a completed recovery first (the ticker
// or the next sample, healthy or not) resolves the incident dated RecoveredAt, once.
func TestCorrelatorResolves(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		then func(*testing.T, *run)
		// wantRecent is how many judged samples the watch remembers afterwards.
		wantRecent int
		why        string
	}{
		{"next healthy sample", func(t *testing.T, r *run) { r.feed(t, 19, ".") }, 1, "Observe settles before applying the sample"},
		{"next anomalous sample", func(t *testing.T, r *run) { r.feed(t, 19, "x") }, 1, "the anomaly comes after the resolution: one anomaly does not reopen"},
		{"next sample much later", func(t *testing.T, r *run) { r.feed(t, 90, ".") }, 1, "the date is RecoveredAt, not when the next sample came"},
		{"ticker settles", func(t *testing.T, r *run) { settle(t, r) }, 0, "Settle alone resolves"},
		{"ticker then next sample", func(t *testing.T, r *run) { settle(t, r); r.feed(t, 19, ".") }, 1, "the sample after a settle changes nothing more"},
		{"ticker twice", func(t *testing.T, r *run) { settle(t, r); settle(t, r) }, 0, "a second tick is a no-op"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRun(t, incident.CorrelationConfig{})
			r.feed(t, 0, resolvedAt18)
			r.cur.ClearChanges()
			tc.then(t, r)

			if r.cur.Status() != incident.StatusResolved || !r.cur.ResolvedAt().Equal(at(18)) {
				t.Fatalf("status %s resolved at %s, want resolved at %s (%s)", r.cur.Status(), r.cur.ResolvedAt(), at(18), tc.why)
			}
			changes := r.cur.Changes()
			if len(changes) != 1 || changes[0].Kind != incident.KindResolved || !changes[0].At.Equal(at(18)) {
				t.Fatalf("timeline %+v, want one resolved entry at %s (%s)", changes, at(18), tc.why)
			}
			if reason := changes[0].Details.Reason; !strings.Contains(reason, at(3).Format(time.RFC3339)) || !strings.Contains(reason, "15m0s") {
				t.Errorf("reason %q, want it to say healthy since %s for 15m0s", reason, at(3).Format(time.RFC3339))
			}
			if len(r.all) != 1 || len(r.ids) != 1 {
				t.Errorf("%d incidents, %d ids, want 1 and 1", len(r.all), len(r.ids))
			}
			if len(r.w.Recent()) != tc.wantRecent {
				t.Errorf("watch remembers %d samples, want %d: resolution forgets the old episode", len(r.w.Recent()), tc.wantRecent)
			}
		})
	}

	t.Run("ticker first or sample first give the same state", func(t *testing.T) {
		t.Parallel()
		a, b := newRun(t, incident.CorrelationConfig{}), newRun(t, incident.CorrelationConfig{})
		a.feed(t, 0, resolvedAt18+".xx")
		b.feed(t, 0, resolvedAt18)
		settle(t, b)
		b.feed(t, 19, ".xx")
		if !reflect.DeepEqual(a.cur.Snapshot(), b.cur.Snapshot()) || !reflect.DeepEqual(a.cur.Changes(), b.cur.Changes()) {
			t.Errorf("sample first:\n%+v\n%+v\nticker first:\n%+v\n%+v", a.cur.Snapshot(), a.cur.Changes(), b.cur.Snapshot(), b.cur.Changes())
		}
		if !reflect.DeepEqual(a.w, b.w) {
			t.Errorf("watches differ:\nsample first %+v\nticker first %+v", a.w, b.w)
		}
	})

	t.Run("settle with nothing to do", func(t *testing.T) {
		t.Parallel()
		r := newRun(t, incident.CorrelationConfig{})
		if err := r.c.Settle(&r.w, nil); err != nil {
			t.Errorf("Settle without incident = %v, want nil", err)
		}
		r.feed(t, 0, resolvedAt18[:18])
		r.cur.ClearChanges()
		before := cloneWatch(r.w)
		settle(t, r)
		if r.cur.Status() != incident.StatusOpen || len(r.cur.Changes()) != 0 || !reflect.DeepEqual(r.w, before) {
			t.Errorf("Settle before recovery completed: status %s, %d changes; want open and untouched", r.cur.Status(), len(r.cur.Changes()))
		}
	})
}

func settle(t *testing.T, r *run) {
	t.Helper()
	if err := r.c.Settle(&r.w, r.cur); err != nil {
		t.Fatalf("Settle: %v", err)
	}
}

func TestCorrelatorReopens(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		// after is fed from minute 19, right after the recovery completed at 18.
		after string
		// wantReopen: same incident reopened; wantNewAt >= 0: a new incident with that first minute.
		wantReopen bool
		wantNewAt  int
		wantOcc    int
		why        string
	}{
		{"soon after", ".....xxx", true, -1, 6, "7 minutes after resolution is the same problem"},
		{"extreme soon after", "..X", true, -1, 4, "one extreme anomaly reopens as it would open"},
		{"at the window edge", strings.Repeat(".", 29) + "xxx", true, -1, 6, "first anomaly exactly 30m after resolution"},
		{"just after the window", strings.Repeat(".", 30) + "xxx", false, 49, 3, "31m after resolution is a new incident"},
		{"hours later", strings.Repeat(".", 300) + "xx.x", false, 319, 3, "long after, a new incident with a new id"},
		{"scattered anomalies", ".x...x...x", false, -1, 3, "as when opening, 3 of 5 are needed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRun(t, incident.CorrelationConfig{})
			r.feed(t, 0, resolvedAt18)
			first := r.cur
			r.feed(t, 19, tc.after)
			if first.Status() != incident.StatusResolved && !tc.wantReopen {
				t.Errorf("first incident is %s, want it left resolved (%s)", first.Status(), tc.why)
			}
			switch {
			case tc.wantReopen:
				if r.cur != first || len(r.all) != 1 || len(r.ids) != 1 || r.w.IncidentID() != "api-1" {
					t.Fatalf("%d incidents, %d ids, watch on %q; want api-1 reopened (%s)", len(r.all), len(r.ids), r.w.IncidentID(), tc.why)
				}
				if first.Status() != incident.StatusOpen || first.Reopens() != 1 || first.Occurrences() != tc.wantOcc || !first.ResolvedAt().IsZero() {
					t.Errorf("status %s, %d reopens, %d occurrences, resolved at %s; want open, 1, %d, zero (%s)",
						first.Status(), first.Reopens(), first.Occurrences(), first.ResolvedAt(), tc.wantOcc, tc.why)
				}
				if ks := kinds(first.Changes()); ks[len(ks)-1] != incident.KindReopened {
					t.Errorf("timeline %v, want it to end with reopened", ks)
				}
			case tc.wantNewAt >= 0:
				if len(r.all) != 2 || r.cur == first {
					t.Fatalf("%d incidents, want a second one (%s)", len(r.all), tc.why)
				}
				if want := []idCall{{"api", at(0)}, {"api", at(tc.wantNewAt)}}; !reflect.DeepEqual(r.ids, want) {
					t.Errorf("NewID calls %v, want %v", r.ids, want)
				}
				second := r.cur
				if second.ID() != "api-2" || r.w.IncidentID() != "api-2" || second.Reopens() != 0 || second.Occurrences() != tc.wantOcc || !second.FirstSeen().Equal(at(tc.wantNewAt)) {
					t.Errorf("new incident %q (watch on %q), %d reopens, %d occurrences, first %s; want api-2, 0, %d, %s",
						second.ID(), r.w.IncidentID(), second.Reopens(), second.Occurrences(), second.FirstSeen(), tc.wantOcc, at(tc.wantNewAt))
				}
			default:
				if len(r.all) != 1 || first.Status() != incident.StatusResolved || first.Occurrences() != tc.wantOcc {
					t.Errorf("%d incidents, first %s with %d occurrences; want it alone, resolved, %d (%s)",
						len(r.all), first.Status(), first.Occurrences(), tc.wantOcc, tc.why)
				}
			}
		})
	}
}

func TestCorrelatorStaleSample(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		o    incident.Observation
		why  string
	}{
		{"redelivery", observation(4, 'x', receiptLag), "the same sample twice must not count twice"},
		{"same time, other content", observation(4, 'X', receiptLag), "the watermark is by time, not content"},
		{"older", observation(1, 'x', receiptLag), "a late arrival cannot rewrite the past"},
		{"much older", observation(-100, 'X', receiptLag), "even before the incident"},
		{"older but received later", observation(3, 'x', time.Hour), "order is by event time, not receipt"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRun(t, incident.CorrelationConfig{})
			r.feed(t, 0, "xxx.x")
			before, snap, n := cloneWatch(r.w), r.cur.Snapshot(), len(r.cur.Changes())
			inc, err := r.c.Observe(&r.w, r.cur, tc.o, r.newID)
			if !errors.Is(err, incident.ErrStaleSample) {
				t.Fatalf("Observe error = %v, want ErrStaleSample (%s)", err, tc.why)
			}
			if inc != nil {
				t.Errorf("Observe returned incident %q with ErrStaleSample, want nil: nothing to save", inc.ID())
			}
			if !reflect.DeepEqual(r.w, before) {
				t.Errorf("watch changed:\n got %+v\nwant %+v", r.w, before)
			}
			if !reflect.DeepEqual(r.cur.Snapshot(), snap) || len(r.cur.Changes()) != n || len(r.ids) != 1 {
				t.Errorf("incident changed by a stale sample: %+v", r.cur.Changes()[n:])
			}
		})
	}
}

func TestCorrelatorCheckStale(t *testing.T) {
	t.Parallel()
	// lastRecv is when the broker received the last sample of "xxx" (minute 2).
	lastRecv := at(2).Add(receiptLag)
	cases := []struct {
		name    string
		pattern string
		lag     time.Duration
		// checks are the wall-clock times of successive ticks; want what each reports.
		checks []time.Time
		want   []bool
		why    string
	}{
		{"just before", "xxx", receiptLag, []time.Time{lastRecv.Add(5*time.Minute - time.Nanosecond)}, []bool{false}, "silence shorter than StaleAfter"},
		{"exactly at", "xxx", receiptLag, []time.Time{lastRecv.Add(5 * time.Minute)}, []bool{true}, "StaleAfter of silence is enough"},
		{"once", "xxx", receiptLag, []time.Time{lastRecv.Add(5 * time.Minute), lastRecv.Add(6 * time.Minute), lastRecv.Add(time.Hour)}, []bool{true, false, false}, "one entry per silence, not per tick"},
		{"never resolves", "xxx", receiptLag, []time.Time{lastRecv.Add(24 * time.Hour), lastRecv.Add(48 * time.Hour)}, []bool{true, false}, "silence is not recovery"},
		{"from receipt, not event time", "xxx", 3 * time.Minute, []time.Time{at(2).Add(5 * time.Minute), at(2).Add(8 * time.Minute)}, []bool{false, true}, "a backlog delivered late is not silence"},
		{"resolved incident", resolvedAt18 + ".", receiptLag, []time.Time{at(19).Add(time.Hour)}, []bool{false}, "a resolved incident does not care about silence"},
		{"no incident", "x.x..", receiptLag, []time.Time{at(4).Add(time.Hour)}, []bool{false}, "nothing to record on"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRun(t, incident.CorrelationConfig{})
			r.lag = tc.lag
			r.feed(t, 0, tc.pattern)
			if r.cur != nil {
				r.cur.ClearChanges()
			}
			watch := cloneWatch(r.w)
			var stoppedAt time.Time
			for i, now := range tc.checks {
				got := r.c.CheckStale(&r.w, r.cur, now)
				if got != tc.want[i] {
					t.Errorf("tick %d at %s: CheckStale = %v, want %v (%s)", i, now, got, tc.want[i], tc.why)
				}
				if got {
					stoppedAt = now
				}
			}
			if !reflect.DeepEqual(r.w, watch) {
				t.Errorf("CheckStale changed the watch:\n got %+v\nwant %+v", r.w, watch)
			}
			if r.cur == nil {
				return
			}
			changes := r.cur.Changes()
			if stoppedAt.IsZero() {
				if len(changes) != 0 || r.cur.DataStopped() {
					t.Errorf("timeline %+v, data stopped %v; want nothing recorded", changes, r.cur.DataStopped())
				}
				return
			}
			if len(changes) != 1 || changes[0].Kind != incident.KindDataStopped {
				t.Fatalf("timeline %+v, want exactly one data_stopped", changes)
			}
			d := changes[0].Details
			if !changes[0].At.Equal(at(2)) || d.LastSample == nil || !d.LastSample.Equal(at(2)) || d.DetectedAt == nil || !d.DetectedAt.Equal(stoppedAt) {
				t.Errorf("data_stopped at %s (last sample %v, detected %v), want at and last sample %s, detected %s",
					changes[0].At, d.LastSample, d.DetectedAt, at(2), stoppedAt)
			}
			if r.cur.Status() != incident.StatusOpen || !r.cur.DataStopped() {
				t.Errorf("status %s, data stopped %v; want open with the stop recorded", r.cur.Status(), r.cur.DataStopped())
			}
		})
	}
}

func TestCorrelatorDataResumes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		next      string
		wantKinds []incident.Kind
		why       string
	}{
		{"healthy sample", ".", []incident.Kind{incident.KindDataResumed}, "any sample ends the silence"},
		{"warm-up sample", "w", []incident.Kind{incident.KindDataResumed}, "even an unjudged one: data is flowing again"},
		{"anomaly", "x", []incident.Kind{incident.KindDataResumed, incident.KindAnomalyRecorded}, "resumption first, then the anomaly it carries"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRun(t, incident.CorrelationConfig{})
			r.feed(t, 0, "xxx")
			if !r.c.CheckStale(&r.w, r.cur, at(30)) {
				t.Fatal("CheckStale after 28 silent minutes = false, want true")
			}
			r.cur.ClearChanges()
			r.feed(t, 40, tc.next)
			if got := kinds(r.cur.Changes()); !slices.Equal(got, tc.wantKinds) {
				t.Fatalf("timeline %v, want %v (%s)", got, tc.wantKinds, tc.why)
			}
			if e := r.cur.Changes()[0]; !e.At.Equal(at(40)) || r.cur.DataStopped() {
				t.Errorf("data_resumed at %s, data stopped %v; want at %s and cleared", e.At, r.cur.DataStopped(), at(40))
			}
			if !r.w.LastReceivedAt().Equal(at(40).Add(receiptLag)) {
				t.Errorf("LastReceivedAt = %s, want the new sample's receipt", r.w.LastReceivedAt())
			}
			if r.c.CheckStale(&r.w, r.cur, at(42)) {
				t.Errorf("CheckStale two minutes after resumption = true, want false")
			}
		})
	}
}

// TestCorrelatorOpenSpan checks the default open rule in time as well as in samples: 2 of the
// last 3 samples, and that share of the samples of the last 8 minutes when they are more.
func TestCorrelatorOpenSpan(t *testing.T) {
	t.Parallel()
	calm := strings.Repeat(".", 12)
	cases := []struct {
		name    string
		every   time.Duration
		pattern string
		// wantFirst and wantLast are sample indexes; wantFirst -1 means no incident.
		wantFirst, wantLast int
		why                 string
	}{
		{"blip at one a minute", time.Minute, calm + "xx" + calm, -1, 0, "2 anomalous minutes of 8 page nobody"},
		{"5 of 8 at one a minute", time.Minute, calm + "xxxxx" + calm, -1, 0, "5 of the 8 samples of the span are short of 2/3"},
		{"6 of 8 at one a minute", time.Minute, calm + "xxxxxx", 12, 17, "the sixth anomalous minute of the last 8 opens, dated from the first"},
		{"interleaved at one a minute", time.Minute, calm + "xx.xx.xx", 12, 19, "6 anomalies among the 8 samples of the span open"},
		{"extreme at one a minute", time.Minute, calm + "X", 12, 12, "an extreme anomaly still opens at once"},
		{"two at five minutes", 5 * time.Minute, calm + "xx", 12, 13, "the span holds 2 samples, fewer than 3: 2 of 3 as before"},
		{"every second", time.Second, strings.Repeat(".", 70) + strings.Repeat("x", 43), 70, 112, "the span is bounded to 64 samples: 43 of them open"},
		{"every second, 42", time.Second, strings.Repeat(".", 70) + strings.Repeat("x", 42), -1, 0, "42 of 64 are short of 2/3"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := incident.NewCorrelator(incident.CorrelationConfig{})
			if err != nil {
				t.Fatal(err)
			}
			w := incident.NewWatch("api")
			var cur *incident.Incident
			start := at(0)
			for i := range len(tc.pattern) {
				o := observation(0, tc.pattern[i], receiptLag)
				o.At = start.Add(time.Duration(i) * tc.every)
				o.ReceivedAt = o.At.Add(receiptLag)
				inc, err := c.Observe(&w, cur, o, func(string, time.Time) string { return "inc-1" })
				if err != nil {
					t.Fatalf("sample %d: %v", i, err)
				}
				if inc != nil && cur == nil {
					if tc.wantFirst < 0 {
						t.Fatalf("incident opened at sample %d, want none (%s)", i, tc.why)
					}
					if i != tc.wantLast {
						t.Errorf("incident opened at sample %d, want %d (%s)", i, tc.wantLast, tc.why)
					}
					if got, want := inc.FirstSeen(), start.Add(time.Duration(tc.wantFirst)*tc.every); !got.Equal(want) {
						t.Errorf("incident dated %s, want %s (%s)", got, want, tc.why)
					}
				}
				cur = inc
			}
			if tc.wantFirst >= 0 && cur == nil {
				t.Errorf("no incident, want one opened at sample %d (%s)", tc.wantLast, tc.why)
			}
		})
	}
}

// TestRecentKeepsOnlyWhatTheOpenRuleReads checks what a watch remembers of its recent
// samples: an anomaly's whole signal, which an incident opens with, and of a sample that does
// not count (healthy, or an anomaly inside a silence) its time alone, which is all the open
// rule reads of it; the watch is stored after every sample, so what it holds is what each
// sample costs the database.
func TestRecentKeepsOnlyWhatTheOpenRuleReads(t *testing.T) {
	t.Parallel()
	c, err := incident.NewCorrelator(incident.CorrelationConfig{})
	if err != nil {
		t.Fatal(err)
	}
	w := incident.NewWatch("api")
	pattern := "..q.s.x"
	for i := range len(pattern) {
		o := observation(i, pattern[i], receiptLag)
		o.ModelVersion = 2
		if _, err := c.Observe(&w, nil, o, func(string, time.Time) string { return "inc-1" }); err != nil {
			t.Fatalf("sample %d: %v", i, err)
		}
	}
	got := w.Recent()
	if len(got) != len(pattern) {
		t.Fatalf("%d recent samples, want %d (all within the open span)", len(got), len(pattern))
	}
	for i, r := range got[:len(got)-1] {
		if want := (incident.Recent{Signal: incident.Signal{At: at(i)}}); !reflect.DeepEqual(r, want) {
			t.Errorf("recent sample %d (%q) = %+v, want its time alone", i, pattern[i], r)
		}
	}
	last := got[len(got)-1]
	if !last.Anomalous || last.Score != anomalyScore || last.Threshold != thr || last.ModelVersion != 2 || !last.At.Equal(at(len(pattern)-1)) {
		t.Errorf("the anomaly is remembered as %+v, want its whole signal", last)
	}
}

func TestCorrelationConfig(t *testing.T) {
	t.Parallel()
	c, err := incident.NewCorrelator(incident.CorrelationConfig{})
	if err != nil {
		t.Fatalf("NewCorrelator(zero config): %v", err)
	}
	want := incident.CorrelationConfig{OpenAfter: 2, Window: 3, OpenSpan: 8 * time.Minute, ExtremeExcess: 0.5, Recovery: 15 * time.Minute, RecoverySamples: 5, ReopenWindow: 30 * time.Minute, StaleAfter: 5 * time.Minute}
	if got := c.Config(); got != want {
		t.Errorf("defaults %+v, want %+v", got, want)
	}
	custom := incident.CorrelationConfig{OpenAfter: 1, Window: 1, OpenSpan: -time.Second, ExtremeExcess: 1, Recovery: time.Second, RecoverySamples: 1, ReopenWindow: time.Hour, StaleAfter: time.Minute}
	if c, err := incident.NewCorrelator(custom); err != nil || c.Config() != custom {
		t.Errorf("NewCorrelator(%+v) = %+v, %v; want it kept as given", custom, c.Config(), err)
	}

	valid := want
	cases := []struct {
		name   string
		change func(*incident.CorrelationConfig)
		ok     bool
		why    string
	}{
		{"defaults", func(*incident.CorrelationConfig) {}, true, "the defaults are valid"},
		{"largest window", func(c *incident.CorrelationConfig) { c.Window, c.OpenAfter = 64, 64 }, true, "64 samples, all anomalous"},
		{"extreme excess 1", func(c *incident.CorrelationConfig) { c.ExtremeExcess = 1 }, true, "only a score of 1 opens at once"},
		{"no reopen window", func(c *incident.CorrelationConfig) { c.ReopenWindow = 0 }, true, "Validate allows zero (SetDefaults replaces it: unset)"},
		{"open after 0", func(c *incident.CorrelationConfig) { c.OpenAfter = 0 }, false, "every sample would open"},
		{"open after negative", func(c *incident.CorrelationConfig) { c.OpenAfter = -1 }, false, "a count cannot be negative"},
		{"open after above window", func(c *incident.CorrelationConfig) { c.OpenAfter = 4 }, false, "4 anomalies never fit in 3 samples"},
		{"window too large", func(c *incident.CorrelationConfig) { c.Window, c.OpenAfter = 65, 3 }, false, "the watch is stored per service and bounded"},
		{"extreme excess 0", func(c *incident.CorrelationConfig) { c.ExtremeExcess = 0 }, false, "every anomaly would be extreme"},
		{"extreme excess above 1", func(c *incident.CorrelationConfig) { c.ExtremeExcess = 1.5 }, false, "excess never exceeds 1: the rule would be dead"},
		{"recovery 0", func(c *incident.CorrelationConfig) { c.Recovery = 0 }, true, "Validate allows zero (SetDefaults replaces it: unset)"},
		{"recovery samples 0", func(c *incident.CorrelationConfig) { c.RecoverySamples = 0 }, true, "Validate allows zero (SetDefaults replaces it: unset)"},
		{"recovery negative", func(c *incident.CorrelationConfig) { c.Recovery = -time.Minute }, true, "recovery judged by its samples alone"},
		{"recovery samples negative", func(c *incident.CorrelationConfig) { c.RecoverySamples = -1 }, true, "recovery judged by its time alone"},
		{"reopen window negative", func(c *incident.CorrelationConfig) { c.ReopenWindow = -time.Minute }, true, "a negative window never reopens"},
		{"stale after negative", func(c *incident.CorrelationConfig) { c.StaleAfter = -time.Minute }, false, "silence cannot be negative"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := valid
			tc.change(&cfg)
			if err := cfg.Validate(); (err == nil) != tc.ok {
				t.Errorf("Validate(%+v) = %v, want ok %v (%s)", cfg, err, tc.ok, tc.why)
			}
		})
	}

	t.Run("negative values reach Validate", func(t *testing.T) {
		t.Parallel()
		_, err := incident.NewCorrelator(incident.CorrelationConfig{OpenAfter: -1, ExtremeExcess: 2, StaleAfter: -time.Minute})
		if err == nil {
			t.Fatal("NewCorrelator with three bad settings = nil error")
		}
		for _, frag := range []string{"open after -1", "extreme excess 2", "stale-after"} {
			if !strings.Contains(err.Error(), frag) {
				t.Errorf("error %q does not mention %q: every problem is reported", err, frag)
			}
		}
	})
}

// TestCorrelatorDeterministic replays one long, varied stream (warm-up, incidents opening,
// escalating in count, resolving, reopening, new incidents, silences) into two fresh watches
// and requires identical incidents and timelines.
func TestCorrelatorDeterministic(t *testing.T) {
	t.Parallel()
	type step struct {
		o     incident.Observation
		check time.Time // if set, a ticker run (Settle, CheckStale) at this wall-clock time first
	}
	rng := rand.New(rand.NewPCG(20250301, 7))
	var steps []step
	m := 0
	for range 30 { // warm-up
		steps = append(steps, step{o: observation(m, 'w', receiptLag)})
		m++
	}
	for len(steps) < 3000 {
		burst := rng.IntN(4) == 0
		for range 5 + rng.IntN(40) {
			letter := byte('.')
			switch p := rng.Float64(); {
			case burst && p < 0.05:
				letter = 'X'
			case burst && p < 0.8, !burst && p < 0.03:
				letter = 'x'
			}
			s := step{o: observation(m, letter, receiptLag)}
			if rng.IntN(60) == 0 { // a silence, noticed by the ticker
				gap := 1 + rng.IntN(20)
				s.check = at(m - 1).Add(time.Duration(gap) * time.Minute)
				m += gap
				s.o = observation(m, letter, receiptLag)
			}
			steps = append(steps, s)
			m++
		}
	}

	play := func() *run {
		r := newRun(t, incident.CorrelationConfig{})
		for i, s := range steps {
			if !s.check.IsZero() {
				settle(t, r)
				r.c.CheckStale(&r.w, r.cur, s.check)
			}
			if err := r.observe(s.o); err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
		}
		return r
	}
	a, b := play(), play()

	if len(a.all) != len(b.all) || !reflect.DeepEqual(a.ids, b.ids) || !reflect.DeepEqual(a.w, b.w) {
		t.Fatalf("runs differ: %d vs %d incidents, ids %v vs %v", len(a.all), len(b.all), a.ids, b.ids)
	}
	seen := map[incident.Kind]int{}
	for i := range a.all {
		if !reflect.DeepEqual(a.all[i].Snapshot(), b.all[i].Snapshot()) {
			t.Errorf("incident %d:\n%+v\n%+v", i, a.all[i].Snapshot(), b.all[i].Snapshot())
		}
		if !reflect.DeepEqual(a.all[i].Changes(), b.all[i].Changes()) {
			t.Errorf("incident %d timelines differ", i)
		}
		for _, e := range a.all[i].Changes() {
			seen[e.Kind]++
		}
	}
	// The stream must exercise every path, or identical output would prove little.
	for _, k := range []incident.Kind{incident.KindOpened, incident.KindAnomalyRecorded, incident.KindResolved, incident.KindReopened, incident.KindDataStopped, incident.KindDataResumed} {
		if seen[k] == 0 {
			t.Errorf("the stream never produced %s; change the seed or the mix", k)
		}
	}
	if seen[incident.KindOpened] < 2 {
		t.Errorf("the stream opened %d incidents, want several", seen[incident.KindOpened])
	}
	t.Logf("%d samples, %d incidents, entries by kind: %v", len(steps), len(a.all), seen)
}

// TestCorrelatorSilence checks that anomalies inside a silence open nothing, are recorded on
// the open incident or on the service, and never count towards opening later.
func TestCorrelatorSilence(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		pattern string
		// wantOcc 0 means no incident; wantKinds is its timeline.
		wantOcc   int
		wantFirst int
		wantKinds []incident.Kind
		// wantService is how many anomaly_silenced entries the watch recorded.
		wantService int
		why         string
	}{
		{name: "silenced anomalies", pattern: "sssss", wantService: 5, why: "five anomalies in a silence open nothing and are each recorded on the service"},
		{name: "silenced extreme", pattern: "..S", wantService: 1, why: "even an extreme anomaly opens nothing inside a silence"},
		{name: "healthy inside a silence", pattern: "qqqq", why: "only anomalies are recorded"},
		{name: "after the silence, fresh anomalies only", pattern: "ssss" + "xx", wantService: 4, why: "the silenced ones do not count towards the 3 of 5"},
		{
			name: "after the silence, enough fresh anomalies", pattern: "ssss" + "xxx", wantOcc: 3, wantFirst: 4,
			wantKinds: []incident.Kind{incident.KindOpened}, wantService: 4,
			why: "the incident starts at the first anomaly after the silence",
		},
		{name: "anomalies before the silence age out", pattern: "xx" + "sss" + "x", wantService: 3, why: "silenced samples take their place in the window"},
		{
			name: "open incident records them", pattern: "xxx" + "sS", wantOcc: 5, wantFirst: 0,
			wantKinds: []incident.Kind{incident.KindOpened, incident.KindAnomalyRecorded, incident.KindAnomalyRecorded},
			why:       "an open incident counts silenced anomalies as its own, marked silenced",
		},
		{
			name: "no reopen inside a silence", pattern: resolvedAt18 + "sss", wantOcc: 3, wantFirst: 0,
			wantKinds: []incident.Kind{incident.KindOpened, incident.KindResolved}, wantService: 3,
			why: "a resolved incident stays resolved; the anomalies go to the service",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRun(t, incident.CorrelationConfig{})
			r.feed(t, 0, tc.pattern)
			service := r.w.Changes()
			if len(service) != tc.wantService {
				t.Errorf("%d service entries %v, want %d (%s)", len(service), kinds(service), tc.wantService, tc.why)
			}
			for _, e := range service {
				if e.Kind != incident.KindAnomalySilenced || !e.Details.Silenced || e.Details.Silence != "sil-1" || e.Details.Score <= thr || e.After != (incident.Snapshot{}) {
					t.Errorf("service entry %+v, want anomaly_silenced of sil-1 with its score and no incident", e)
				}
			}
			if tc.wantOcc == 0 {
				if r.cur != nil {
					t.Fatalf("incident %+v, want none (%s)", r.cur.Snapshot(), tc.why)
				}
				return
			}
			if r.cur == nil || len(r.all) != 1 {
				t.Fatalf("%d incidents, want 1 (%s)", len(r.all), tc.why)
			}
			if r.cur.Occurrences() != tc.wantOcc || !r.cur.FirstSeen().Equal(at(tc.wantFirst)) {
				t.Errorf("%d occurrences from %s, want %d from %s (%s)", r.cur.Occurrences(), r.cur.FirstSeen(), tc.wantOcc, at(tc.wantFirst), tc.why)
			}
			if got := kinds(r.cur.Changes()); !slices.Equal(got, tc.wantKinds) {
				t.Errorf("timeline %v, want %v (%s)", got, tc.wantKinds, tc.why)
			}
			for _, e := range r.cur.Changes() {
				if e.Kind == incident.KindAnomalyRecorded && (!e.Details.Silenced || e.Details.Silence != "sil-1") {
					t.Errorf("anomaly entry %+v inside the silence is not marked silenced", e)
				}
			}
		})
	}

	t.Run("silenced peak does not count", func(t *testing.T) {
		t.Parallel()
		r := newRun(t, incident.CorrelationConfig{})
		r.feed(t, 0, "xxxS")
		if got, want := r.cur.PeakExcess(), excess(anomalyScore); got != want {
			t.Errorf("peak excess %v after a silenced extreme anomaly, want the unsilenced peak %v", got, want)
		}
	})

	t.Run("silenced anomaly breaks recovery", func(t *testing.T) {
		t.Parallel()
		r := newRun(t, incident.CorrelationConfig{})
		r.feed(t, 0, "xxx"+strings.Repeat(".", 10)+"s"+strings.Repeat(".", 10))
		if !r.w.RecoveredAt().IsZero() || !r.w.HealthySince().Equal(at(14)) {
			t.Errorf("recovered at %s, healthy since %s; want the streak restarted after the silenced anomaly at minute 13", r.w.RecoveredAt(), r.w.HealthySince())
		}
		settle(t, r)
		if r.cur.Status() != incident.StatusOpen {
			t.Errorf("incident %s, want open: it was anomalous inside the silence", r.cur.Status())
		}
	})

	t.Run("clear changes", func(t *testing.T) {
		t.Parallel()
		r := newRun(t, incident.CorrelationConfig{})
		r.feed(t, 0, "ss")
		r.w.ClearChanges()
		r.feed(t, 2, "s")
		if got := r.w.Changes(); len(got) != 1 || !got[0].At.Equal(at(2)) {
			t.Errorf("changes after clearing and one more anomaly: %+v, want only that one", got)
		}
	})
}

// TestCorrelatorOperatorActions checks what an operator's resolution or reopening does to the
// service's watch.
func TestCorrelatorOperatorActions(t *testing.T) {
	t.Parallel()

	t.Run("resolution forgets the recent anomalies", func(t *testing.T) {
		t.Parallel()
		r := newRun(t, incident.CorrelationConfig{})
		r.feed(t, 0, "xxx..")
		if err := r.c.ResolveByOperator(&r.w, r.cur, "alice", "known issue", at(5)); err != nil {
			t.Fatal(err)
		}
		if len(r.w.Recent()) != 0 || !r.w.HealthySince().IsZero() {
			t.Fatalf("watch %+v after a manual resolution, want no recent samples and no streak", r.w)
		}
		r.feed(t, 5, "x")
		if r.cur.Status() != incident.StatusResolved || len(r.all) != 1 {
			t.Fatalf("one anomaly after the resolution: %s, %d incidents; want it to stay resolved (the old anomalies must not count)", r.cur.Status(), len(r.all))
		}
		r.feed(t, 6, "xx")
		if r.cur.Status() != incident.StatusOpen || len(r.all) != 1 || r.cur.Reopens() != 1 {
			t.Errorf("three fresh anomalies: %s, %d incidents, %d reopens; want the same incident reopened by the metrics", r.cur.Status(), len(r.all), r.cur.Reopens())
		}
	})

	t.Run("reopening restarts recovery", func(t *testing.T) {
		t.Parallel()
		r := newRun(t, incident.CorrelationConfig{})
		r.feed(t, 0, resolvedAt18)
		settle(t, r)
		if err := r.c.ReopenByOperator(&r.w, r.cur, "bob", at(100)); err != nil {
			t.Fatal(err)
		}
		if r.cur.Status() != incident.StatusOpen || !r.w.RecoveredAt().IsZero() || !r.w.HealthySince().IsZero() {
			t.Fatalf("after reopening: %s, watch %+v; want open and the streak restarted", r.cur.Status(), r.w)
		}
		settle(t, r)
		if r.cur.Status() != incident.StatusOpen {
			t.Fatal("the old recovery resolved the reopened incident at once")
		}
		r.feed(t, 100, strings.Repeat(".", 16))
		settle(t, r)
		if r.cur.Status() != incident.StatusResolved || !r.cur.ResolvedAt().Equal(at(115)) {
			t.Errorf("after 15 healthy minutes: %s at %s, want resolved at %s", r.cur.Status(), r.cur.ResolvedAt(), at(115))
		}
	})

	t.Run("only the latest incident reopens", func(t *testing.T) {
		t.Parallel()
		r := newRun(t, incident.CorrelationConfig{})
		r.feed(t, 0, resolvedAt18)
		settle(t, r)
		first := r.cur
		r.feed(t, 100, "xxx")
		if len(r.all) != 2 {
			t.Fatalf("setup: %d incidents, want 2", len(r.all))
		}
		before, watch := first.Snapshot(), cloneWatch(r.w)
		if err := r.c.ReopenByOperator(&r.w, first, "bob", at(110)); !errors.Is(err, incident.ErrNotLatest) {
			t.Fatalf("reopening the older incident: %v, want ErrNotLatest", err)
		}
		if first.Snapshot() != before || !reflect.DeepEqual(r.w, watch) {
			t.Error("a refused reopening changed the incident or the watch")
		}
		if err := r.c.ReopenByOperator(&r.w, r.cur, "bob", at(110)); !errors.Is(err, incident.ErrNotResolved) {
			t.Errorf("reopening the open latest incident: %v, want ErrNotResolved", err)
		}
	})
}

// TestRecoveryInTimeAndSamples checks that recovery is judged in time and in samples: one
// sample every five minutes needs five healthy samples (25 minutes), not the three that
// fill the 15-minute window; one a minute needs the 15 minutes.
func TestRecoveryInTimeAndSamples(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		step      time.Duration
		wantAfter int // healthy samples until the resolution
	}{
		{"every five minutes", 5 * time.Minute, 5},
		{"every minute", time.Minute, 16},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRun(t, incident.CorrelationConfig{})
			obs := func(i int, letter byte) incident.Observation {
				o := observation(0, letter, receiptLag)
				o.At = at(0).Add(time.Duration(i) * tc.step)
				o.ReceivedAt = o.At.Add(receiptLag)
				return o
			}
			for i := range 3 {
				if err := r.observe(obs(i, 'x')); err != nil {
					t.Fatal(err)
				}
			}
			for k := 1; k <= 30; k++ {
				if err := r.observe(obs(2+k, '.')); err != nil {
					t.Fatal(err)
				}
				if err := r.c.Settle(&r.w, r.cur); err != nil {
					t.Fatal(err)
				}
				if r.cur.Status() == incident.StatusResolved {
					if k != tc.wantAfter {
						t.Errorf("resolved after %d healthy samples, want %d", k, tc.wantAfter)
					}
					return
				}
			}
			t.Fatal("never resolved")
		})
	}
}

// TestBaselineLearned checks that a relearned baseline is recorded on the open incident,
// which then resolves like any other once the samples after it are healthy.
func TestBaselineLearned(t *testing.T) {
	t.Parallel()
	r := newRun(t, incident.CorrelationConfig{})
	r.feed(t, 0, "xxxx")
	o := observation(4, 'x', receiptLag)
	o.Relearned, o.ModelVersion = true, 7
	if err := r.observe(o); err != nil {
		t.Fatal(err)
	}
	var learned []incident.Entry
	for _, e := range r.cur.Changes() {
		if e.Kind == incident.KindBaselineLearned {
			learned = append(learned, e)
		}
	}
	if len(learned) != 1 || !learned[0].At.Equal(at(4)) || learned[0].Details.ModelVersion != 7 || learned[0].Details.Reason == "" || r.cur.Status() != incident.StatusOpen {
		t.Fatalf("entries %v, status %s: want one baseline_learned at minute 4 naming model 7, the incident still open", learned, r.cur.Status())
	}
	r.feed(t, 5, strings.Repeat(".", 16))
	if err := r.c.Settle(&r.w, r.cur); err != nil {
		t.Fatal(err)
	}
	if r.cur.Status() != incident.StatusResolved {
		t.Errorf("status %s after 16 healthy minutes, want resolved", r.cur.Status())
	}
	// Relearned with no open incident records nothing.
	q := newRun(t, incident.CorrelationConfig{})
	o = observation(0, '.', receiptLag)
	o.Relearned = true
	if err := q.observe(o); err != nil || q.cur != nil {
		t.Errorf("relearned without an incident: %v, incident %v; want nothing", err, q.cur)
	}
}

// TestStateOf checks how a service is classified for the overview: the first state that
// applies wins.
func TestStateOf(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	fresh := incident.ServiceFacts{LastReceivedAt: now.Add(-time.Minute), Now: now, StaleAfter: 5 * time.Minute, HasModel: true}
	with := func(f func(*incident.ServiceFacts)) incident.ServiceFacts { c := fresh; f(&c); return c }
	cases := []struct {
		name  string
		facts incident.ServiceFacts
		want  incident.ServiceState
	}{
		{"healthy", fresh, incident.StateHealthy},
		{"never sent", with(func(f *incident.ServiceFacts) { f.LastReceivedAt = time.Time{} }), incident.StateNoData},
		{"silent too long, even in an incident", with(func(f *incident.ServiceFacts) { f.LastReceivedAt = now.Add(-6 * time.Minute); f.IncidentOpen = true }), incident.StateNoData},
		{"silenced beats an incident", with(func(f *incident.ServiceFacts) { f.Silenced = true; f.IncidentOpen = true }), incident.StateSilenced},
		{"in an incident", with(func(f *incident.ServiceFacts) { f.IncidentOpen = true; f.LatestAnomalous = true }), incident.StateInIncident},
		{"warming up", with(func(f *incident.ServiceFacts) { f.HasModel = false }), incident.StateWarmingUp},
		{"anomalous without an incident", with(func(f *incident.ServiceFacts) { f.LatestAnomalous = true }), incident.StateAnomalous},
	}
	for _, tc := range cases {
		if got := incident.StateOf(tc.facts); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

// TestCorrelatorNeverReopensWithANegativeWindow checks that a negative reopen window (what
// REOPEN_WINDOW=0 asks for) opens a new incident for anomalies right after a resolution.
func TestCorrelatorNeverReopensWithANegativeWindow(t *testing.T) {
	t.Parallel()
	r := newRun(t, incident.CorrelationConfig{ReopenWindow: -1})
	r.feed(t, 0, resolvedAt18)
	first := r.cur
	r.feed(t, 19, ".xxx")
	if len(r.all) != 2 || r.cur == first || first.Status() != incident.StatusResolved || first.Reopens() != 0 {
		t.Errorf("%d incidents, the first %s with %d reopens; want it left resolved and a second one opened", len(r.all), first.Status(), first.Reopens())
	}
}

// A negative recovery window judges recovery by its samples alone, a negative sample count by
// its time alone (zero takes the defaults: 15 minutes and 5 samples, minute 18 here).
func TestCorrelatorRecoveryJudgedByOneRule(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  incident.CorrelationConfig
		want int // minute of the resolution; the healthy streak starts at minute 3
	}{
		{"defaults", incident.CorrelationConfig{}, 18},
		{"samples alone", incident.CorrelationConfig{Recovery: -1, RecoverySamples: 4}, 6},
		{"time alone", incident.CorrelationConfig{Recovery: 5 * time.Minute, RecoverySamples: -1}, 8},
		{"neither", incident.CorrelationConfig{Recovery: -1, RecoverySamples: -1}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRun(t, tc.cfg)
			r.feed(t, 0, resolvedAt18)
			if err := r.c.Settle(&r.w, r.cur); err != nil { // as the ticker would
				t.Fatal(err)
			}
			if len(r.all) != 1 || r.all[0].Status() != incident.StatusResolved || !r.all[0].ResolvedAt().Equal(at(tc.want)) {
				t.Fatalf("%d incidents, the first %s at %s; want one, resolved at minute %d", len(r.all), r.all[0].Status(), r.all[0].ResolvedAt(), tc.want)
			}
		})
	}
}
