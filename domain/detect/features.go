package detect

import (
	"fmt"
	"math"
	"slices"

	"github.com/incident-engine/engine/domain/sample"
)

// DefaultVolatility is the number of previous samples Shape.Volatility looks back over when it
// is zero.
const DefaultVolatility = 3

// maxShapeSpan bounds the samples a detector keeps per metric for its derived features.
const maxShapeSpan = 64

// Shape sets the features derived from each metric's recent samples, beside the metric's own
// value, so that the forest sees odd shapes that stay inside the usual range of values: a
// metric that starts to swing, or jumps between two normal levels, or (less strongly) freezes.
// The zero Shape is the default: the volatility over DefaultVolatility previous samples, and no
// change feature. Both were chosen by measurement on ASD (docs/results.md): the volatility
// raised the forest's PR-AUC from 0.21 to 0.34, while no setting of the change feature, alone
// or beside it, did as well; with the calibrated evidence, values alone still find fewer
// labelled segments on ASD, SMD and NAB.
//
// Derived features see the previous values clipped to the range of the rows the model was
// trained on. A value far outside that range makes its own sample's volatility extreme too,
// so the forest sees it on two features instead of one; but once it is in the past, it counts
// only as far as the most extreme training value. Unclipped, one outlier would keep the
// volatility of the following samples anomalous, enough to open an incident.
//
// Only plain metrics (neither counts nor one-sided, see Kind) get these derived features. A count
// is judged against its own level and gets its sudden drop instead (see dropSpan). An error
// rate or a latency is judged by its value alone, floored at its training median: a floored
// value's spread falls to zero when the service does better than usual, which the forest would
// flag, and every added feature dilutes the forest's view of the value itself.
type Shape struct {
	// Volatility is the number of previous samples whose spread, with the current sample, is
	// a feature: the standard deviation of those Volatility+1 values. Zero means
	// DefaultVolatility; a negative value leaves the feature out. A span of more than
	// DefaultVolatility ranks ASD's anomalies a little better but opens more false incidents
	// on noise.
	Volatility int
	// Change, when positive, adds the difference between the sample and the mean of its
	// previous Change samples (1: the change since the previous sample). Zero leaves it out.
	Change int
}

// Validate reports settings that cannot work.
func (s Shape) Validate() error {
	if s.Volatility > maxShapeSpan || s.Change < 0 || s.Change > maxShapeSpan {
		return fmt.Errorf("shape: volatility %d and change %d must be at most %d, change not negative", s.Volatility, s.Change, maxShapeSpan)
	}
	return nil
}

// volatility returns the volatility span in force, 0 for none.
func (s Shape) volatility() int {
	switch {
	case s.Volatility == 0:
		return DefaultVolatility
	case s.Volatility < 0:
		return 0
	}
	return s.Volatility
}

// history is how many previous samples per metric the derived features need: at least the
// dropSpan a count's sudden drop is judged against.
func (s Shape) history() int { return max(s.volatility(), s.Change, dropSpan) }

// dropSpan is the number of previous samples whose median a count's sudden drop is measured
// from: after a burst of traffic ends, two samples at the usual level pull it back down, so the
// end of a burst is one odd sample or two, while a collapse stays odd on the count's level.
const dropSpan = 3

// perMetric is the number of features derived from each plain metric.
func (s Shape) perMetric() int {
	n := 0
	if s.volatility() > 0 {
		n++
	}
	if s.Change > 0 {
		n++
	}
	return n
}

// layout returns, per feature, the index of the metric it derives from: one feature per metric
// (its value) in metric order, then in metric order each plain metric's derived features
// (volatility before change) and each count's sudden drop.
func (s Shape) layout(kinds []Kind) []int {
	owner := make([]int, 0, len(kinds))
	for i := range kinds {
		owner = append(owner, i)
	}
	per := s.perMetric()
	for i, k := range kinds {
		switch k {
		case KindPlain:
			for range per {
				owner = append(owner, i)
			}
		case KindCount:
			owner = append(owner, i)
		}
	}
	return owner
}

// drop writes count i's sudden drop into d.x at position at and returns the next position:
// how far the log of the count v lies below the median log of its dropSpan previous samples,
// 0 when above it or before the count has that much history.
func (d *Detector) drop(i, at int, v float64) int {
	m := len(d.names)
	rows := len(d.hist) / m
	d.x[at] = 0
	if d.histLen >= dropSpan {
		var prev [dropSpan]float64
		for k := range prev {
			prev[k] = logCount(d.hist[((d.histPos-1-k+rows)%rows)*m+i])
		}
		slices.Sort(prev[:])
		d.x[at] = min(0, logCount(v)-prev[dropSpan/2])
	}
	return at + 1
}

// derive writes metric i's derived features into d.x from position at and returns the next
// position. v is the metric's value. Before a metric has history, the derived features see
// the value alone: no change, no spread. Previous values are clipped to the training range
// (see trainingRange); the current one is not.
func (d *Detector) derive(i, at int, v float64) int {
	m := len(d.names)
	rows := len(d.hist) / m
	lo, hi := d.cal.lo[i], d.cal.hi[i]
	// prev(k) is the value k samples back, 1 <= k <= d.histLen, clipped to the training range.
	prev := func(k int) float64 { return min(hi, max(lo, d.hist[((d.histPos-k+rows)%rows)*m+i])) }
	if span := d.cfg.Shape.volatility(); span > 0 {
		n := min(span, d.histLen)
		// Two passes over at most maxShapeSpan+1 values: exact even for large values with
		// small spread, where a running sum of squares would cancel.
		sum := v
		for k := 1; k <= n; k++ {
			sum += prev(k)
		}
		mean := sum / float64(n+1)
		sq := (v - mean) * (v - mean)
		for k := 1; k <= n; k++ {
			dv := prev(k) - mean
			sq += dv * dv
		}
		d.x[at] = math.Sqrt(sq / float64(n+1))
		at++
	}
	if span := d.cfg.Shape.Change; span > 0 {
		n := min(span, d.histLen)
		change := 0.0
		if n > 0 {
			var sum float64
			for k := 1; k <= n; k++ {
				sum += prev(k)
			}
			change = v - sum/float64(n)
		}
		d.x[at] = change
		at++
	}
	return at
}

// remember keeps the metrics' values for the derived features of the next samples.
func (d *Detector) remember(ms []sample.Metric) {
	m := len(d.names)
	if len(d.hist) == 0 || len(ms) != m {
		return
	}
	for i, x := range ms {
		d.hist[d.histPos*m+i] = x.Value
	}
	rows := len(d.hist) / m
	d.histPos = (d.histPos + 1) % rows
	d.histLen = min(d.histLen+1, rows)
}
