// Package incident holds the incident lifecycle: how anomalies of one service become one
// incident, how it escalates, resolves, reopens, and what every change writes to its timeline.
//
// An Incident hides its state and changes only through methods that check the move is legal
// and return a named error when it is not. Each successful change appends an Entry to the
// incident's pending timeline, which the caller saves together with the new state. Times are
// the metric samples' own timestamps (event time), except for operators' actions
// (infra/api/actions.go), which are dated by the operator's request; either way the time is
// an input and the package never reads the clock. It does not persist, publish or log
// anything: infra and handlers do.
package incident

import (
	"errors"
	"fmt"
	"time"
)

// Errors returned for illegal moves. Callers use errors.Is.
var (
	// ErrResolved is returned when a change needs an open incident and the incident is resolved.
	ErrResolved = errors.New("incident is resolved")
	// ErrNotResolved is returned by Reopen when the incident is still open.
	ErrNotResolved = errors.New("incident is not resolved")
	// ErrReopenWindowPassed is returned by Reopen when the anomaly comes after the reopen window.
	ErrReopenWindowPassed = errors.New("reopen window has passed")
	// ErrOutOfOrder is returned when a change is dated before the incident's last change.
	ErrOutOfOrder = errors.New("change is older than the incident's last change")
	// ErrNotHigher is returned by Escalate when the target severity is not above the current one.
	ErrNotHigher = errors.New("severity is not higher than the current one")
	// ErrDataAlreadyStopped is returned by MarkDataStopped when the stop was already recorded.
	ErrDataAlreadyStopped = errors.New("data stop already recorded")
	// ErrDataNotStopped is returned by MarkDataResumed when no stop was recorded.
	ErrDataNotStopped = errors.New("no data stop recorded")
	// ErrInvalidIncident is returned when constructing an incident from inconsistent values.
	ErrInvalidIncident = errors.New("invalid incident")
	// ErrNotFound is returned by repositories for an incident id they do not hold.
	ErrNotFound = errors.New("incident not found")
)

// Status is an incident's lifecycle state. The zero value is invalid.
type Status uint8

// The statuses an incident can be in.
const (
	StatusOpen Status = iota + 1
	StatusResolved
)

// String returns the name stored in the database and used in events.
func (s Status) String() string {
	switch s {
	case StatusOpen:
		return "open"
	case StatusResolved:
		return "resolved"
	}
	return fmt.Sprintf("Status(%d)", uint8(s))
}

// ParseStatus is the inverse of Status.String.
func ParseStatus(s string) (Status, error) {
	switch s {
	case "open":
		return StatusOpen, nil
	case "resolved":
		return StatusResolved, nil
	}
	return 0, fmt.Errorf("%w: unknown status %q", ErrInvalidIncident, s)
}

// Kind names a timeline event.
type Kind string

// The timeline events, one per kind of state change.
const (
	KindOpened          Kind = "opened"
	KindAnomalyRecorded Kind = "anomaly_recorded"
	KindEscalated       Kind = "escalated"
	KindReopened        Kind = "reopened"
	KindDataStopped     Kind = "data_stopped"
	KindDataResumed     Kind = "data_resumed"
	KindResolved        Kind = "resolved"
	// KindAcknowledged records that an operator took the incident on (infra/api/actions.go).
	KindAcknowledged Kind = "acknowledged"
	// KindAnomalySilenced records an anomaly of a silenced service that has no open
	// incident: a service-level entry, belonging to no incident (Watch.Changes).
	KindAnomalySilenced Kind = "anomaly_silenced"
	// KindBaselineLearned records that the detector learned the service's steady new
	// behaviour as its normal while the incident was open; the incident resolves once the
	// samples after it are healthy.
	KindBaselineLearned Kind = "baseline_learned"
)

// Signal is one anomalous sample as the scorer judged it.
type Signal struct {
	At        time.Time `json:"at"`
	Score     float64   `json:"score,omitempty"`
	Threshold float64   `json:"threshold,omitempty"`
	// ModelVersion is the version of the service's model that judged the sample.
	ModelVersion int `json:"model_version,omitempty"`
	// Explanation names the metrics that drove the score, largest share first.
	Explanation []Contribution `json:"explanation,omitempty"`
}

// Contribution is one metric's share in an anomaly's score; the shares of all metrics sum to 1.
type Contribution struct {
	Metric string  `json:"metric"`
	Share  float64 `json:"share"`
}

