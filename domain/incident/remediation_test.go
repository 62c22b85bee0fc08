package incident_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/incident-engine/engine/domain/incident"
)

func TestRemediationIneffective(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 26, 5, 0, 0, 0, time.UTC)
	cause := incident.Signal{At: t0.Add(20 * time.Minute), Score: 0.82, Threshold: 0.7, ModelVersion: 1}
	cases := []struct {
		name    string
		prepare func(*incident.Incident)
		want    incident.Severity
		err     error
		entries []incident.Kind
		why     string
	}{
		{"escalates", func(*incident.Incident) {}, incident.SeverityMedium, nil,
			[]incident.Kind{incident.KindRemediationIneffective, incident.KindEscalated}, "a remediation that did not help raises the severity one level"},
		{"critical-stays", func(i *incident.Incident) {
			_ = i.EscalateFor(incident.SeverityCritical, "x", incident.Signal{At: t0}, i.Occurrences())
			i.ClearChanges()
		}, incident.SeverityCritical, nil,
			[]incident.Kind{incident.KindRemediationIneffective}, "critical is the top: the timeline still says it did not help"},
		{"resolved-before-cause", func(i *incident.Incident) { _ = i.Resolve(t0.Add(10*time.Minute), "ok"); i.ClearChanges() }, incident.SeverityLow, incident.ErrResolved,
			nil, "resolved before the anomaly that would prove it: the remediation helped"},
		{"resolved-after-cause", func(i *incident.Incident) { _ = i.Resolve(t0.Add(90*time.Minute), "ok"); i.ClearChanges() }, incident.SeverityMedium, nil,
			[]incident.Kind{incident.KindRemediationIneffective, incident.KindEscalated}, "judged late, as of the cause, while the incident was still open"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			inc, err := incident.Open("id-1", "api", []incident.Signal{{At: t0, Score: 0.8, Threshold: 0.7}})
			if err != nil {
				t.Fatal(err)
			}
			inc.ClearChanges()
			c.prepare(inc)
			err = inc.RemediationIneffective("restart-pods", t0.Add(time.Minute), cause)
			if !errors.Is(err, c.err) {
				t.Fatalf("error %v, want %v (%s)", err, c.err, c.why)
			}
			if inc.Severity() != c.want {
				t.Errorf("severity %s, want %s (%s)", inc.Severity(), c.want, c.why)
			}
			changes := inc.Changes()
			if len(changes) != len(c.entries) {
				t.Fatalf("timeline has %d entries, want %v (%s)", len(changes), c.entries, c.why)
			}
			for i, e := range changes {
				if e.Kind != c.entries[i] || !e.At.Equal(cause.At) {
					t.Errorf("entry %d: %s at %s, want %s at %s", i, e.Kind, e.At, c.entries[i], cause.At)
				}
			}
			if len(changes) == 2 && changes[1].Details.Rule != incident.RuleRemediationIneffective {
				t.Errorf("escalation rule %q", changes[1].Details.Rule)
			}
		})
	}
}

// TestTimelineEntriesOfDeliveriesAndRemediations checks the entries the domain gives the
// timeline for what the notify and remediate stages did: the kind follows the outcome, the
// entry is dated at the change it was about, and a hook held back or run dry has no result.
func TestTimelineEntriesOfDeliveriesAndRemediations(t *testing.T) {
	t.Parallel()
	changeAt := time.Date(2026, 11, 26, 17, 0, 0, 0, time.UTC)
	wall := changeAt.Add(3 * time.Hour)
	ev := incident.Event{EventID: "ev-1", Event: incident.KindOpened, OccurredAt: changeAt}
	for _, tc := range []struct {
		err  string
		want incident.Kind
	}{{"", incident.KindNotified}, {"503 Service Unavailable", incident.KindNotificationFailed}} {
		e := incident.Delivery{Receiver: "slack", Event: ev, Attempts: 2, Err: tc.err, DeliveredAt: wall}.Entry()
		if e.Kind != tc.want || !e.At.Equal(changeAt) || e.Details.Receiver != "slack" || e.Details.EventID != "ev-1" ||
			e.Details.Attempts != 2 || e.Details.Error != tc.err || e.Details.DeliveredAt == nil || !e.Details.DeliveredAt.Equal(wall) {
			t.Errorf("delivery with error %q: entry %+v, want %s dated at the change", tc.err, e, tc.want)
		}
	}
	for _, tc := range []struct {
		name string
		r    incident.Remediation
		want []incident.Kind
	}{
		{"called", incident.Remediation{Hook: "restart", RanFor: changeAt, RanAt: wall, Status: "200 OK"}, []incident.Kind{incident.KindRemediationRequested, incident.KindRemediationResult}},
		{"dry run", incident.Remediation{Hook: "restart", RanFor: changeAt, RanAt: wall, DryRun: true}, []incident.Kind{incident.KindRemediationRequested}},
		{"held back", incident.Remediation{Hook: "restart", RanFor: changeAt, RanAt: wall, Skipped: "rate limit"}, []incident.Kind{incident.KindRemediationRequested}},
	} {
		es := tc.r.Entries()
		var kinds []incident.Kind
		for _, e := range es {
			kinds = append(kinds, e.Kind)
			if !e.At.Equal(changeAt) || e.Details.Hook != "restart" {
				t.Errorf("%s: entry %+v, want the hook's, dated at the change", tc.name, e)
			}
		}
		if !slices.Equal(kinds, tc.want) {
			t.Errorf("%s: entries %v, want %v", tc.name, kinds, tc.want)
		}
	}
}
