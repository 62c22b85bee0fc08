// Package evaluate measures an anomaly detector against labelled data: ranking quality of its
// scores (ROC-AUC, average precision, best F1 over thresholds), the quality of its own
// decisions (precision, recall and F1 of its flags; labelled segments found by incidents, the
// delay to finding them, incidents that overlap no segment) and of its explanations (HitRate@P
// of the metrics it names against the metrics operators named).
//
// Every function is pure and takes plain slices, so the same code scores a backtest, a test
// or a notebook-style experiment. The package deliberately does not compute point-adjusted
// scores (where one flagged row credits its whole labelled segment): they reward noise, a
// random score reaches an F1 of about 0.8 with them on common benchmarks. It reads no files
// and runs no detector.
package evaluate

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
)

// ErrOneClass is returned by the ranking metrics when the labels hold only positives or only
// negatives: no ranking can be judged then.
var ErrOneClass = errors.New("labels need both positives and negatives")

// ErrLength is returned when scores and labels differ in length.
var ErrLength = errors.New("scores and labels differ in length")

// ErrNaN is returned when a score is NaN: it has no place in a ranking.
var ErrNaN = errors.New("score is NaN")

// ranked holds scores sorted by decreasing score, ties grouped.
type ranked struct {
	order []int // indices by decreasing score
	pos   int   // number of positives
}

func rank(scores []float64, labels []bool) (ranked, error) {
	if len(scores) != len(labels) {
		return ranked{}, fmt.Errorf("%d scores, %d labels: %w", len(scores), len(labels), ErrLength)
	}
	pos := 0
	for i, s := range scores {
		if math.IsNaN(s) {
			return ranked{}, fmt.Errorf("score %d: %w", i, ErrNaN)
		}
		if labels[i] {
			pos++
		}
	}
	if pos == 0 || pos == len(labels) {
		return ranked{}, fmt.Errorf("%d positives among %d: %w", pos, len(labels), ErrOneClass)
	}
	order := make([]int, len(scores))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return scores[order[a]] > scores[order[b]] })
	return ranked{order: order, pos: pos}, nil
}

// curve walks the distinct thresholds from the highest score down and calls fn with the
// cumulative true and false positives of flagging every score at or above each threshold,
// and that threshold.
func (r ranked) curve(scores []float64, labels []bool, fn func(tp, fp int, threshold float64)) {
	tp, fp := 0, 0
	for k, i := range r.order {
		if labels[i] {
			tp++
		} else {
			fp++
		}
		if k+1 < len(r.order) && scores[r.order[k+1]] == scores[i] {
			continue // a tie: the threshold cannot separate these rows
		}
		fn(tp, fp, scores[i])
	}
}

// ROCAUC returns the area under the ROC curve of scores (higher means more anomalous) against
// labels (true means anomalous): the probability that a random anomalous row scores above a
// random normal one, a tie counting half. It is 0.5 for a constant score.
func ROCAUC(scores []float64, labels []bool) (float64, error) {
	r, err := rank(scores, labels)
	if err != nil {
		return math.NaN(), fmt.Errorf("roc-auc: %w", err)
	}
	neg := len(labels) - r.pos
	var area float64
	prevTP, prevFP := 0, 0
	r.curve(scores, labels, func(tp, fp int, _ float64) {
		// Trapezoid between the previous point and this one: ties move both counts at once.
		area += float64(fp-prevFP) * float64(tp+prevTP) / 2
		prevTP, prevFP = tp, fp
	})
	return area / (float64(r.pos) * float64(neg)), nil
}

// AveragePrecision returns the area under the precision-recall curve as scikit-learn's
// average_precision_score computes it: the sum over distinct thresholds of the precision at
// that threshold times the recall it adds, without interpolation.
func AveragePrecision(scores []float64, labels []bool) (float64, error) {
	r, err := rank(scores, labels)
	if err != nil {
		return math.NaN(), fmt.Errorf("average precision: %w", err)
	}
	var ap float64
	prevTP := 0
	r.curve(scores, labels, func(tp, fp int, _ float64) {
		ap += float64(tp-prevTP) / float64(r.pos) * float64(tp) / float64(tp+fp)
		prevTP = tp
	})
	return ap, nil
}