// details returns the timeline details that carry the signal's evidence.
func (s Signal) details() Details {
	return Details{Score: s.Score, Threshold: s.Threshold, ModelVersion: s.ModelVersion, Explanation: s.Explanation}
}

// Excess is how far the score is above the threshold, as a fraction of the headroom left
// above it: 0 at the threshold, 1 at the maximum score of 1.
func (s Signal) Excess() float64 {
	if s.Threshold >= 1 || s.Score <= s.Threshold {
		return 0
	}
	return (s.Score - s.Threshold) / (1 - s.Threshold)
}

// Details is the payload of a timeline entry: what led to the change.
type Details struct {
	Score        float64        `json:"score,omitempty"`
	Threshold    float64        `json:"threshold,omitempty"`
	ModelVersion int            `json:"model_version,omitempty"`
	Explanation  []Contribution `json:"explanation,omitempty"`
	Occurrences  int            `json:"occurrence_count,omitempty"`
	From         string         `json:"from,omitempty"`
	To           string         `json:"to,omitempty"`
	Rule         string         `json:"rule,omitempty"`
	Reason       string         `json:"reason,omitempty"`
	LastSample   *time.Time     `json:"last_sample_at,omitempty"`
	DetectedAt   *time.Time     `json:"detected_at,omitempty"`
	// By names the operator who made a manual change.
	By string `json:"by,omitempty"`
	// Manual marks a resolution or reopening an operator made, not the metrics.
	Manual bool `json:"manual,omitempty"`
	// Silenced marks an anomaly inside a silence (maintenance window): recorded, never
	// escalated or notified. Silence is the id of that silence.
	Silenced bool   `json:"silenced,omitempty"`
	Silence  string `json:"silence_id,omitempty"`

	// Deliveries (KindNotified, KindNotificationFailed): the receiver, the change it was told
	// of, the attempts, the failure and when the last attempt ended (wall clock).
	Receiver    string     `json:"receiver,omitempty"`
	Event       Kind       `json:"event,omitempty"`
	EventID     string     `json:"event_id,omitempty"`
	Attempts    int        `json:"attempts,omitempty"`
	Error       string     `json:"error,omitempty"`
	DeliveredAt *time.Time `json:"delivered_at,omitempty"`

	// Remediations (KindRemediationRequested, KindRemediationResult): the hook, whether it
	// only said what it would do, when it ran (wall clock) and its answer; Reason says why it
	// was held back, Error why it failed.
	Hook   string     `json:"hook,omitempty"`
	DryRun bool       `json:"dry_run,omitempty"`
	RanAt  *time.Time `json:"ran_at,omitempty"`
	Status string     `json:"status,omitempty"`
}

// Entry is one row of an incident's timeline.
type Entry struct {
	Kind    Kind
	At      time.Time
	Details Details
	// After is the incident's state right after this change.
	After Snapshot
}

// Facts is what the severity policy looks at: a snapshot of an incident's current episode.
type Facts struct {
	// Active is how long the current episode has lasted: last anomaly minus its first.
	Active time.Duration
	// Occurrences counts anomalies over the incident's whole life, reopenings included.
	Occurrences int
	// Reopens counts how often the incident came back after resolving.
	Reopens int
	// PeakExcess is the largest Signal.Excess seen in the current episode.
	PeakExcess float64
}

// Incident is one problem of one service, from its first anomaly to its resolution.
type Incident struct {
	id           string
	service      string
	severity     Severity
	status       Status
	occurrences  int
	firstSeen    time.Time
	lastSeen     time.Time
	resolvedAt   time.Time
	episodeStart time.Time
	peakExcess   float64
	lastScore    float64
	threshold    float64
	reopens      int
	dataStopped  bool
	ackedBy      string
	ackedAt      time.Time

	pending []Entry
}

// Open starts an incident from the anomalies that triggered it, oldest first. It opens at
// low severity; the escalate stage raises it.
func Open(id, service string, trigger []Signal) (*Incident, error) {
	if id == "" || service == "" || len(trigger) == 0 {
		return nil, fmt.Errorf("%w: open needs an id, a service and at least one anomaly", ErrInvalidIncident)
	}
	first, last := trigger[0], trigger[len(trigger)-1]
	inc := &Incident{
		id:           id,
		service:      service,
		severity:     SeverityLow,
		status:       StatusOpen,
		occurrences:  len(trigger),
		firstSeen:    first.At,
		lastSeen:     last.At,
		episodeStart: first.At,
		lastScore:    last.Score,
		threshold:    last.Threshold,
	}
	peak := peakOf(trigger)
	inc.peakExcess = peak.Excess()
	d := peak.details()
	d.Occurrences, d.To = len(trigger), SeverityLow.String()
	inc.record(KindOpened, last.At, d)
	return inc, nil
}

