// Package detect judges one service's samples with its own Isolation Forest.
//
// A Detector learns what normal looks like from the service's first samples (the warm-up):
// it trains a forest on them and learns each feature's own distribution. From then on it
// scores every sample without allocating. It turns metric values into features (a count is
// judged against its slowly moving level and its last few samples, so a daily traffic cycle
// is not an anomaly while a collapse is; any other metric that is not an error rate or a
// latency also gets its volatility over the last few samples, see Shape).
//
// Each sample's surprise is the negative log of the chance that a normal sample of the
// service looks at least as odd: odd as a whole to the forest (its score against the scores
// of normal samples the forest did not train on) or odd on one feature (that feature's
// deviation from its median against the training distribution), whichever is stronger, with
// a Bonferroni correction for looking at many. The evidence is the mean surprise of the last
// Config.Context samples against the same mean over the service's recent normal samples, as
// in Numenta's anomaly likelihood, so a run of mildly odd samples counts as much as one far
// out, and thresholds mean the same for every service. A sample is anomalous when the
// evidence reaches the alarm level and the sample is itself odd; the alarm level follows from
// a noise budget, the false alarms a day a service may raise (Config.FalseAlarmsPerDay), and
// the service's own sample spacing.
//
// The detector retrains on its recent normal samples every day, and when a service stays
// anomalous but steady for Config.RelearnAfter (a deploy, a new baseline), it learns that as
// normal beside its old normal (Result.Relearned); a worse error rate or latency, or lost
// traffic, is never learned. It explains each judgement as every metric's share in it
// (Explain). It keeps no history beyond its training window, its calibration and a few
// samples, and does not decide what an incident is: the incident package does.
package detect

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/incident-engine/engine/domain/forest"
	"github.com/incident-engine/engine/domain/sample"
)

// ErrOutOfOrder is returned for a sample older than the last one the detector saw.
var ErrOutOfOrder = errors.New("sample is older than the last one seen")

// halfScore is the evidence, in nats, that scores 0.5: odds of one in 100,000 against normal
// behaviour.
var halfScore = 5 * math.Ln10

// squash maps evidence in nats onto a score in [0, 1): 0.5 at odds of one in 100,000 against
// normal behaviour, 0.75 at one in 10^10, on towards 1, so that more extreme always scores
// higher.
func squash(z float64) float64 { return 1 - math.Exp2(-z/halfScore) }

// DefaultTrees is the number of trees of a service's forest: 64 rather than the paper's and
// scikit-learn's 100: a model 36% smaller and scored as much faster, detection on every
// benchmark set within about the spread of a change of seed (docs/results.md).
const DefaultTrees = 64

// Config sets how a service's model is trained and judged. A zero field takes the default
// beside it.
type Config struct {
	// WarmUp is the number of samples collected before the model is trained (default 256,
	// one forest subsample).
	WarmUp int
	// Forest sets the trees (default DefaultTrees, 64, of the paper's and scikit-learn's 256
	// samples). Its Seed is mixed with the service name, so each service has its own
	// reproducible forest.
	Forest forest.Config
	// FalseAlarmsPerDay is the noise budget: how many alarms a day a service behaving
	// normally may raise, which sets the alarm level from the service's sample spacing
	// (default 0.7, chosen on smd-dev; what services measured raise is in docs/results.md).
	FalseAlarmsPerDay float64
	// Context is the number of latest samples whose mean surprise is the evidence (default
	// 10, as in Numenta's anomaly likelihood): a run of mildly odd samples weighs as much as
	// one far out, and one odd sample among normal ones weighs little.
	Context int
	// Slack is how odd a sample must itself be, in nats of surprise against the service's
	// normal samples, to be anomalous when the evidence is at the alarm level (default ln 100:
	// rarer than one normal sample in a hundred; chosen on smd-dev): normal-looking samples
	// right after an anomaly are not anomalies themselves.
	Slack float64
	// LevelSpan is the number of samples the recent level of a count averages over
	// (default 10).
	LevelSpan int
	// LevelDrift is the fastest the level of a count may fall, in natural-log units per hour
	// of sample time (default 0.5, about 40% per hour): fast enough to follow a daily cycle
	// down, too slow to absorb a collapse within the hours it matters.
	LevelDrift float64
	// LevelRise is the fastest the level of a count may rise, in natural-log units per hour
	// (default 0.1). Only falls below the level are a signal, so a level that lags behind
	// rising traffic costs nothing, while one that chased a burst of traffic would make its
	// end look like a collapse.
	LevelRise float64
	// RetrainEvery is how much sample time passes between retrainings (default 24h).
	RetrainEvery time.Duration
	// RetrainWindow is the number of recent samples a retraining draws from (default 1440,
	// a day at one sample a minute). Anomalous samples, and those within Exclusion after an
	// anomaly (while an incident may still be open), are left out, so an outage is never
	// learned as normal.
	RetrainWindow int
	// RetrainSpan is the time the retraining window covers once it is full (default 7 days):
	// it then keeps one sample every RetrainSpan/RetrainWindow, so that a retraining sees a
	// week (quiet days and busy ones) rather than only the last day.
	RetrainSpan time.Duration
	// Exclusion is how long after an anomaly samples stay out of the retraining window
	// (default 15m, the recovery window of incidents).
	Exclusion time.Duration
	// RelearnAfter is how long a service must stay anomalous, and steady, before its new
	// behaviour is learned as its normal (default 3h, chosen on smd-dev; negative: never).
	// Steady means that over that span no metric drifted (its median over the first half and
	// over the second differ by at most StableSpread times its spread) and no error rate or
	// latency is worse than its normal, nor any count below it: a level shift is learned; a
	// ramp, or an outage, is not.
	RelearnAfter time.Duration
	// StableSpread bounds how far a metric's median may move between the halves of the
	// relearning span, in units of its spread there, for its behaviour to count as steady
	// (default 3).
	StableSpread float64
	// Shape sets the features derived from each metric's recent samples (see Shape).
	Shape Shape
	// Explanation is how Explain attributes an anomaly to metrics (default ExplainDeviation).
	Explanation Explanation
	// Kinds declares what metrics mean, keyed by metric name for every service or by
	// "service/metric" for one (which wins). A metric not declared takes its kind from its
	// name (see Kind).
	Kinds map[string]Kind
}

