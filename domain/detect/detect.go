// Package detect judges one service's samples with its own Isolation Forest.
//
// A Detector learns what normal looks like from the service's first samples (the warm-up),
// trains a forest on them, calibrates its threshold from the scores of that same window, and
// from then on scores every sample against it without allocating. It turns metric values into
// features (a count becomes its ratio to the recent level, so a daily traffic cycle is not an
// anomaly while a collapse is; any other metric that is not an error rate or a latency also
// gets its volatility over the last few samples, see Shape) and explains each judgement as
// every metric's share in it (Explain). It keeps no history beyond its training window and
// those few samples, and does not decide what an incident is: the incident package does.
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

// Config sets how a service's model is trained. A zero field takes the default beside it.
type Config struct {
	// WarmUp is the number of samples collected before the model is trained (default 256,
	// one forest subsample).
	WarmUp int
	// Forest sets the trees; defaults are those of the paper and scikit-learn (100 trees of
	// 256 samples). Its Seed is mixed with the service name, so each service has its own
	// reproducible forest.
	Forest forest.Config
	// Quantile of the warm-up scores the threshold starts from (default 0.99).
	Quantile float64
	// Margin widens the threshold above that quantile by this fraction of the headroom left
	// below a score of 1 (default 0.15).
	Margin float64
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
	// Exclusion is how long after an anomaly samples stay out of the retraining window
	// (default 15m, the recovery window of incidents).
	Exclusion time.Duration
	// Shape sets the features derived from each metric's recent samples (see Shape).
	Shape Shape
	// Explanation is how Explain attributes an anomaly to metrics (default ExplainIsolation).
	Explanation Explanation
}

