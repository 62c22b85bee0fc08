package incident

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// ErrStaleSample is returned by Observe for a sample not newer than the last one seen for
// its service: a redelivery or a late arrival. Ignoring it keeps correlation idempotent.
var ErrStaleSample = errors.New("sample is not newer than the last one seen")

// CorrelationConfig sets how anomalies become incidents and how incidents end. A zero field
// takes the default written beside it.
type CorrelationConfig struct {
	// OpenAfter anomalies among the last Window judged samples open an incident (default 2).
	OpenAfter int
	// Window is the number of recent judged samples OpenAfter counts in (default 3).
	Window int
	// OpenSpan judges the open rule in time as well as in samples (default 8m, event time):
	// when the last OpenSpan holds more than Window samples, the same share of all of them
	// (OpenAfter of Window) must be anomalous, at most 64 samples back. At one sample a minute
	// 2 of 3 becomes 6 of the last 8, so a blip of a few minutes pages nobody, while at five
	// minutes it stays 2 of 3. Zero takes the default; a negative span counts samples only.
	OpenSpan time.Duration
	// ExtremeExcess opens an incident on a single anomaly whose excess over the threshold
	// reaches it (default 0.5, see Signal.Excess).
	ExtremeExcess float64
	// Recovery is how long a service must send only healthy samples before its incident
	// resolves (default 15m, event time). Zero takes the default; a negative window judges
	// recovery by RecoverySamples alone.
	Recovery time.Duration
	// RecoverySamples is how many healthy samples in a row that takes at least (default 5):
	// recovery is judged in time and in samples, so a service sampled every five minutes
	// does not resolve, and page again, on three calm samples of an oscillating failure.
	// Zero takes the default; a negative count judges recovery by Recovery alone (with both
	// negative, the first healthy sample resolves).
	RecoverySamples int
	// ReopenWindow is how soon after resolution new anomalies reopen the same incident
	// instead of opening another (default 30m, event time). Zero takes the default; a
	// negative window never reopens.
	ReopenWindow time.Duration
	// StaleAfter is how long without any sample (wall clock, judged by the resolution ticker)
	// before an open incident records that data stopped (default 5m).
	StaleAfter time.Duration
}

// SetDefaults fills every zero field with its default.
func (c *CorrelationConfig) SetDefaults() {
	if c.OpenAfter == 0 {
		c.OpenAfter = 2
	}
	if c.Window == 0 {
		c.Window = 3
	}
	if c.OpenSpan == 0 {
		c.OpenSpan = 8 * time.Minute
	}
	if c.ExtremeExcess == 0 {
		c.ExtremeExcess = 0.5
	}
	if c.Recovery == 0 {
		c.Recovery = 15 * time.Minute
	}
	if c.RecoverySamples == 0 {
		c.RecoverySamples = 5
	}
	if c.ReopenWindow == 0 {
		c.ReopenWindow = 30 * time.Minute
	}
	if c.StaleAfter == 0 {
		c.StaleAfter = 5 * time.Minute
	}
}

// Validate reports every setting that cannot work.
func (c CorrelationConfig) Validate() error {
	var errs []error
	if c.OpenAfter < 1 || c.Window < c.OpenAfter || c.Window > maxRecent {
		errs = append(errs, fmt.Errorf("open after %d of %d samples: need 1 <= open-after <= window <= %d", c.OpenAfter, c.Window, maxRecent))
	}
	if c.ExtremeExcess <= 0 || c.ExtremeExcess > 1 {
		errs = append(errs, fmt.Errorf("extreme excess %g must be in (0,1]", c.ExtremeExcess))
	}
	if c.StaleAfter <= 0 {
		errs = append(errs, errors.New("stale-after must be positive"))
	}
	return errors.Join(errs...)
}

// Observation is one scored sample as correlation sees it.
type Observation struct {
	// At is the sample's own timestamp.
	At time.Time
	// ReceivedAt is when the broker received the sample; only the stale-data check uses it.
	ReceivedAt time.Time
	Score      float64
	Threshold  float64
	// Judged is false while the service's model warms up: such samples are never anomalous.
	Judged    bool
	Anomalous bool
	// ModelVersion and Explanation are the evidence carried into the timeline.
	ModelVersion int
	Explanation  []Contribution
	// Silence is the id of a silence (maintenance window) of the service active at At, or
	// empty. An anomaly inside a silence opens no incident and is never escalated: it is
	// only recorded, on the open incident or, without one, on the service (Watch.Changes).
	Silence string
	// Relearned is true when, at this sample, the detector learned the service's steady new
	// behaviour as its normal: the open incident records it (KindBaselineLearned) and
	// resolves once the samples that follow are healthy.
	Relearned bool
}