// Kind is what a metric means, which decides how it is judged.
type Kind uint8

// The kinds of metric. The zero Kind, KindByName, takes the kind from the metric's name: a
// count when it is request_count or ends in _count or _total, lower-is-better when it is
// error_rate or contains "latency" or "error", plain otherwise.
const (
	KindByName Kind = iota
	// KindPlain: any change either way may be odd; its recent volatility is judged too.
	KindPlain
	// KindCount: events per interval, judged against its slowly moving level; only less
	// than usual is odd.
	KindCount
	// KindLowerIsBetter: only a rise is odd (an error rate, a latency).
	KindLowerIsBetter
	// KindHigherIsBetter: only a fall is odd (an error budget left, a cache hit ratio).
	KindHigherIsBetter
)

// ParseKind reads a kind by its name: plain, count, lower_is_better, higher_is_better.
func ParseKind(s string) (Kind, error) {
	for k, name := range kindNames {
		if s == name && k != KindByName {
			return k, nil
		}
	}
	return KindByName, fmt.Errorf("unknown metric kind %q: want plain, count, lower_is_better or higher_is_better", s)
}

var kindNames = map[Kind]string{KindByName: "by_name", KindPlain: "plain", KindCount: "count", KindLowerIsBetter: "lower_is_better", KindHigherIsBetter: "higher_is_better"}

// String returns the kind's name.
func (k Kind) String() string { return kindNames[k] }

// kindOf returns the kind metric name has for service under kinds.
func kindOf(kinds map[string]Kind, service, name string) Kind {
	if k, ok := kinds[service+"/"+name]; ok && k != KindByName {
		return k
	}
	if k, ok := kinds[name]; ok && k != KindByName {
		return k
	}
	switch {
	case isCount(name):
		return KindCount
	case lowerIsBetter(name):
		return KindLowerIsBetter
	}
	return KindPlain
}

// SetDefaults fills every zero field with its default.
func (c *Config) SetDefaults() {
	if c.Forest.Trees == 0 {
		c.Forest.Trees = DefaultTrees
	}
	if c.WarmUp == 0 {
		c.WarmUp = 256
	}
	if c.FalseAlarmsPerDay == 0 {
		c.FalseAlarmsPerDay = 0.7
	}
	if c.Context == 0 {
		c.Context = 10
	}
	if c.Slack == 0 {
		c.Slack = math.Log(100)
	}
	if c.LevelSpan == 0 {
		c.LevelSpan = 10
	}
	if c.LevelDrift == 0 {
		c.LevelDrift = 0.5
	}
	if c.LevelRise == 0 {
		c.LevelRise = 0.1
	}
	if c.RetrainEvery == 0 {
		c.RetrainEvery = 24 * time.Hour
	}
	if c.RetrainWindow == 0 {
		c.RetrainWindow = 1440
	}
	if c.RetrainSpan == 0 {
		c.RetrainSpan = 7 * 24 * time.Hour
	}
	if c.Exclusion == 0 {
		c.Exclusion = 15 * time.Minute
	}
	if c.RelearnAfter == 0 {
		c.RelearnAfter = 3 * time.Hour
	}
	if c.StableSpread == 0 {
		c.StableSpread = 3
	}
}

