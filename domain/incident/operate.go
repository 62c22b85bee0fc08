package incident

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Operators act on incidents too: they acknowledge them, resolve them by hand and reopen them.
// Their actions are dated by the operator's request (wall-clock time, read by the adapter that
// took the request and passed in here), not by a sample: they are people's decisions, not
// judgements of metrics. Each one records its author in the timeline.

// Errors returned for illegal operator actions. Callers use errors.Is.
var (
	// ErrAlreadyAcknowledged is returned by Acknowledge when the current episode already is.
	ErrAlreadyAcknowledged = errors.New("incident is already acknowledged")
	// ErrNoOperator is returned by operator actions that do not say who made them.
	ErrNoOperator = errors.New("an operator action needs the operator's name")
	// ErrNoReason is returned by ResolveByOperator without a reason.
	ErrNoReason = errors.New("a manual resolution needs a reason")
	// ErrNotLatest is returned by ReopenByOperator for an incident that is no longer its
	// service's latest: a newer incident took its place, and reopening the older one would
	// leave correlation following the wrong incident.
	ErrNotLatest = errors.New("incident is not its service's latest")
)

// Acknowledge records that operator by took the incident on at time at. The incident keeps
// being correlated and escalated as before (severity keeps tracking the metrics); the
// acknowledgement lasts until the incident reopens.
func (i *Incident) Acknowledge(by string, at time.Time) error {
	by = strings.TrimSpace(by)
	if by == "" {
		return fmt.Errorf("acknowledge: %w", ErrNoOperator)
	}
	if i.status != StatusOpen {
		return ErrResolved
	}
	if i.ackedBy != "" {
		return fmt.Errorf("acknowledged by %s at %s: %w", i.ackedBy, i.ackedAt.UTC().Format(time.RFC3339), ErrAlreadyAcknowledged)
	}
	i.ackedBy, i.ackedAt = by, at
	i.record(KindAcknowledged, at, Details{By: by, Occurrences: i.occurrences})
	return nil
}

// ResolveByOperator closes an open incident on operator by's word, for reason, at time at. The
// resolution is dated no earlier than the last anomaly (an operator's clock may run behind
// the samples' timestamps, or the samples may be a replay), so an incident never ends before
// its evidence. If the service stays anomalous, correlation reopens the incident as it would
// after any resolution: to stop hearing about a known problem, silence the service.
func (i *Incident) ResolveByOperator(by, reason string, at time.Time) error {
	by, reason = strings.TrimSpace(by), strings.TrimSpace(reason)
	if by == "" {
		return fmt.Errorf("resolve: %w", ErrNoOperator)
	}
	if reason == "" {
		return ErrNoReason
	}
	if i.status != StatusOpen {
		return ErrResolved
	}
	if at.Before(i.lastSeen) {
		at = i.lastSeen
	}
	i.status = StatusResolved
	i.resolvedAt = at
	i.dataStopped = false
	i.record(KindResolved, at, Details{By: by, Reason: reason, Manual: true, Occurrences: i.occurrences})
	return nil
}

// ReopenByOperator brings a resolved incident back on operator by's word at time at, however
// long ago it resolved (the reopen window binds only the metrics). A new episode starts at the
// reopening (or at its first anomaly, if the samples' clock runs behind the operator's): its
// duration and peak count from there, and the acknowledgement is cleared. Severity
// is kept, and the reopening does not count towards flapping (Reopens), which is the
// service's behaviour, not an operator's correction.
func (i *Incident) ReopenByOperator(by string, at time.Time) error {
	by = strings.TrimSpace(by)
	if by == "" {
		return fmt.Errorf("reopen: %w", ErrNoOperator)
	}
	if i.status != StatusResolved {
		return ErrNotResolved
	}
	if at.Before(i.resolvedAt) {
		at = i.resolvedAt
	}
	i.status = StatusOpen
	i.resolvedAt = time.Time{}
	i.episodeStart = at
	i.peakExcess = 0
	i.ackedBy, i.ackedAt = "", time.Time{}
	i.record(KindReopened, at, Details{By: by, Manual: true, Occurrences: i.occurrences, Reason: "reopened by an operator"})
	return nil
}

// ResolveByOperator resolves the service's incident on an operator's word (ResolveByOperator)
// and, when it is the service's latest incident, forgets the samples the watch remembered for
// the open-after rule and the recovery streak: only anomalies after the resolution can
// reopen it or open another.
func (c Correlator) ResolveByOperator(w *Watch, inc *Incident, by, reason string, at time.Time) error {
	if err := inc.ResolveByOperator(by, reason, at); err != nil {
		return err
	}
	if w.incidentID == inc.ID() {
		w.recent = w.recent[:0]
		w.healthySince, w.recoveredAt = time.Time{}, time.Time{}
	}
	return nil
}

// ReopenByOperator reopens the service's latest incident on an operator's word
// (ReopenByOperator) and restarts the service's recovery streak, so the incident resolves again
// only after a full recovery window of healthy samples. An older incident returns
// ErrNotLatest.
func (c Correlator) ReopenByOperator(w *Watch, inc *Incident, by string, at time.Time) error {
	if w.incidentID != inc.ID() {
		return fmt.Errorf("reopen %s (the service's latest is %s): %w", inc.ID(), w.incidentID, ErrNotLatest)
	}
	if err := inc.ReopenByOperator(by, at); err != nil {
		return err
	}
	w.healthySince, w.recoveredAt = time.Time{}, time.Time{}
	return nil
}
