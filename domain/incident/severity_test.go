package incident_test

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/incident-engine/engine/domain/incident"
)

func TestDefaultPolicy(t *testing.T) {
	t.Parallel()
	const m = time.Minute
	cases := []struct {
		name     string
		facts    incident.Facts
		want     incident.Severity
		wantRule string // empty: no rule holds
		why      string
	}{
		{"fresh", incident.Facts{Active: 2 * m, Occurrences: 3, PeakExcess: 0.1}, incident.SeverityLow, "", "a new incident starts low"},
		{"zero facts", incident.Facts{}, incident.SeverityLow, "", "nothing known: nothing fires"},
		{"10m and 5", incident.Facts{Active: 10 * m, Occurrences: 5}, incident.SeverityMedium, "sustained-10m", "both conditions met exactly"},
		{"just under 10m", incident.Facts{Active: 10*m - time.Second, Occurrences: 5}, incident.SeverityLow, "", "one second short of the duration"},
		{"10m and 4", incident.Facts{Active: 10 * m, Occurrences: 4}, incident.SeverityLow, "", "one anomaly short of the count"},
		{"30m and 15", incident.Facts{Active: 30 * m, Occurrences: 15}, incident.SeverityHigh, "sustained-30m", "both conditions met exactly"},
		{"29m and 15", incident.Facts{Active: 29 * m, Occurrences: 15}, incident.SeverityMedium, "sustained-10m", "short of 30m falls back to the medium rule"},
		{"30m and 14", incident.Facts{Active: 30 * m, Occurrences: 14}, incident.SeverityMedium, "sustained-10m", "too few anomalies for high"},
		{"60m and 30", incident.Facts{Active: 60 * m, Occurrences: 30}, incident.SeverityCritical, "sustained-60m", "both conditions met exactly"},
		{"60m and 29", incident.Facts{Active: 60 * m, Occurrences: 29}, incident.SeverityHigh, "sustained-30m", "one anomaly short of critical"},
		{"59m and 30", incident.Facts{Active: 59 * m, Occurrences: 30}, incident.SeverityHigh, "sustained-30m", "one minute short of critical"},
		{"long but sparse", incident.Facts{Active: 6 * time.Hour, Occurrences: 5}, incident.SeverityMedium, "sustained-10m", "five anomalies over hours is not a sustained outage"},
		{"long but too few", incident.Facts{Active: 6 * time.Hour, Occurrences: 4}, incident.SeverityLow, "", "duration alone never escalates"},
		{"many but brief", incident.Facts{Active: 9 * m, Occurrences: 500}, incident.SeverityLow, "", "count alone never escalates"},
		{"extreme at once", incident.Facts{Occurrences: 1, PeakExcess: 0.5}, incident.SeverityHigh, "extreme", "a meltdown is high from its first sample"},
		{"nearly extreme", incident.Facts{Occurrences: 1, PeakExcess: 0.4999}, incident.SeverityLow, "", "just under the extreme excess"},
		{"extreme sustained 15m", incident.Facts{Active: 15 * m, Occurrences: 10, PeakExcess: 0.5}, incident.SeverityCritical, "extreme-sustained-15m", "an extreme incident reaches critical sooner"},
		{"extreme 14m59s", incident.Facts{Active: 15*m - time.Second, Occurrences: 10, PeakExcess: 0.5}, incident.SeverityHigh, "extreme", "one second short stays high"},
		{"extreme 15m and 9", incident.Facts{Active: 15 * m, Occurrences: 9, PeakExcess: 1}, incident.SeverityHigh, "extreme", "one anomaly short stays high"},
		{"15m and 10 not extreme", incident.Facts{Active: 15 * m, Occurrences: 10, PeakExcess: 0.49}, incident.SeverityMedium, "sustained-10m", "without the extreme excess only the medium rule holds"},
		{"flapping", incident.Facts{Occurrences: 6, Reopens: 2}, incident.SeverityHigh, "flapping", "twice back after resolving"},
		{"reopened once", incident.Facts{Occurrences: 6, Reopens: 1}, incident.SeverityLow, "", "one reopening is not yet flapping"},
		{"flapping beats medium", incident.Facts{Active: 10 * m, Occurrences: 5, Reopens: 3}, incident.SeverityHigh, "flapping", "the highest severity that holds wins"},
		{"tie goes to first listed", incident.Facts{Active: 30 * m, Occurrences: 15, Reopens: 2}, incident.SeverityHigh, "sustained-30m", "sustained-30m and flapping both hold: the first listed names the escalation"},
		{"extreme listed before flapping", incident.Facts{Occurrences: 1, Reopens: 2, PeakExcess: 0.9}, incident.SeverityHigh, "extreme", "extreme and flapping both hold: the first listed wins"},
		{"critical beats everything", incident.Facts{Active: 2 * time.Hour, Occurrences: 100, Reopens: 5, PeakExcess: 1}, incident.SeverityCritical, "sustained-60m", "two critical rules hold: the first listed wins"},
	}
	p := incident.DefaultPolicy()
	if err := p.Validate(); err != nil {
		t.Fatalf("DefaultPolicy().Validate() = %v", err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sev, rule, ok := p.Evaluate(tc.facts)
			if sev != tc.want || rule.Name != tc.wantRule || ok != (tc.wantRule != "") {
				t.Errorf("Evaluate(%+v) = %s, %q, %v; want %s, %q, %v (%s)",
					tc.facts, sev, rule.Name, ok, tc.want, tc.wantRule, tc.wantRule != "", tc.why)
			}
			if ok && rule.Severity != sev {
				t.Errorf("returned rule %q has severity %s, but Evaluate returned %s", rule.Name, rule.Severity, sev)
			}
		})
	}
}