// Validate reports every setting that cannot work.
func (c Config) Validate() error {
	var errs []error
	if c.WarmUp < 16 {
		errs = append(errs, fmt.Errorf("warm-up %d: need at least 16 samples", c.WarmUp))
	}
	if !(c.FalseAlarmsPerDay > 0) {
		errs = append(errs, fmt.Errorf("false alarms per day %g must be positive", c.FalseAlarmsPerDay))
	}
	if !(c.Slack > 0) {
		errs = append(errs, fmt.Errorf("slack %g must be positive", c.Slack))
	}
	if c.Context < 1 || c.Context > 1024 {
		errs = append(errs, fmt.Errorf("context %d must be 1 to 1024 samples", c.Context))
	}
	if c.LevelDrift < 0 || c.LevelRise < 0 {
		errs = append(errs, fmt.Errorf("level drift %g and rise %g must not be negative", c.LevelDrift, c.LevelRise))
	}
	if c.LevelSpan < 1 {
		errs = append(errs, fmt.Errorf("level span %d must be positive", c.LevelSpan))
	}
	if c.RetrainEvery < 0 || c.Exclusion < 0 || c.RetrainSpan < 0 {
		errs = append(errs, errors.New("retrain interval and exclusion must not be negative"))
	}
	if c.RetrainWindow != 0 && c.RetrainWindow < c.WarmUp {
		errs = append(errs, fmt.Errorf("retrain window %d is smaller than the warm-up %d", c.RetrainWindow, c.WarmUp))
	}
	if !(c.StableSpread >= 1) {
		errs = append(errs, fmt.Errorf("stable spread %g must be at least 1", c.StableSpread))
	}
	if c.Forest.Trees < 0 || c.Forest.SampleSize < 0 {
		errs = append(errs, errors.New("forest trees and sample size must not be negative"))
	}
	if c.Forest.SampleSize > forest.MaxSampleSize {
		errs = append(errs, fmt.Errorf("forest sample size %d is above %d", c.Forest.SampleSize, forest.MaxSampleSize))
	}
	if err := c.Shape.Validate(); err != nil {
		errs = append(errs, err)
	}
	for name, k := range c.Kinds {
		if k > KindHigherIsBetter {
			errs = append(errs, fmt.Errorf("metric kind of %q: unknown kind %d", name, k))
		}
	}
	if c.Explanation < ExplainDeviation || c.Explanation > ExplainPath {
		errs = append(errs, fmt.Errorf("explanation %d is unknown", c.Explanation))
	}
	return errors.Join(errs...)
}

// Result is the detector's judgement of one sample.
type Result struct {
	// Score is the evidence against normal behaviour squashed into [0, 1): 0.5 means odds of
	// one in 100,000 that the service behaving normally shows it, 0.75 one in 10^10.
	Score float64
	// Threshold is the alarm level on the same scale, set by the noise budget.
	Threshold float64
	// Judged is false during warm-up, when there is no model yet.
	Judged bool
	// Anomalous is true when the evidence is at or beyond the threshold and the sample is
	// itself odd (see Config.Slack): an anomaly scores at least the threshold, but a calm
	// sample right after one may score above it without being anomalous.
	Anomalous bool
	// ModelVersion counts the models this detector trained (0 during the first warm-up).
	ModelVersion int
	// WarmUpLeft is the number of samples still needed before the next model is trained.
	WarmUpLeft int
	// Trained is true for the sample at which a new model was trained (the end of the
	// warm-up, a retraining or a relearning); the caller may store it (see Model).
	Trained bool
	// Relearned is true for the sample at which the detector adopted the service's steady
	// new behaviour of the last RelearnAfter as its normal.
	Relearned bool
}