// SetDefaults fills every zero field with its default.
func (c *Config) SetDefaults() {
	if c.WarmUp == 0 {
		c.WarmUp = 256
	}
	if c.Quantile == 0 {
		c.Quantile = 0.99
	}
	if c.Margin == 0 {
		c.Margin = 0.15
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
	if c.Exclusion == 0 {
		c.Exclusion = 15 * time.Minute
	}
}

// Validate reports every setting that cannot work.
func (c Config) Validate() error {
	var errs []error
	if c.WarmUp < 16 {
		errs = append(errs, fmt.Errorf("warm-up %d: need at least 16 samples", c.WarmUp))
	}
	if c.Quantile <= 0 || c.Quantile > 1 {
		errs = append(errs, fmt.Errorf("quantile %g must be in (0,1]", c.Quantile))
	}
	if c.Margin < 0 || c.Margin >= 1 {
		errs = append(errs, fmt.Errorf("margin %g must be in [0,1)", c.Margin))
	}
	if c.LevelDrift < 0 || c.LevelRise < 0 {
		errs = append(errs, fmt.Errorf("level drift %g and rise %g must not be negative", c.LevelDrift, c.LevelRise))
	}
	if c.LevelSpan < 1 {
		errs = append(errs, fmt.Errorf("level span %d must be positive", c.LevelSpan))
	}
	if c.RetrainEvery < 0 || c.Exclusion < 0 {
		errs = append(errs, errors.New("retrain interval and exclusion must not be negative"))
	}
	if c.RetrainWindow != 0 && c.RetrainWindow < c.WarmUp {
		errs = append(errs, fmt.Errorf("retrain window %d is smaller than the warm-up %d", c.RetrainWindow, c.WarmUp))
	}
	if c.Forest.Trees < 0 || c.Forest.SampleSize < 0 {
		errs = append(errs, errors.New("forest trees and sample size must not be negative"))
	}
	if err := c.Shape.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Explanation != ExplainIsolation && c.Explanation != ExplainPath {
		errs = append(errs, fmt.Errorf("explanation %d is unknown", c.Explanation))
	}
	return errors.Join(errs...)
}

// Result is the detector's judgement of one sample.
type Result struct {
	Score     float64
	Threshold float64
	// Judged is false during warm-up, when there is no model yet.
	Judged    bool
	Anomalous bool
	// ModelVersion counts the models this detector trained (0 during the first warm-up).
	ModelVersion int
	// WarmUpLeft is the number of samples still needed before the next model is trained.
	WarmUpLeft int
	// Trained is true for the sample at which a new model was trained (the end of the
	// warm-up, or a retraining); the caller may store it (see Model).
	Trained bool
}

// Detector scores the samples of one service. It is not safe for concurrent use.
type Detector struct {
	service string
	cfg     Config

	names   []string
	isCount []bool
	better  []bool    // lower is better: error rates and latencies
	typical []float64 // per lower-is-better feature, the median of the training window
	level   []float64
	hasLvl  bool
	owner   []int     // per feature, the metric it derives from
	hist    []float64 // the metrics' recent raw values, a ring of rows (see Shape)
	histPos int       // the ring's next row
	histLen int       // rows filled
	shares  []float64 // per feature, Explain's scratch
	lo, hi  []float64 // per metric, the training range derived features clip to
	rangeOf int       // the model version lo and hi belong to

	win       window // recent feature rows: the warm-up, then the retraining window
	model     *forest.Forest
	threshold float64
	version   int
	trainedAt time.Time // sample time of the latest training
	trainSpan [2]time.Time
	trainRows int
	lastAnom  time.Time // sample time of the latest anomaly

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

// Observe judges s. A sample at the same time as the previous one is a redelivery and gets
// the same result again; an older one returns ErrOutOfOrder. A sample whose metric names
// differ from the model's starts a new warm-up under the new names. Once a model is trained,
// Observe allocates nothing.
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
		d.win.push(d.x, s.At)
		left := max(0, d.cfg.WarmUp-d.win.len())
		if left == 0 {
			if err := d.train(s.At); err != nil {
				return Result{}, err
			}
		}
		res = Result{ModelVersion: d.version, WarmUpLeft: left, Trained: left == 0}
	} else {
		score := d.model.ScoreExtended(d.x)
		res = Result{Score: score, Threshold: d.threshold, Judged: true, Anomalous: score > d.threshold, ModelVersion: d.version}
		if res.Anomalous {
			d.lastAnom = s.At
		} else if d.lastAnom.IsZero() || s.At.Sub(d.lastAnom) > d.cfg.Exclusion {
			d.win.push(d.x, s.At)
		}
		if s.At.Sub(d.trainedAt) >= d.cfg.RetrainEvery && d.win.len() >= d.cfg.WarmUp {
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
	d.isCount = make([]bool, len(ms))
	d.better = make([]bool, len(ms))
	d.typical = make([]float64, len(ms))
	for i, m := range ms {
		d.names[i] = m.Name
		d.isCount[i] = isCount(m.Name)
		d.better[i] = lowerIsBetter(m.Name)
	}
	d.level = make([]float64, len(ms))
	// Feature i is metric i's value; the features Shape derives follow.
	d.owner = d.cfg.Shape.layout(d.names)
	d.x = make([]float64, len(d.owner))
	d.shares = make([]float64, len(d.owner))
	d.hist = make([]float64, d.cfg.Shape.history()*len(ms))
	d.histPos, d.histLen = 0, 0
	d.lo, d.hi = make([]float64, len(ms)), make([]float64, len(ms))
	d.rangeOf = -1
	d.hasLvl = false
	d.win = newWindow(max(d.cfg.RetrainWindow, d.cfg.WarmUp), len(d.owner))
	d.model = nil
	d.threshold = 0
	d.lastAnom = time.Time{}
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
// derives from each plain metric's recent samples. A count becomes its log-ratio to the
// count's recent level, clipped at zero from above: traffic falling below its level is a signal
// (a collapse), traffic above it is not (a healthy spike, or recovery from a collapse).
func (d *Detector) features(ms []sample.Metric) {
	if d.rangeOf != d.version {
		d.trainingRange()
	}
	at := len(ms)
	for i, m := range ms {
		if !d.isCount[i] {
			d.x[i] = m.Value
			if d.better[i] && d.model != nil {
				d.x[i] = max(m.Value, d.typical[i])
			}
			if !d.better[i] {
				at = d.derive(i, at, m.Value)
			}
			continue
		}
		v := logCount(m.Value)
		if !d.hasLvl {
			d.level[i] = v
		}
		d.x[i] = min(0, v-d.level[i])
	}
	d.hasLvl = true
}

// logCount is the log scale counts are compared on. A count below zero, which sample
// validation allows for names other than request_count, counts as zero: log1p of -1 or less
// is -Inf or NaN, which would fail every training and poison the level for good.
func logCount(v float64) float64 { return math.Log1p(max(v, 0)) }

// advanceLevels moves each count's level towards the sample (an exponential average over
// LevelSpan samples), falling by at most LevelDrift and rising by at most LevelRise per hour
// of sample time since the last sample.
func (d *Detector) advanceLevels(ms []sample.Metric, at time.Time) {
	alpha := 2 / (float64(d.cfg.LevelSpan) + 1)
	maxFall, maxRise := math.Inf(1), math.Inf(1)
	if d.hasFirst {
		hours := at.Sub(d.lastAt).Hours()
		maxFall, maxRise = d.cfg.LevelDrift*hours, d.cfg.LevelRise*hours
	}
	for i, m := range ms {
		if d.isCount[i] {
			step := alpha * (logCount(m.Value) - d.level[i])
			d.level[i] += max(-maxFall, min(maxRise, step))
		}
	}
	d.remember(ms)
}

// train fits a new model on the window's rows at sample time at and calibrates its
// threshold on them.
func (d *Detector) train(at time.Time) error {
	rows := d.win.rows()
	col := make([]float64, len(rows))
	for j, better := range d.better {
		if !better {
			continue
		}
		for i, row := range rows {
			col[i] = row[j]
		}
		slices.Sort(col)
		d.typical[j] = col[len(col)/2]
	}
	fc := d.cfg.Forest
	fc.Seed ^= fnv64(d.service) ^ uint64(d.version)
	m, err := forest.Train(rows, fc)
	if err != nil {
		return fmt.Errorf("train model for %s: %w", d.service, err)
	}
	// Calibrate on at most 512 rows spread evenly over the window: enough for the 99th
	// percentile, and retraining stays a few milliseconds.
	step := max(1, len(rows)/512)
	scores := make([]float64, 0, len(rows)/step+1)
	for i := 0; i < len(rows); i += step {
		scores = append(scores, m.ScoreExtended(rows[i]))
	}
	d.model = m
	d.threshold = Calibrate(scores, d.cfg.Quantile, d.cfg.Margin)
	d.version++
	d.trainedAt = at
	d.trainSpan[0], d.trainSpan[1] = d.win.span()
	d.trainRows = len(rows)
	return nil
}

// Calibrate returns a threshold from the scores of a model's own training samples: their
// q-quantile, raised by margin times the headroom left above it. Each service thereby gets a
// threshold fitted to how spread its normal behaviour is, instead of one global number.
// With no scores it returns 1: nothing is anomalous.
func Calibrate(scores []float64, q, margin float64) float64 {
	if len(scores) == 0 {
		return 1
	}
	s := slices.Clone(scores)
	slices.Sort(s)
	pos := q * float64(len(s)-1)
	lo := int(math.Floor(pos))
	hi := min(lo+1, len(s)-1)
	base := s[lo] + (pos-float64(lo))*(s[hi]-s[lo])
	return base + margin*(1-base)
}

func fnv64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// Explain writes into out, for the sample last observed, each metric's share in isolating it;
// shares sum to 1. The forest's attribution (Config.Explanation) is computed per feature, and
// the features Shape derives from a metric count towards that metric. out must have one entry
// per metric (see Features). It reports false, leaving out unchanged, when there is no model
// yet. Explain allocates nothing.
func (d *Detector) Explain(out []float64) bool {
	if d.model == nil || len(out) != len(d.names) {
		return false
	}
	switch d.cfg.Explanation {
	case ExplainPath:
		d.model.PathFeatures(d.x, d.shares)
	default:
		d.model.Attribute(d.x, d.shares)
	}
	clear(out)
	for f, sh := range d.shares {
		out[d.owner[f]] += sh
	}
	return true
}