func peakOf(sigs []Signal) Signal {
	peak := sigs[0]
	for _, s := range sigs[1:] {
		if s.Excess() > peak.Excess() {
			peak = s
		}
	}
	return peak
}

// RecordAnomaly counts one more anomaly into an open incident.
func (i *Incident) RecordAnomaly(s Signal) error {
	if err := i.count(s); err != nil {
		return err
	}
	i.peakExcess = max(i.peakExcess, s.Excess())
	d := s.details()
	d.Occurrences = i.occurrences
	i.record(KindAnomalyRecorded, s.At, d)
	return nil
}

// count adds one anomaly to an open incident: occurrences, last_seen, latest score.
func (i *Incident) count(s Signal) error {
	if i.status != StatusOpen {
		return ErrResolved
	}
	if s.At.Before(i.lastSeen) {
		return fmt.Errorf("anomaly at %s: %w", s.At.Format(time.RFC3339), ErrOutOfOrder)
	}
	i.occurrences++
	i.lastSeen = s.At
	i.startEpisodeBy(s.At)
	i.lastScore = s.Score
	i.threshold = s.Threshold
	return nil
}

// RecordSilencedAnomaly records an anomaly that came while the service was silenced (a
// maintenance window, silence id silence). Like RecordAnomaly it counts the anomaly and moves
// last_seen (the service was anomalous, and the incident must not resolve meanwhile), but it
// does not raise the episode's peak excess: how far a service strays during maintenance is no
// evidence of how bad its problem is. Its entry is marked silenced, so the escalate stage
// does not judge it.
func (i *Incident) RecordSilencedAnomaly(s Signal, silence string) error {
	if err := i.count(s); err != nil {
		return err
	}
	d := s.details()
	d.Occurrences, d.Silenced, d.Silence = i.occurrences, true, silence
	i.record(KindAnomalyRecorded, s.At, d)
	return nil
}

// startEpisodeBy makes the current episode start no later than anomaly time at. Only an
// operator's reopening, dated by the wall clock, can start an episode after its first anomaly
// (when the samples' clock runs behind, as in a replay); the episode then starts there.
func (i *Incident) startEpisodeBy(at time.Time) {
	if at.Before(i.episodeStart) {
		i.episodeStart = at
	}
}

// EscalateFor raises the severity of an incident, naming the policy rule that fired and the
// change that made it fire: that change's anomaly (its time, score and threshold) and the
// occurrence count at that time. The incident must have been open then: it may have resolved
// since, because the escalate stage judges each change after correlation committed it, and
// a judgement must not depend on how far behind that stage runs. An escalation dated after
// the resolution returns ErrResolved.
func (i *Incident) EscalateFor(to Severity, rule string, cause Signal, occurrences int) error {
	if i.status != StatusOpen && cause.At.After(i.resolvedAt) {
		return ErrResolved
	}
	if !to.Valid() || to <= i.severity {
		return fmt.Errorf("escalate %s to %s: %w", i.severity, to, ErrNotHigher)
	}
	from := i.severity
	i.severity = to
	d := cause.details()
	d.From, d.To, d.Rule, d.Occurrences = from.String(), to.String(), rule, occurrences
	i.record(KindEscalated, cause.At, d)
	return nil
}

// Resolve closes an open incident.
func (i *Incident) Resolve(at time.Time, reason string) error {
	if i.status != StatusOpen {
		return ErrResolved
	}
	if at.Before(i.lastSeen) {
		return fmt.Errorf("resolve at %s: %w", at.Format(time.RFC3339), ErrOutOfOrder)
	}
	i.status = StatusResolved
	i.resolvedAt = at
	i.dataStopped = false
	i.record(KindResolved, at, Details{Reason: reason, Occurrences: i.occurrences})
	return nil
}