// Detector scores the samples of one service. It is not safe for concurrent use.
type Detector struct {
	service string
	cfg     Config

	names   []string
	kinds   []Kind // per metric, resolved (never KindByName)
	isCount []bool
	better  []bool    // lower is better: error rates and latencies
	higher  []bool    // higher is better
	typical []float64 // per one-sided metric, the median of the training window
	fast    []float64 // per count, the exponential average of its log
	level   []float64 // per count, that average followed at most LevelDrift/LevelRise an hour
	hasLvl  bool
	owner   []int // per feature, the metric it derives from
	// minFloor is, per feature, the smallest deviation worth noticing: 1% for a count's
	// features (log units), nothing for others.
	minFloor []float64
	hist     []float64 // the metrics' recent raw values, a ring of rows (see Shape)
	histPos  int       // the ring's next row
	histLen  int       // rows filled
	shares   []float64 // per feature, Explain's scratch

	win        window // feature rows to train on: the warm-up, then the retraining window
	recent     window // the latest feature rows, every one, for relearning
	model      *forest.Forest
	cal        calibration
	surprise   []float64 // per feature, the surprise of the last sample's deviation
	version    int
	trainedAt  time.Time // sample time of the latest training
	trainSpan  [2]time.Time
	trainRows  int
	lastAnom   time.Time      // sample time of the latest anomaly
	evidence   float64        // the calibrated mean surprise of the latest Context samples, in nats
	alarm      float64        // the alarm level, in nats
	alarmFrom  time.Time      // first sample of the current run with the evidence at the alarm level
	scratch    []float64      // relearning's scratch: one column of the window
	recentMean recentSurprise // the raw surprise of the latest Context samples

	x        []float64
	lastAt   time.Time
	lastRes  Result
	hasFirst bool
}

// New returns a detector for service with cfg's defaults filled in, or the validation error.
func New(service string, cfg Config) (*Detector, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("detector config: %w", err)
	}
	return &Detector{service: service, cfg: cfg}, nil
}

// Features returns the names of the metrics the model judges, in order: Explain reports one
// share per name. The forest's own features are these metrics' values followed by the
// features Shape derives from them.
func (d *Detector) Features() []string { return slices.Clone(d.names) }

// Last returns the time of the latest sample the detector judged, false before the first.
func (d *Detector) Last() (time.Time, bool) { return d.lastAt, d.hasFirst }

// Observe judges s. A sample at the same time as the previous one is a redelivery and gets
// the same result again; an older one returns ErrOutOfOrder. A sample whose metric names
// differ from the model's starts a new warm-up under the new names. Once a model is trained,
// Observe allocates nothing but when it trains a new one.
func (d *Detector) Observe(s sample.Sample) (Result, error) {
	if d.hasFirst {
		switch {
		case s.At.Equal(d.lastAt):
			return d.lastRes, nil
		case s.At.Before(d.lastAt):
			return Result{}, fmt.Errorf("%s at %s, last %s: %w", d.service, s.At.Format(time.RFC3339), d.lastAt.Format(time.RFC3339), ErrOutOfOrder)
		}
	}
	if !d.sameNames(s.Metrics) {
		d.reset(s.Metrics)
	}
	d.features(s.Metrics)

	var res Result
	if d.model == nil {
		d.win.push(d.x, s.At, false, 0)
		d.recent.push(d.x, s.At, false, 0)
		left := max(0, d.cfg.WarmUp-d.win.len())
		if left == 0 {
			if err := d.train(s.At); err != nil {
				return Result{}, err
			}
		}
		res = Result{ModelVersion: d.version, WarmUpLeft: left, Trained: left == 0}
	} else {
		raw := d.model.ScoreExtended(d.x)
		u := d.judge(raw)
		mean := d.recentMean.push(u)
		// The evidence is the recent mean surprise against the means of normal samples; the
		// sample's own surprise against normal samples' own says whether it is itself odd.
		own := d.cal.single.surprise(u)
		d.evidence = d.cal.means.surprise(mean)
		anomalous := d.evidence >= d.alarm && own > d.cfg.Slack
		score := d.evidence
		res = Result{
			Score: squash(score), Threshold: squash(d.alarm),
			Judged: true, Anomalous: anomalous, ModelVersion: d.version,
		}
		if anomalous {
			d.lastAnom = s.At
		}
		leaveOut := !d.lastAnom.IsZero() && s.At.Sub(d.lastAnom) <= d.cfg.Exclusion
		d.win.push(d.x, s.At, leaveOut, d.cfg.RetrainSpan/time.Duration(d.cfg.RetrainWindow))
		d.recent.push(d.x, s.At, leaveOut, 0)
		// Every sample but the anomalies and their aftermath teaches the calibration what
		// normal surprise is; its tails look past the largest values (see empirical), so the
		// first samples of an anomaly, judged normal until the evidence adds up, do not
		// teach it that the anomaly is normal.
		if !leaveOut {
			d.cal.scores.add(raw)
			d.cal.means.add(mean)
			d.cal.single.add(u)
		}
		switch {
		case d.evidence < d.alarm:
			d.alarmFrom = time.Time{}
		case d.alarmFrom.IsZero():
			d.alarmFrom = s.At
		}
		relearned, err := d.maybeRelearn(s.At)
		if err != nil {
			return Result{}, err
		}
		res.Relearned, res.Trained = relearned, relearned
		// A young model retrains as soon as its window holds twice the rows it was trained on,
		// so a model whose warm-up saw a few hours of a daily cycle soon sees the rest.
		grown := d.trainRows < d.cfg.RetrainWindow && d.win.clean >= 2*d.trainRows
		// A retraining needs the rows of a warm-up clean, or half the window when a warm-up
		// fills it: a window as large as the warm-up is never clean again once it has held
		// one anomaly, and the model would never retrain.
		if !relearned && (grown || s.At.Sub(d.trainedAt) >= d.cfg.RetrainEvery) && d.win.clean >= min(d.cfg.WarmUp, d.cfg.RetrainWindow/2) {
			if err := d.train(s.At); err != nil {
				return Result{}, err
			}
			res.Trained = true
		}
	}
	d.advanceLevels(s.Metrics, s.At)
	d.hasFirst, d.lastAt, d.lastRes = true, s.At, res
	return res, nil
}