// BestF1 returns the highest F1 over every threshold that flags the scores at or above it,
// without point adjustment, and the highest threshold that reaches it.
func BestF1(scores []float64, labels []bool) (f1, threshold float64, err error) {
	r, err := rank(scores, labels)
	if err != nil {
		return math.NaN(), math.NaN(), fmt.Errorf("best f1: %w", err)
	}
	f1, threshold = 0, math.Inf(1)
	r.curve(scores, labels, func(tp, fp int, th float64) {
		if f := 2 * float64(tp) / float64(tp+fp+r.pos); f > f1 {
			f1, threshold = f, th
		}
	})
	return f1, threshold, nil
}

// Counts is a confusion matrix of flags against labels.
type Counts struct {
	TP, FP, FN, TN int
}

// Confusion counts flags against labels, row by row. It returns ErrLength if they differ in
// length.
func Confusion(flags, labels []bool) (Counts, error) {
	if len(flags) != len(labels) {
		return Counts{}, fmt.Errorf("%d flags, %d labels: %w", len(flags), len(labels), ErrLength)
	}
	var c Counts
	for i, f := range flags {
		switch {
		case f && labels[i]:
			c.TP++
		case f:
			c.FP++
		case labels[i]:
			c.FN++
		default:
			c.TN++
		}
	}
	return c, nil
}

// Precision is TP/(TP+FP), or 0 when nothing was flagged.
func (c Counts) Precision() float64 { return ratio(c.TP, c.TP+c.FP) }

// Recall is TP/(TP+FN), or 0 when there are no positives.
func (c Counts) Recall() float64 { return ratio(c.TP, c.TP+c.FN) }

// F1 is the harmonic mean of precision and recall, 2TP/(2TP+FP+FN), or 0 when there is
// nothing to find and nothing was flagged.
func (c Counts) F1() float64 { return ratio(2*c.TP, 2*c.TP+c.FP+c.FN) }

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// Segment is a run of rows [Start, End), End exclusive.
type Segment struct {
	Start, End int
}

// Len is the number of rows in the segment.
func (s Segment) Len() int { return s.End - s.Start }

// Contains reports whether row i lies in the segment.
func (s Segment) Contains(i int) bool { return i >= s.Start && i < s.End }

// Overlaps reports whether the two segments share a row.
func (s Segment) Overlaps(o Segment) bool { return s.Start < o.End && o.Start < s.End }

// Segments returns the maximal runs of true labels, in order.
func Segments(labels []bool) []Segment {
	var out []Segment
	for i := 0; i < len(labels); i++ {
		if !labels[i] {
			continue
		}
		j := i
		for j < len(labels) && labels[j] {
			j++
		}
		out = append(out, Segment{i, j})
		i = j
	}
	return out
}

// Detection says which labelled segments a detector's alarms found.
type Detection struct {
	// Found counts the segments with an alarm inside them.
	Found int
	// Delays holds, per found segment in order, the rows from its start to its first alarm.
	Delays []int
}

// Recall is the fraction of segments found, or NaN when there are none.
func (d Detection) Recall(segments int) float64 {
	if segments == 0 {
		return math.NaN()
	}
	return float64(d.Found) / float64(segments)
}

// MeanDelay is the mean of Delays, or NaN when no segment was found.
func (d Detection) MeanDelay() float64 {
	if len(d.Delays) == 0 {
		return math.NaN()
	}
	sum := 0
	for _, v := range d.Delays {
		sum += v
	}
	return float64(sum) / float64(len(d.Delays))
}

// Detect returns which segments contain at least one of the alarm rows (for a backtest: the
// rows at which an incident opened) and each found segment's delay to its first alarm. An
// alarm before a segment that lasts into it does not count: only an alarm raised during the
// anomaly shows that the anomaly was seen.
func Detect(segments []Segment, alarms []int) Detection {
	a := slices.Clone(alarms)
	slices.Sort(a)
	var d Detection
	for _, s := range segments {
		k, _ := slices.BinarySearch(a, s.Start)
		if k < len(a) && a[k] < s.End {
			d.Found++
			d.Delays = append(d.Delays, a[k]-s.Start)
		}
	}
	return d
}

// FalseAlarms counts the spans (for a backtest: each incident from opening to resolution)
// that overlap no labelled segment.
func FalseAlarms(spans, segments []Segment) int {
	n := 0
	for _, sp := range spans {
		if !slices.ContainsFunc(segments, sp.Overlaps) {
			n++
		}
	}
	return n
}