// Reopen brings a resolved incident back when new anomalies come within window of its
// resolution. Severity is kept: it is the same problem, and it is at least as bad as before.
func (i *Incident) Reopen(trigger []Signal, window time.Duration) error {
	if i.status != StatusResolved {
		return ErrNotResolved
	}
	if len(trigger) == 0 {
		return fmt.Errorf("%w: reopen needs at least one anomaly", ErrInvalidIncident)
	}
	first, last := trigger[0], trigger[len(trigger)-1]
	if first.At.Before(i.resolvedAt) {
		return fmt.Errorf("reopen at %s: %w", first.At.Format(time.RFC3339), ErrOutOfOrder)
	}
	if first.At.Sub(i.resolvedAt) > window {
		return fmt.Errorf("anomaly %s after resolution: %w", first.At.Sub(i.resolvedAt), ErrReopenWindowPassed)
	}
	resolvedAt := i.resolvedAt
	i.status = StatusOpen
	i.resolvedAt = time.Time{}
	i.ackedBy, i.ackedAt = "", time.Time{} // a new episode needs a new acknowledgement
	i.reopens++
	i.occurrences += len(trigger)
	i.lastSeen = last.At
	i.episodeStart = first.At
	i.lastScore = last.Score
	i.threshold = last.Threshold
	peak := peakOf(trigger)
	i.peakExcess = peak.Excess()
	d := peak.details()
	d.Occurrences = i.occurrences
	d.Reason = fmt.Sprintf("anomalies again %s after resolution (reopen window %s)", first.At.Sub(resolvedAt), window)
	i.record(KindReopened, last.At, d)
	return nil
}

// RecordBaselineLearned records, at sample time at, that the service's model (version) now
// takes the service's steady new behaviour as normal. The incident stays open: it resolves
// like any other, once the service has been healthy for the recovery window.
func (i *Incident) RecordBaselineLearned(at time.Time, version int) error {
	if i.status != StatusOpen {
		return ErrResolved
	}
	if at.Before(i.lastSeen) {
		return fmt.Errorf("baseline learned at %s: %w", at.Format(time.RFC3339), ErrOutOfOrder)
	}
	i.record(KindBaselineLearned, at, Details{
		ModelVersion: version,
		Reason:       "the metrics held steady at new values; the model now takes them as normal",
	})
	return nil
}

// MarkDataStopped records that the service stopped sending samples while the incident was
// open. The incident stays open: silence is not recovery.
func (i *Incident) MarkDataStopped(lastSample, detectedAt time.Time) error {
	if i.status != StatusOpen {
		return ErrResolved
	}
	if i.dataStopped {
		return ErrDataAlreadyStopped
	}
	i.dataStopped = true
	i.record(KindDataStopped, lastSample, Details{
		LastSample: &lastSample, DetectedAt: &detectedAt,
		Reason: "no samples received; the incident stays open until the service reports healthy metrics",
	})
	return nil
}

// MarkDataResumed records that samples arrive again after a recorded stop.
func (i *Incident) MarkDataResumed(at time.Time) error {
	if !i.dataStopped {
		return ErrDataNotStopped
	}
	i.dataStopped = false
	i.record(KindDataResumed, at, Details{})
	return nil
}

// Facts returns the snapshot the severity policy judges.
func (i *Incident) Facts() Facts {
	return Facts{
		Active:      i.lastSeen.Sub(i.episodeStart),
		Occurrences: i.occurrences,
		Reopens:     i.reopens,
		PeakExcess:  i.peakExcess,
	}
}

func (i *Incident) record(k Kind, at time.Time, d Details) {
	i.pending = append(i.pending, Entry{Kind: k, At: at, Details: d, After: i.Snapshot()})
}

// Changes returns the timeline entries appended since the incident was created or loaded,
// oldest first.
func (i *Incident) Changes() []Entry { return i.pending }

// ClearChanges forgets the pending entries once they are saved.
func (i *Incident) ClearChanges() { i.pending = nil }

// ID returns the incident's identifier.
func (i *Incident) ID() string { return i.id }

// Service returns the service the incident belongs to.
func (i *Incident) Service() string { return i.service }

// Severity returns the current severity.
func (i *Incident) Severity() Severity { return i.severity }

// Status returns the lifecycle state.
func (i *Incident) Status() Status { return i.status }

// Occurrences returns how many anomalies the incident has counted.
func (i *Incident) Occurrences() int { return i.occurrences }

// FirstSeen returns the time of the first anomaly.
func (i *Incident) FirstSeen() time.Time { return i.firstSeen }

// LastSeen returns the time of the latest anomaly.
func (i *Incident) LastSeen() time.Time { return i.lastSeen }