// judge returns the raw surprise of the sample in d.x whose forest score is raw: the
// stronger of the forest's evidence (the score against the forest's scores of normal
// samples) and the most surprising single feature's (its deviation against the training
// distribution), each corrected for the number of looks (the feature for the number of
// features, the larger of the two for the two), and records each feature's own surprise for
// Explain. Observe then calibrates it against the raw surprise of the service's recent normal
// samples, so that a service whose normal days are more surprising than its training rows
// suggest does not pay for it in false alarms.
func (d *Detector) judge(raw float64) float64 {
	top := 0.0
	for j, v := range d.x {
		dev := oneSidedDev(v-d.cal.median[j], d.side(j))
		u := d.cal.tails[j].surprise(math.Abs(dev))
		d.surprise[j] = u
		top = max(top, u)
	}
	joint := d.cal.scores.surprise(raw)
	single := top - math.Log(float64(len(d.x)))
	return max(0, max(joint, single)-math.Ln2)
}

// side reports which way feature j is odd: +1 only a rise (the value of a lower-is-better
// metric, floored at its median), -1 only a fall (higher-is-better, capped at its median), 0
// both ways.
func (d *Detector) side(j int) int {
	switch {
	case j >= len(d.names):
		return 0
	case d.better[j]:
		return 1
	case d.higher[j]:
		return -1
	}
	return 0
}

// oneSidedDev is the deviation dev of a feature judged only on side (see Detector.side).
func oneSidedDev(dev float64, side int) float64 {
	switch side {
	case 1:
		return max(0, dev)
	case -1:
		return max(0, -dev)
	}
	return dev
}

// recentSurprise is a ring of the latest raw surprises and their mean.
type recentSurprise struct {
	v    []float64
	next int
	n    int
	sum  float64
}

func newRecentSurprise(n int) recentSurprise { return recentSurprise{v: make([]float64, n)} }

// clear forgets every surprise.
func (c *recentSurprise) clear() { c.next, c.n, c.sum = 0, 0, 0 }

// push adds u and returns the mean of the ring.
func (c *recentSurprise) push(u float64) float64 {
	if c.n == len(c.v) {
		c.sum -= c.v[c.next]
	} else {
		c.n++
	}
	c.v[c.next] = u
	c.sum += u
	c.next = (c.next + 1) % len(c.v)
	return max(0, c.sum/float64(c.n))
}

func (d *Detector) sameNames(ms []sample.Metric) bool {
	if len(ms) != len(d.names) {
		return false
	}
	for i, m := range ms {
		if m.Name != d.names[i] {
			return false
		}
	}
	return true
}

