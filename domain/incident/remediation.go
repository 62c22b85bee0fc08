package incident

import (
	"fmt"
	"time"
)

// Timeline kinds written by the remediate stage. Only remediation_ineffective changes the
// incident (it escalates it); the others record what was done about it.
const (
	KindRemediationRequested   Kind = "remediation_requested"
	KindRemediationResult      Kind = "remediation_result"
	KindRemediationIneffective Kind = "remediation_ineffective"
)

// RuleRemediationIneffective names the escalation that follows a remediation that did not help.
const RuleRemediationIneffective = "remediation-ineffective"

// RemediationIneffective records that the remediation hook, run for the change at ranAt (event
// time), did not help: the anomaly cause, at least its allowed time later, shows the service
// still failing. It raises the severity one level unless it is already critical. Like
// EscalateFor, it judges the incident as of the cause, so it may be applied after the
// incident resolved, as long as the cause came before the resolution; a cause after it
// returns ErrResolved.
func (i *Incident) RemediationIneffective(hook string, ranAt time.Time, cause Signal) error {
	if i.status != StatusOpen && cause.At.After(i.resolvedAt) {
		return ErrResolved
	}
	d := cause.details()
	d.Occurrences = i.occurrences
	d.Reason = fmt.Sprintf("remediation %q for the change at %s did not help: still anomalous %s later",
		hook, ranAt.UTC().Format(time.RFC3339), cause.At.Sub(ranAt))
	i.record(KindRemediationIneffective, cause.At, d)
	if i.severity < SeverityCritical {
		return i.EscalateFor(i.severity+1, RuleRemediationIneffective, cause, i.occurrences)
	}
	return nil
}

// Remediation is one run of a remediation hook for an incident: at most one per hook and
// incident.
type Remediation struct {
	Hook       string
	IncidentID string
	Service    string
	// RanFor is the event time of the change that triggered the hook; the verification
	// counts from it, in event time.
	RanFor time.Time
	// RanAt is when the hook was called (wall-clock time).
	RanAt  time.Time
	DryRun bool
	// Skipped says why the hook was not called (rate limit), empty when it was.
	Skipped string
	// Status is the hook's answer, Err the failure; both empty for dry runs and skips.
	Status string
	Err    string
}

// Entries returns the timeline entries that record the run, dated at the change that
// triggered it: remediation_requested, and remediation_result when the hook was called.
func (r Remediation) Entries() []Entry {
	ran := r.RanAt.UTC()
	out := []Entry{{Kind: KindRemediationRequested, At: r.RanFor, Details: Details{Hook: r.Hook, DryRun: r.DryRun, Reason: r.Skipped, RanAt: &ran}}}
	if !r.DryRun && r.Skipped == "" {
		out = append(out, Entry{Kind: KindRemediationResult, At: r.RanFor, Details: Details{Hook: r.Hook, Status: r.Status, Error: r.Err}})
	}
	return out
}

// Verifiable reports whether the run should be checked for effect: the hook was really called
// and succeeded.
func (r Remediation) Verifiable() bool { return !r.DryRun && r.Skipped == "" && r.Err == "" }
