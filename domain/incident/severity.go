package incident

import (
	"errors"
	"fmt"
	"time"
)

// Severity grades an incident. The zero value is invalid.
type Severity uint8

// The severities, lowest first.
const (
	SeverityLow Severity = iota + 1
	SeverityMedium
	SeverityHigh
	SeverityCritical
)

// Valid reports whether s is one of the four severities.
func (s Severity) Valid() bool { return s >= SeverityLow && s <= SeverityCritical }

// String returns the name stored in the database and used in events.
func (s Severity) String() string {
	switch s {
	case SeverityLow:
		return "low"
	case SeverityMedium:
		return "medium"
	case SeverityHigh:
		return "high"
	case SeverityCritical:
		return "critical"
	}
	return fmt.Sprintf("Severity(%d)", uint8(s))
}

// ParseSeverity is the inverse of Severity.String.
func ParseSeverity(s string) (Severity, error) {
	for v := SeverityLow; v <= SeverityCritical; v++ {
		if v.String() == s {
			return v, nil
		}
	}
	return 0, fmt.Errorf("%w: unknown severity %q", ErrInvalidIncident, s)
}

// Rule raises an incident to Severity when every condition it sets holds. A zero condition
// always holds.
type Rule struct {
	// Name is written to the timeline when the rule fires.
	Name     string
	Severity Severity
	// MinActive is the shortest episode (first to latest anomaly) the rule needs.
	MinActive time.Duration
	// MinOccurrences is the fewest anomalies the rule needs.
	MinOccurrences int
	// MinReopens is the fewest reopenings the rule needs (flapping).
	MinReopens int
	// MinPeakExcess is the smallest peak excess over the threshold the rule needs.
	MinPeakExcess float64
}

func (r Rule) holds(f Facts) bool {
	return f.Active >= r.MinActive && f.Occurrences >= r.MinOccurrences &&
		f.Reopens >= r.MinReopens && f.PeakExcess >= r.MinPeakExcess
}

// Policy decides an incident's severity from its Facts. It is a pure function of them.
type Policy struct {
	Rules []Rule
}

// DefaultPolicy is the severity policy the engine ships with (see the README's table).
// Sustained and frequent anomalies raise severity step by step; an extreme anomaly (far
// above the threshold, as in a meltdown) starts at high and reaches critical sooner;
// an incident that keeps coming back (flapping) is at least high.
func DefaultPolicy() Policy {
	return Policy{Rules: []Rule{
		{Name: "sustained-10m", Severity: SeverityMedium, MinActive: 10 * time.Minute, MinOccurrences: 5},
		{Name: "sustained-30m", Severity: SeverityHigh, MinActive: 30 * time.Minute, MinOccurrences: 15},
		{Name: "sustained-60m", Severity: SeverityCritical, MinActive: 60 * time.Minute, MinOccurrences: 30},
		{Name: "extreme", Severity: SeverityHigh, MinPeakExcess: 0.5},
		{Name: "extreme-sustained-15m", Severity: SeverityCritical, MinPeakExcess: 0.5, MinActive: 15 * time.Minute, MinOccurrences: 10},
		{Name: "flapping", Severity: SeverityHigh, MinReopens: 2},
	}}
}

// Validate reports every rule that cannot work.
func (p Policy) Validate() error {
	var errs []error
	for i, r := range p.Rules {
		// !(x >= 0) also rejects NaN, which would never hold and so silently disable the rule.
		if r.Name == "" || !r.Severity.Valid() || r.MinActive < 0 || r.MinOccurrences < 0 || r.MinReopens < 0 || !(r.MinPeakExcess >= 0) {
			errs = append(errs, fmt.Errorf("%w: severity rule %d (%q) needs a name, a valid severity and non-negative conditions", ErrInvalidIncident, i, r.Name))
		}
	}
	return errors.Join(errs...)
}

// Evaluate returns the highest severity whose rule holds, with that rule, or SeverityLow and
// false when none holds. Among rules of equal severity, the first listed wins.
func (p Policy) Evaluate(f Facts) (Severity, Rule, bool) {
	best, found := Rule{Severity: SeverityLow}, false
	for _, r := range p.Rules {
		if r.holds(f) && (!found || r.Severity > best.Severity) {
			best, found = r, true
		}
	}
	return best.Severity, best, found
}