func (d *Detector) reset(ms []sample.Metric) {
	d.names = make([]string, len(ms))
	for i, m := range ms {
		d.names[i] = m.Name
	}
	d.kinds = d.kindsOf(d.names)
	d.isCount = make([]bool, len(ms))
	d.better = make([]bool, len(ms))
	d.higher = make([]bool, len(ms))
	d.typical = make([]float64, len(ms))
	for i, k := range d.kinds {
		d.isCount[i] = k == KindCount
		d.better[i] = k == KindLowerIsBetter
		d.higher[i] = k == KindHigherIsBetter
	}
	d.fast = make([]float64, len(ms))
	d.level = make([]float64, len(ms))
	// Feature i is metric i's value; the features Shape derives follow.
	d.owner = d.cfg.Shape.layout(d.kinds)
	d.x = make([]float64, len(d.owner))
	d.minFloor = make([]float64, len(d.owner))
	for f, m := range d.owner {
		if d.isCount[m] {
			d.minFloor[f] = countFloor
		}
	}
	d.shares = make([]float64, len(d.owner))
	d.surprise = make([]float64, len(d.owner))
	d.hist = make([]float64, d.cfg.Shape.history()*len(ms))
	d.histPos, d.histLen = 0, 0
	d.hasLvl = false
	capacity := max(d.cfg.RetrainWindow, d.cfg.WarmUp)
	d.win = newWindow(capacity, len(d.owner))
	d.recent = newWindow(recentRows, len(d.owner))
	d.scratch = make([]float64, recentRows)
	d.cal = newCalibration(len(d.owner), len(ms))
	d.recentMean = newRecentSurprise(d.cfg.Context)
	d.model = nil
	d.evidence, d.alarm, d.alarmFrom = 0, 0, time.Time{}
	d.lastAnom = time.Time{}
}

// kindsOf returns the kinds of the metrics names of this detector's service.
func (d *Detector) kindsOf(names []string) []Kind {
	out := make([]Kind, len(names))
	for i, n := range names {
		out[i] = kindOf(d.cfg.Kinds, d.service, n)
	}
	return out
}

// isCount reports whether a metric counts events per interval: its level follows traffic, so
// the model sees it relative to its recent level rather than as a raw value.
func isCount(name string) bool {
	return name == sample.RequestCount || strings.HasSuffix(name, "_count") || strings.HasSuffix(name, "_total")
}

// lowerIsBetter reports whether a metric only hurts when it rises (error rates, latencies):
// a value better than typical is good news, not an anomaly, so the model sees such a value
// as typical (the training window's median), alone or together with others.
func lowerIsBetter(name string) bool {
	return name == sample.ErrorRate || strings.Contains(name, "latency") || strings.Contains(name, "error")
}

// features fills d.x from the metrics: first one feature per metric, then the features Shape
// derives from each plain metric's recent samples and each count's sudden drop. A count is
// judged on two features, both clipped at zero from above, since only less traffic than
// usual is a signal (more is a healthy spike, or recovery from a collapse): how far both the
// sample and its recent average (over LevelSpan samples, up to the previous sample) lie below
// its level, which follows the average at most LevelDrift down and LevelRise up per hour, so
// that a collapse stays odd for hours and its end is not; and how far the sample lies below
// the median of the few before it (see dropSpan), which sees a collapse at once. Neither depends on whether traffic
// is rising or falling with the time of day, so a model trained on a morning judges an
// evening alike.
func (d *Detector) features(ms []sample.Metric) {
	at := len(ms)
	for i, m := range ms {
		if !d.isCount[i] {
			d.x[i] = m.Value
			switch {
			case d.model == nil:
			case d.better[i]:
				d.x[i] = max(m.Value, d.typical[i])
			case d.higher[i]:
				d.x[i] = min(m.Value, d.typical[i])
			}
			if d.kinds[i] == KindPlain {
				at = d.derive(i, at, m.Value)
			}
			continue
		}
		v := logCount(m.Value)
		if !d.hasLvl {
			d.fast[i], d.level[i] = v, v
		}
		d.x[i] = min(0, max(v, d.fast[i])-d.level[i])
		at = d.drop(i, at, m.Value)
	}
	d.hasLvl = true
}

// countFloor is the smallest change of a count, in log units (1%), that its features notice:
// a count's level feature is exactly zero while traffic rises, so without it the first
// rounding-sized dip would be infinitely surprising.
const countFloor = 0.01

// logCount is the log scale counts are compared on. A count below zero, which sample
// validation allows for names other than request_count, counts as zero: log1p of -1 or less
// is -Inf or NaN, which would fail every training and poison the level for good.
func logCount(v float64) float64 { return math.Log1p(max(v, 0)) }