// ResolvedAt returns when the incident resolved, or the zero time while it is open.
func (i *Incident) ResolvedAt() time.Time { return i.resolvedAt }

// EpisodeStart returns the first anomaly of the current episode (since opening or reopening).
func (i *Incident) EpisodeStart() time.Time { return i.episodeStart }

// PeakExcess returns the largest excess over the threshold in the current episode.
func (i *Incident) PeakExcess() float64 { return i.peakExcess }

// LastScore returns the score of the latest anomaly.
func (i *Incident) LastScore() float64 { return i.lastScore }

// Threshold returns the threshold the latest anomaly was judged against.
func (i *Incident) Threshold() float64 { return i.threshold }

// Reopens returns how often the incident was reopened.
func (i *Incident) Reopens() int { return i.reopens }

// DataStopped reports whether a data stop is recorded and not yet followed by new samples.
func (i *Incident) DataStopped() bool { return i.dataStopped }

// Acknowledged reports whether an operator acknowledged the incident's current episode.
func (i *Incident) Acknowledged() bool { return i.ackedBy != "" }

// AckedBy returns the operator who acknowledged the current episode, or "".
func (i *Incident) AckedBy() string { return i.ackedBy }

// AckedAt returns when the current episode was acknowledged, or the zero time.
func (i *Incident) AckedAt() time.Time { return i.ackedAt }

// Snapshot is an incident's full state, for storage. Only infra/postgres builds incidents
// from it, through UnmarshalFromDatabase.
type Snapshot struct {
	ID           string
	Service      string
	Severity     Severity
	Status       Status
	Occurrences  int
	FirstSeen    time.Time
	LastSeen     time.Time
	ResolvedAt   time.Time
	EpisodeStart time.Time
	PeakExcess   float64
	LastScore    float64
	Threshold    float64
	Reopens      int
	DataStopped  bool
	// AckedBy and AckedAt record the acknowledgement of the current episode; both are empty
	// when it is not acknowledged.
	AckedBy string
	AckedAt time.Time
}

// Snapshot returns the incident's state for storage.
func (i *Incident) Snapshot() Snapshot {
	return Snapshot{
		ID: i.id, Service: i.service, Severity: i.severity, Status: i.status,
		Occurrences: i.occurrences, FirstSeen: i.firstSeen, LastSeen: i.lastSeen,
		ResolvedAt: i.resolvedAt, EpisodeStart: i.episodeStart, PeakExcess: i.peakExcess,
		LastScore: i.lastScore, Threshold: i.threshold, Reopens: i.reopens, DataStopped: i.dataStopped,
		AckedBy: i.ackedBy, AckedAt: i.ackedAt,
	}
}

// UnmarshalFromDatabase rebuilds an incident from stored state. It is for repositories only:
// everything else changes incidents through their methods.
func UnmarshalFromDatabase(s Snapshot) (*Incident, error) {
	var errs []error
	if s.ID == "" || s.Service == "" {
		errs = append(errs, errors.New("id and service are required"))
	}
	if !s.Severity.Valid() {
		errs = append(errs, fmt.Errorf("severity %d", s.Severity))
	}
	switch s.Status {
	case StatusOpen:
		if !s.ResolvedAt.IsZero() {
			errs = append(errs, errors.New("open incident with resolved_at"))
		}
	case StatusResolved:
		if s.ResolvedAt.IsZero() {
			errs = append(errs, errors.New("resolved incident without resolved_at"))
		}
	default:
		errs = append(errs, fmt.Errorf("status %d", s.Status))
	}
	if s.Occurrences < 1 || s.LastSeen.Before(s.FirstSeen) {
		errs = append(errs, errors.New("occurrences or first/last seen inconsistent"))
	}
	if (s.AckedBy == "") != s.AckedAt.IsZero() {
		errs = append(errs, errors.New("acknowledgement needs both who and when"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidIncident, s.ID, errors.Join(errs...))
	}
	return &Incident{
		id: s.ID, service: s.Service, severity: s.Severity, status: s.Status,
		occurrences: s.Occurrences, firstSeen: s.FirstSeen, lastSeen: s.LastSeen,
		resolvedAt: s.ResolvedAt, episodeStart: s.EpisodeStart, peakExcess: s.PeakExcess,
		lastScore: s.LastScore, threshold: s.Threshold, reopens: s.Reopens, dataStopped: s.DataStopped,
		ackedBy: s.AckedBy, ackedAt: s.AckedAt,
	}, nil
}