func TestPolicyEvaluateEmpty(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		p    incident.Policy
		why  string
	}{
		{"nil rules", incident.Policy{}, "the zero Policy never escalates"},
		{"rule that never holds", incident.Policy{Rules: []incident.Rule{{Name: "never", Severity: incident.SeverityCritical, MinOccurrences: math.MaxInt}}}, "an unmet rule is not found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sev, rule, ok := tc.p.Evaluate(incident.Facts{Active: time.Hour, Occurrences: 100, Reopens: 9, PeakExcess: 1})
			if sev != incident.SeverityLow || ok || rule.Name != "" {
				t.Errorf("Evaluate = %s, %q, %v; want low, \"\", false (%s)", sev, rule.Name, ok, tc.why)
			}
		})
	}
}

func TestPolicyValidate(t *testing.T) {
	t.Parallel()
	good := incident.Rule{Name: "r", Severity: incident.SeverityMedium, MinActive: time.Minute, MinOccurrences: 1}
	with := func(change func(*incident.Rule)) incident.Policy {
		r := good
		change(&r)
		return incident.Policy{Rules: []incident.Rule{good, r}}
	}
	cases := []struct {
		name    string
		p       incident.Policy
		wantErr bool
		why     string
	}{
		{"default", incident.DefaultPolicy(), false, "the shipped policy is valid"},
		{"empty", incident.Policy{}, false, "a policy without rules never escalates, which is allowed"},
		{"zero conditions", incident.Policy{Rules: []incident.Rule{{Name: "always", Severity: incident.SeverityHigh}}}, false, "a zero condition always holds"},
		{"no name", with(func(r *incident.Rule) { r.Name = "" }), true, "the timeline names the rule that fired"},
		{"zero severity", with(func(r *incident.Rule) { r.Severity = 0 }), true, "the zero Severity is invalid"},
		{"severity beyond critical", with(func(r *incident.Rule) { r.Severity = incident.SeverityCritical + 1 }), true, "only four severities exist"},
		{"negative active", with(func(r *incident.Rule) { r.MinActive = -time.Second }), true, "a duration condition cannot be negative"},
		{"negative occurrences", with(func(r *incident.Rule) { r.MinOccurrences = -1 }), true, "a count condition cannot be negative"},
		{"negative reopens", with(func(r *incident.Rule) { r.MinReopens = -1 }), true, "a count condition cannot be negative"},
		{"negative excess", with(func(r *incident.Rule) { r.MinPeakExcess = -0.1 }), true, "excess is never negative"},
		{"NaN excess", with(func(r *incident.Rule) { r.MinPeakExcess = math.NaN() }), true, "a NaN condition never holds, silently disabling the rule"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.p.Validate()
			if tc.wantErr != (err != nil) {
				t.Fatalf("Validate() = %v, want error %v (%s)", err, tc.wantErr, tc.why)
			}
			if err != nil && !errors.Is(err, incident.ErrInvalidIncident) {
				t.Errorf("Validate() = %v, want it to wrap ErrInvalidIncident", err)
			}
			if err != nil && !strings.Contains(err.Error(), "rule 1") {
				t.Errorf("Validate() = %v, want it to name rule 1, the bad one", err)
			}
		})
	}

	t.Run("every bad rule reported", func(t *testing.T) {
		t.Parallel()
		p := incident.Policy{Rules: []incident.Rule{
			{Name: "", Severity: incident.SeverityHigh},
			good,
			{Name: "neg", Severity: incident.SeverityHigh, MinOccurrences: -1},
		}}
		err := p.Validate()
		for _, frag := range []string{"rule 0", `rule 2 ("neg")`} {
			if err == nil || !strings.Contains(err.Error(), frag) {
				t.Errorf("Validate() = %v, want it to mention %s: an operator fixes all at once", err, frag)
			}
		}
		if strings.Contains(err.Error(), "rule 1") {
			t.Errorf("Validate() = %v, blames the good rule 1", err)
		}
	})
}