// advanceLevels moves each count's average towards the sample (an exponential average over
// LevelSpan samples) and its level towards that average, falling by at most LevelDrift and
// rising by at most LevelRise per hour of sample time since the last sample. The limits act on
// the average, not on each noisy sample, so a steady count's level sits at its mean whether
// traffic rises or falls with the time of day.
func (d *Detector) advanceLevels(ms []sample.Metric, at time.Time) {
	alpha := 2 / (float64(d.cfg.LevelSpan) + 1)
	maxFall, maxRise := math.Inf(1), math.Inf(1)
	if d.hasFirst {
		hours := at.Sub(d.lastAt).Hours()
		maxFall, maxRise = d.cfg.LevelDrift*hours, d.cfg.LevelRise*hours
	}
	for i, m := range ms {
		if d.isCount[i] {
			d.fast[i] += alpha * (logCount(m.Value) - d.fast[i])
			d.level[i] += max(-maxFall, min(maxRise, d.fast[i]-d.level[i]))
		}
	}
	d.remember(ms)
}

// train fits a new model on the window's training rows at sample time at, learns each
// feature's distribution from them and calibrates the forest's scores on its out-of-bag
// scores of them.
func (d *Detector) train(at time.Time) error {
	rows, from, to := d.win.trainingRows()
	if err := d.fit(rows, at); err != nil {
		return err
	}
	d.trainSpan = [2]time.Time{from, to}
	return nil
}

// fit trains and calibrates a model on rows.
func (d *Detector) fit(rows [][]float64, at time.Time) error {
	col := make([]float64, len(rows))
	for j := range d.names {
		side := d.side(j)
		if side == 0 {
			continue
		}
		for i, row := range rows {
			col[i] = row[j]
		}
		slices.Sort(col)
		d.typical[j] = col[len(col)/2]
		// The forest and the feature's tail see values floored (capped, for higher-is-better)
		// at the new median.
		for _, row := range rows {
			if side > 0 {
				row[j] = max(row[j], d.typical[j])
			} else {
				row[j] = min(row[j], d.typical[j])
			}
		}
	}
	fc := d.cfg.Forest
	fc.Seed ^= fnv64(d.service) ^ uint64(d.version)
	m, oob, err := forest.TrainOOB(rows, fc)
	if err != nil {
		return fmt.Errorf("train model for %s: %w", d.service, err)
	}
	// The service's sample spacing comes from the latest samples, every one: the training
	// window thins out once full.
	sides := make([]int, len(d.names))
	for j := range sides {
		sides[j] = d.side(j)
	}
	d.cal.fit(rows, sides, d.minFloor, d.recent.spacing())
	// The windows keep their rows from the new medians, close to where the values now lie.
	d.win.rebase(d.cal.median)
	d.recent.rebase(d.cal.median)
	d.cal.scores.seed(oob)
	d.model = m
	// The raw surprise of the training rows themselves starts the calibration of surprise;
	// live normal samples replace them as they come. A later model keeps the surprises of
	// the live samples before it: surprise means the same whatever the model, and the rows a
	// model was trained on look more normal to it than new samples will, all the more so for
	// the few rows of a relearned baseline.
	if d.cal.single.n == 0 {
		x, u := slices.Clone(d.x), slices.Clone(d.surprise)
		seeds := make([]float64, len(rows))
		for i, r := range rows {
			copy(d.x, r)
			seeds[i] = d.judge(oob[i])
		}
		copy(d.x, x)
		copy(d.surprise, u)
		d.cal.single.seed(seeds)
		c := newRecentSurprise(d.cfg.Context)
		means := make([]float64, len(seeds))
		for i, u := range seeds {
			means[i] = c.push(u)
		}
		d.cal.means.seed(means)
	}
	d.alarm = d.cal.alarmLevel(d.cfg.FalseAlarmsPerDay)
	d.version++
	d.trainedAt = at
	d.trainRows = len(rows)
	return nil
}

// insideShare is what Explain gives a feature within its usual range per nat of its
// surprise: next to nothing, enough to rank the metrics that did not move.
const insideShare = 1e-6

// recentRows bounds the latest rows kept for relearning; scoresSize and normSize the forest
// scores and surprises of normal samples the detector calibrates on.
const (
	recentRows  = 512
	relearnRows = 24
	scoresSize  = 1024
	normSize    = 2048
)