// Watch is the correlation state of one service between samples. Its state is hidden: the
// Correlator and the operator's moves change it, repositories store it through State and
// UnmarshalWatchFromDatabase.
type Watch struct {
	service        string
	lastSampleAt   time.Time // the event-time watermark: the newest sample seen
	lastReceivedAt time.Time // the broker time of that sample
	healthySince   time.Time // the first healthy sample after the latest anomaly, or zero
	healthyCount   int       // the healthy samples since healthySince
	// recoveredAt is the sample at which the healthy streak reached the recovery window, or
	// zero; the open incident resolves at that time when next settled.
	recoveredAt time.Time
	recent      []Recent // the last judged samples, oldest first (see trimRecent)
	incidentID  string   // the service's latest incident, open or resolved, or empty

	// pending are service-level timeline entries not saved yet (see Changes).
	pending []Entry
}

// ServiceState is how a service stands, as an operator's overview shows it.
type ServiceState string

// The states of a service, the first that applies: no sample for the stale-data limit, inside
// a silence, with an open incident, its model still warming up, its latest judged sample
// anomalous, or healthy.
const (
	StateNoData     ServiceState = "no_data"
	StateSilenced   ServiceState = "silenced"
	StateInIncident ServiceState = "in_incident"
	StateWarmingUp  ServiceState = "warming_up"
	StateAnomalous  ServiceState = "anomalous"
	StateHealthy    ServiceState = "healthy"
)

// ServiceFacts is what a service's state is judged on.
type ServiceFacts struct {
	// LastReceivedAt is the broker time of its latest sample (zero for none); Now the time it
	// is judged at (a view's wall clock) and StaleAfter the stale-data limit.
	LastReceivedAt, Now time.Time
	StaleAfter          time.Duration
	Silenced            bool
	IncidentOpen        bool
	// HasModel is false while the service warms up; LatestAnomalous tells whether its latest
	// judged sample was anomalous.
	HasModel, LatestAnomalous bool
}

// StateOf classifies a service.
func StateOf(f ServiceFacts) ServiceState {
	switch {
	case f.LastReceivedAt.IsZero() || f.Now.Sub(f.LastReceivedAt) > f.StaleAfter:
		return StateNoData
	case f.Silenced:
		return StateSilenced
	case f.IncidentOpen:
		return StateInIncident
	case !f.HasModel:
		return StateWarmingUp
	case f.LatestAnomalous:
		return StateAnomalous
	}
	return StateHealthy
}

// NewWatch returns the correlation state of a service never seen.
func NewWatch(service string) Watch { return Watch{service: service} }

// WatchState is a watch as a repository stores it. Only repositories use it: they save
// State() and load through UnmarshalWatchFromDatabase; everything else changes a watch only
// through the Correlator and the operator's moves.
type WatchState struct {
	Service        string
	LastSampleAt   time.Time
	LastReceivedAt time.Time
	HealthySince   time.Time
	HealthyCount   int
	RecoveredAt    time.Time
	Recent         []Recent
	IncidentID     string
}

// UnmarshalWatchFromDatabase rebuilds a stored watch.
func UnmarshalWatchFromDatabase(s WatchState) Watch {
	return Watch{
		service: s.Service, lastSampleAt: s.LastSampleAt, lastReceivedAt: s.LastReceivedAt,
		healthySince: s.HealthySince, healthyCount: s.HealthyCount, recoveredAt: s.RecoveredAt,
		recent: slices.Clone(s.Recent), incidentID: s.IncidentID,
	}
}

// State returns the watch in its stored form.
func (w *Watch) State() WatchState {
	return WatchState{
		Service: w.service, LastSampleAt: w.lastSampleAt, LastReceivedAt: w.lastReceivedAt,
		HealthySince: w.healthySince, HealthyCount: w.healthyCount, RecoveredAt: w.recoveredAt,
		Recent: slices.Clone(w.recent), IncidentID: w.incidentID,
	}
}

// Service returns the service the watch is of.
func (w *Watch) Service() string { return w.service }

// LastSampleAt returns the event-time watermark: the newest sample seen, or zero.
func (w *Watch) LastSampleAt() time.Time { return w.lastSampleAt }