// HitRate returns HitRate@P of one explanation: the fraction of the truth (the metrics
// operators named, as indices into shares) found among the ⌊p·len(truth)⌋ metrics with the
// largest shares (capped at all metrics). Equal shares rank by lower index. It is NaN for an
// empty truth. Truth indices outside shares count as misses. HitRate does not allocate.
func HitRate(shares []float64, truth []int, p float64) float64 {
	if len(truth) == 0 {
		return math.NaN()
	}
	k := topK(p, len(truth), len(shares))
	hits := 0
	for _, t := range truth {
		if t < 0 || t >= len(shares) {
			continue // a metric the explanation does not cover is never found
		}
		// t is among the top k when fewer than k metrics outrank it.
		above := 0
		for j, s := range shares {
			if s > shares[t] || (s == shares[t] && j < t) {
				above++
			}
		}
		if above < k {
			hits++
		}
	}
	return float64(hits) / float64(len(truth))
}

// ChanceHitRate is the HitRate@P a random ranking of dims metrics reaches in expectation for a
// truth of n metrics: each named metric is among the top ⌊p·n⌋ (capped at dims) with
// probability ⌊p·n⌋/dims. It is the floor an explanation must clear to mean anything, and it is
// high when operators named most of the metrics. NaN for n = 0 or dims < 1.
func ChanceHitRate(dims, n int, p float64) float64 {
	if n == 0 || dims < 1 {
		return math.NaN()
	}
	k := topK(p, n, dims)
	return float64(k) / float64(dims)
}

// topK is ⌊p·n⌋ capped at dims; the epsilon keeps products such as 1.15·20 from flooring
// one below their exact value.
func topK(p float64, n, dims int) int { return min(int(math.Floor(p*float64(n)+1e-9)), dims) }

// Mean returns the mean of the values that are not NaN, and how many there were; NaN when
// there are none.
func Mean(values []float64) (float64, int) {
	sum, n := 0.0, 0
	for _, v := range values {
		if !math.IsNaN(v) {
			sum += v
			n++
		}
	}
	if n == 0 {
		return math.NaN(), 0
	}
	return sum / float64(n), n
}

// ChanceFigures are what a detector that raised the same alarms at random times would reach,
// in expectation: the floor that Detect's and FalseAlarms' figures must clear.
type ChanceFigures struct {
	// Found is the expected number of segments with an alarm inside them.
	Found float64
	// False is the expected number of episodes that overlap no segment.
	False float64
}

// Chance places every episode (an alarm from its opening row to its end) at a uniformly random
// start among rows, keeping its length, draws times with a random source seeded by seed, and
// returns the mean segments found (an opening inside them, as Detect counts) and false
// episodes (as FalseAlarms counts). With no episodes or no rows both are zero.
func Chance(rows int, segments, episodes []Segment, draws int, seed uint64) ChanceFigures {
	if rows <= 0 || len(episodes) == 0 || draws <= 0 {
		return ChanceFigures{}
	}
	rng := rand.New(rand.NewPCG(seed, 0x5851F42D4C957F2D))
	// covered[i] is the number of segment rows before row i, so an episode's overlap with any
	// segment is one subtraction.
	covered := make([]int, rows+1)
	inSeg := make([]int, rows) // index+1 of the segment holding row i, 0 for none
	for k, s := range segments {
		for i := max(0, s.Start); i < min(rows, s.End); i++ {
			inSeg[i] = k + 1
		}
	}
	for i := range rows {
		covered[i+1] = covered[i]
		if inSeg[i] > 0 {
			covered[i+1]++
		}
	}
	hit := make([]bool, len(segments))
	var found, falses int
	for range draws {
		clear(hit)
		for _, e := range episodes {
			l := min(max(1, e.Len()), rows)
			a := rng.IntN(rows - l + 1)
			if k := inSeg[a]; k > 0 {
				hit[k-1] = true
			}
			if covered[a+l] == covered[a] {
				falses++
			}
		}
		for _, h := range hit {
			if h {
				found++
			}
		}
	}
	return ChanceFigures{Found: float64(found) / float64(draws), False: float64(falses) / float64(draws)}
}