// maybeRelearn learns the last RelearnAfter of samples as normal when the evidence has stayed
// at the alarm level all that time and the samples were steady, and reports whether it did.
// The new behaviour joins the old rather than replacing it: the model is trained on those
// samples, every one, together with at most three times as many of the window's training
// rows, spread over it; and the samples it had left out of the window since then count as
// training rows from now on, so later retrainings keep them.
func (d *Detector) maybeRelearn(at time.Time) (bool, error) {
	// The span is judged in time and in samples: at least RelearnAfter, and at least
	// relearnRows samples at the service's spacing.
	span := max(d.cfg.RelearnAfter, relearnRows*d.cal.step)
	if d.cfg.RelearnAfter < 0 || d.alarmFrom.IsZero() || at.Sub(d.alarmFrom) < span {
		return false, nil
	}
	from := at.Add(-span)
	k := d.recent.since(from)
	n := d.recent.len() - k
	if n < relearnRows/2 || !d.steady(k) {
		return false, nil
	}
	d.win.admit(from)
	old, oldFrom, _ := d.win.trainingRows()
	step := max(1, float64(len(old))/float64(3*n))
	rows := make([][]float64, 0, n+3*n)
	for i := 0.0; int(i) < len(old) && len(rows) < 3*n; i += step {
		rows = append(rows, old[int(i)])
	}
	for i := range n {
		rows = append(rows, d.recent.row(k+i))
	}
	if err := d.fit(rows, at); err != nil {
		return false, err
	}
	if oldFrom.IsZero() {
		oldFrom = d.recent.at(k)
	}
	d.trainSpan = [2]time.Time{oldFrom, at}
	// The surprises of the last samples were the old model's: the new one starts afresh.
	d.recentMean.clear()
	d.evidence, d.alarmFrom, d.lastAnom = 0, time.Time{}, time.Time{}
	return true, nil
}

// steady reports whether the recent rows from the k-th oldest on show a new steady behaviour:
// no metric drifted (its medians over the first and the second half differ by at most
// StableSpread times its spread over them), no lower-is-better metric is worse than its
// normal and no count below it (an error rate or a latency that rose, or traffic that
// collapsed, is an outage, never a new normal).
func (d *Detector) steady(k int) bool {
	n := d.recent.len() - k
	for j := range d.names {
		col := d.scratch[:n]
		for i := range n {
			col[i] = d.recent.value(k+i, j)
		}
		first, second := median(col[:n/2]), median(col[n/2:])
		m := median(col)
		// A worse error rate or latency, or less traffic than usual, is an outage.
		side := d.side(j)
		worse := side != 0 && d.cal.tails[j].surprise(oneSidedDev(m-d.cal.median[j], side)) > d.cfg.Slack
		lost := d.isCount[j] && d.cal.tails[j].surprise(math.Abs(m-d.cal.median[j])) > d.cfg.Slack
		if worse || lost {
			return false
		}
		for i := range col {
			col[i] = math.Abs(col[i] - m)
		}
		if math.Abs(first-second) > d.cfg.StableSpread*median(col)+d.cal.floor[j] {
			return false
		}
	}
	return true
}

// median sorts v in place and returns its median.
func median(v []float64) float64 {
	slices.Sort(v)
	return v[len(v)/2]
}

func fnv64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// Explain writes into out, for the sample last observed, each metric's share in its
// judgement; shares sum to 1. By default (ExplainDeviation) a metric's share follows how
// surprising its features' deviations from their normal are, beyond what one sample in ten
// shows: a metric inside its usual range gets next to nothing, a millionth of its surprise,
// which shows as 0% and only ranks such metrics by how far they are from their normal. When no
// metric is outside its usual range (an odd combination of usual values), the forest's
// attribution decides, as it does for ExplainIsolation and ExplainPath. out must have one
// entry per metric (see Features). It reports false, leaving out unchanged, when there is no
// model yet. Explain allocates nothing.
func (d *Detector) Explain(out []float64) bool {
	if d.model == nil || len(out) != len(d.names) {
		return false
	}
	clear(out)
	if d.cfg.Explanation == ExplainDeviation {
		excess, total := 0.0, 0.0
		for f, u := range d.surprise {
			w := u - math.Ln10
			if w > 0 {
				excess += w
			} else {
				w = insideShare * max(u, 0)
			}
			out[d.owner[f]] += w
			total += w
		}
		if excess > 0 {
			for i := range out {
				out[i] /= total
			}
			return true
		}
		clear(out)
	}
	switch d.cfg.Explanation {
	case ExplainPath:
		d.model.PathFeatures(d.x, d.shares)
	default:
		d.model.Attribute(d.x, d.shares)
	}
	for f, sh := range d.shares {
		out[d.owner[f]] += sh
	}
	return true
}