// LastReceivedAt returns the broker time of the newest sample, or zero.
func (w *Watch) LastReceivedAt() time.Time { return w.lastReceivedAt }

// HealthySince returns the first healthy sample after the latest anomaly, or zero.
func (w *Watch) HealthySince() time.Time { return w.healthySince }

// RecoveredAt returns the sample at which the healthy streak reached the recovery window, or
// zero.
func (w *Watch) RecoveredAt() time.Time { return w.recoveredAt }

// Recent returns the last judged samples, oldest first.
func (w *Watch) Recent() []Recent { return slices.Clone(w.recent) }

// IncidentID returns the service's latest incident, open or resolved, or empty.
func (w *Watch) IncidentID() string { return w.incidentID }

// Changes returns the service-level timeline entries recorded since the watch was loaded,
// oldest first: anomalies of a silenced service that had no open incident
// (KindAnomalySilenced). They belong to no incident, so their After is the zero Snapshot.
// Repositories append them when they save the watch.
func (w *Watch) Changes() []Entry { return w.pending }

// ClearChanges forgets the pending entries once they are saved.
func (w *Watch) ClearChanges() { w.pending = nil }

// Recent is one judged sample remembered for the open-after rule. Its JSON, the watch's
// stored form, leaves zero fields out (a zero reads back as zero), so that a sample that does
// not count, remembered by its time alone, takes about 30 bytes of a watch instead of 110.
type Recent struct {
	Signal
	Anomalous bool `json:"anomalous,omitempty"`
}

// Correlator turns one service's stream of scored samples into at most one incident at a time.
type Correlator struct {
	cfg CorrelationConfig
}

// NewCorrelator returns a correlator with cfg's defaults filled in, or the validation error.
func NewCorrelator(cfg CorrelationConfig) (Correlator, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return Correlator{}, fmt.Errorf("correlation config: %w", err)
	}
	return Correlator{cfg: cfg}, nil
}

// Config returns the settings in force.
func (c Correlator) Config() CorrelationConfig { return c.cfg }

// NewID names a new incident of service whose first anomaly is at firstSeen.
type NewID func(service string, firstSeen time.Time) string

// Observe applies one scored sample to the service's watch and its latest incident (nil if it
// has none). It returns the incident to save, which is cur, a new incident, or nil when there
// is nothing to save. Samples must come in event-time order: an older or equal one returns
// ErrStaleSample and changes nothing. An anomaly inside a silence (Observation.Silence) is
// recorded on the open incident (RecordSilencedAnomaly) or, with none open, as a service-level
// entry in the watch's Changes; it never opens or reopens an incident.
func (c Correlator) Observe(w *Watch, cur *Incident, o Observation, newID NewID) (*Incident, error) {
	if !w.lastSampleAt.IsZero() && !o.At.After(w.lastSampleAt) {
		return nil, ErrStaleSample
	}
	if err := c.Settle(w, cur); err != nil {
		return nil, err
	}
	w.lastSampleAt, w.lastReceivedAt = o.At, o.ReceivedAt
	if cur != nil && cur.DataStopped() {
		if err := cur.MarkDataResumed(o.At); err != nil {
			return nil, err
		}
	}
	if !o.Judged {
		return cur, nil
	}
	if o.Relearned && cur != nil && cur.Status() == StatusOpen {
		if err := cur.RecordBaselineLearned(o.At, o.ModelVersion); err != nil {
			return nil, err
		}
	}
	sig := Signal{At: o.At, Score: o.Score, Threshold: o.Threshold, ModelVersion: o.ModelVersion}
	if o.Anomalous {
		sig.Explanation = o.Explanation
	}
	// A silenced anomaly takes its place in the open-after window as a sample that does not
	// count, so anomalies inside a silence can never open an incident, then or after it. A
	// sample that does not count is remembered by its time alone: the open rule reads only
	// the anomalies' signals, and the watch is stored after every sample.
	silenced := o.Anomalous && o.Silence != ""
	if o.Anomalous && !silenced {
		w.recent = append(w.recent, Recent{Signal: sig, Anomalous: true})
	} else {
		w.recent = append(w.recent, Recent{Signal: Signal{At: o.At}})
	}
	c.trimRecent(w)

	if !o.Anomalous {
		if w.healthySince.IsZero() {
			w.healthySince, w.healthyCount = o.At, 0
		}
		w.healthyCount++
		if w.recoveredAt.IsZero() && cur != nil && cur.Status() == StatusOpen &&
			o.At.Sub(w.healthySince) >= c.cfg.Recovery && w.healthyCount >= c.cfg.RecoverySamples {
			w.recoveredAt = o.At
		}
		return cur, nil
	}

	// Any anomaly, silenced or not, breaks the recovery streak: a service in trouble during
	// maintenance has not recovered.
	w.healthySince, w.recoveredAt, w.healthyCount = time.Time{}, time.Time{}, 0
	if silenced {
		if cur != nil && cur.Status() == StatusOpen {
			return cur, cur.RecordSilencedAnomaly(sig, o.Silence)
		}
		d := sig.details()
		d.Silenced, d.Silence = true, o.Silence
		w.pending = append(w.pending, Entry{Kind: KindAnomalySilenced, At: o.At, Details: d})
		return cur, nil
	}
	if cur != nil && cur.Status() == StatusOpen {
		return cur, cur.RecordAnomaly(sig)
	}
	trigger := c.trigger(w, sig)
	if trigger == nil {
		return cur, nil
	}
	w.recent = w.recent[:0]
	if cur != nil && trigger[0].At.Sub(cur.ResolvedAt()) <= c.cfg.ReopenWindow && !trigger[0].At.Before(cur.ResolvedAt()) {
		return cur, cur.Reopen(trigger, c.cfg.ReopenWindow)
	}
	inc, err := Open(newID(w.service, trigger[0].At), w.service, trigger)
	if err != nil {
		return nil, err
	}
	w.incidentID = inc.ID()
	return inc, nil
}