// TestDefaultPolicyMonotone checks on a grid that more of any fact never lowers the
// severity: a longer, more frequent, more flapping or more extreme incident is at least as bad.
// Stepping one fact at a time between neighbouring grid points covers every ordered pair by
// transitivity.
func TestDefaultPolicyMonotone(t *testing.T) {
	t.Parallel()
	const m = time.Minute
	actives := []time.Duration{0, 5 * m, 10*m - 1, 10 * m, 15*m - 1, 15 * m, 30*m - 1, 30 * m, 60*m - 1, 60 * m, 24 * time.Hour}
	occurrences := []int{1, 4, 5, 9, 10, 14, 15, 29, 30, 1000}
	reopens := []int{0, 1, 2, 3, 50}
	peaks := []float64{0, 0.25, 0.4999, 0.5, 0.75, 1}
	p := incident.DefaultPolicy()

	sev := func(i [4]int) incident.Severity {
		s, _, _ := p.Evaluate(incident.Facts{Active: actives[i[0]], Occurrences: occurrences[i[1]], Reopens: reopens[i[2]], PeakExcess: peaks[i[3]]})
		return s
	}
	facts := [4]string{"active", "occurrences", "reopens", "peak excess"}
	size := [4]int{len(actives), len(occurrences), len(reopens), len(peaks)}
	seen := map[incident.Severity]bool{}
	for a := range actives {
		for o := range occurrences {
			for r := range reopens {
				for e := range peaks {
					at := [4]int{a, o, r, e}
					here := sev(at)
					seen[here] = true
					for f := range facts {
						if at[f]+1 == size[f] {
							continue
						}
						more := at
						more[f]++
						if s := sev(more); s < here {
							t.Errorf("more %s lowers severity from %s to %s at active %s, occurrences %d, reopens %d, peak %g",
								facts[f], here, s, actives[a], occurrences[o], reopens[r], peaks[e])
						}
					}
				}
			}
		}
	}
	// The grid must reach every severity, or the property would hold vacuously.
	for s := incident.SeverityLow; s <= incident.SeverityCritical; s++ {
		if !seen[s] {
			t.Errorf("grid never reaches %s; widen it", s)
		}
	}
}
