package incident_test

import (
	"errors"
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
		{"critical-stays", func(i *incident.Incident) { _ = i.Escalate(incident.SeverityCritical, "x", t0); i.ClearChanges() }, incident.SeverityCritical, nil,
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