// maxRecent bounds the samples the open rule looks at, whatever OpenSpan holds.
const maxRecent = 64

// trimRecent keeps the samples the open rule looks at: the last Window, or all of those
// younger than OpenSpan when they are more (at most maxRecent).
func (c Correlator) trimRecent(w *Watch) {
	latest := w.recent[len(w.recent)-1].At
	for len(w.recent) > c.cfg.Window {
		young := c.cfg.OpenSpan > 0 && latest.Sub(w.recent[0].At) < c.cfg.OpenSpan
		if young && len(w.recent) <= maxRecent {
			return
		}
		w.recent = w.recent[1:]
	}
}

// trigger returns the anomalies that open an incident, oldest first, or nil when the
// open-after rule does not hold yet: OpenAfter anomalies, and the share OpenAfter/Window of
// the samples looked at (the same thing until OpenSpan holds more than Window samples).
func (c Correlator) trigger(w *Watch, latest Signal) []Signal {
	var sigs []Signal
	for _, r := range w.recent {
		if r.Anomalous {
			sigs = append(sigs, r.Signal)
		}
	}
	enough := len(sigs) >= c.cfg.OpenAfter && len(sigs)*c.cfg.Window >= c.cfg.OpenAfter*len(w.recent)
	if enough || latest.Excess() >= c.cfg.ExtremeExcess {
		return sigs
	}
	return nil
}

// Settle resolves the open incident if the service's recovery completed (RecoveredAt is set).
// The resolution is dated RecoveredAt, so it does not matter whether the resolution ticker or
// the next sample settles it first. It is a no-op otherwise.
func (c Correlator) Settle(w *Watch, cur *Incident) error {
	if cur == nil || cur.Status() != StatusOpen || w.recoveredAt.IsZero() || w.recoveredAt.Before(cur.LastSeen()) {
		return nil
	}
	reason := fmt.Sprintf("healthy since %s, for the recovery window of %s and %d samples", w.healthySince.Format(time.RFC3339), max(0, c.cfg.Recovery), max(0, c.cfg.RecoverySamples))
	if err := cur.Resolve(w.recoveredAt, reason); err != nil {
		return fmt.Errorf("settle %s: %w", cur.ID(), err)
	}
	w.recent = w.recent[:0]
	return nil
}

// CheckStale records on the open incident that its service stopped sending samples, when
// heard is StaleAfter past the last sample's arrival. heard is the wall-clock time (read by
// the ticker, never here) up to which every sample the broker received has been correlated:
// samples still on their way are not silence. It reports whether it recorded anything.
func (c Correlator) CheckStale(w *Watch, cur *Incident, heard time.Time) bool {
	now := heard
	if cur == nil || cur.Status() != StatusOpen || cur.DataStopped() || w.lastReceivedAt.IsZero() {
		return false
	}
	if now.Sub(w.lastReceivedAt) < c.cfg.StaleAfter {
		return false
	}
	return cur.MarkDataStopped(w.lastSampleAt, now) == nil
}
