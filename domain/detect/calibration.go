package detect

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// calibration is what a model knows of normal behaviour besides its forest: each feature's
// median and the tail of its deviations from it, the forest's scores of normal samples, the
// range of each metric's values (derived features clip past values to it, see Shape) and the
// service's sample spacing, all learned from the training rows.
type calibration struct {
	median []float64 // per feature
	tails  []tail    // per feature: deviations from the median
	floor  []float64 // per feature: the smallest deviation scale that counts
	lo, hi []float64 // per metric, the training range
	step   time.Duration
	// scores holds the forest's scores of recent normal samples (out-of-bag scores of the
	// training rows to begin with), single their raw surprise (see Detector.judge) and means
	// the mean raw surprise of the Context samples up to each (the evidence before its
	// calibration); the training rows start the last two, live normal samples replace them.
	scores, single, means empirical
}

func newCalibration(features, metrics int) calibration {
	c := calibration{
		median: make([]float64, features), tails: make([]tail, features), floor: make([]float64, features),
		lo: make([]float64, metrics), hi: make([]float64, metrics),
		scores: newEmpirical(scoresSize), single: newEmpirical(normSize), means: newEmpirical(normSize),
	}
	for i := range c.lo {
		c.lo[i], c.hi[i] = math.Inf(-1), math.Inf(1)
	}
	return c
}

// fit learns the calibration from the training rows, which way each metric is judged (see
// Detector.side), each feature's smallest meaningful deviation and the rows' spacing.
func (c *calibration) fit(rows [][]float64, sides []int, minFloor []float64, step time.Duration) {
	n := len(rows)
	col := make([]float64, n)
	for j := range c.median {
		for i, r := range rows {
			col[i] = r[j]
		}
		slices.Sort(col)
		c.median[j] = col[n/2]
		scale := max(math.Abs(col[0]), math.Abs(col[n-1]))
		if j < len(c.lo) {
			c.lo[j], c.hi[j] = col[0], col[n-1]
		}
		for i, v := range col {
			col[i] = math.Abs(v - c.median[j])
			if j < len(sides) && sides[j] != 0 {
				col[i] = oneSidedDev(v-c.median[j], sides[j])
			}
		}
		// A feature that never moved in training makes any change very surprising: the
		// floor keeps that finite and ignores changes below a millionth of its magnitude.
		c.floor[j] = max(1e-9, 1e-6*scale, minFloor[j])
		c.tails[j] = fitTail(col, c.floor[j])
	}
	c.step = step
}

// alarmLevel is the evidence, in nats, beyond which a sample is anomalous: the log of the
// samples a day over the noise budget, so that a normal service's evidence reaches it about
// budget times a day.
func (c *calibration) alarmLevel(budget float64) float64 {
	step := c.step
	if step <= 0 {
		step = time.Minute
	}
	perDay := float64(24*time.Hour) / float64(step)
	return max(0, math.Log(perDay/budget))
}

// empirical is a distribution learned from the latest values of a live quantity: a ring of
// them, in arrival order, and the same values kept sorted. It answers how surprising a new
// value is: up to a high quantile, −ln of the share of values at least as large (counting the
// new one); beyond it, a heavy tail (shape surpriseShape) through that quantile and a lower
// one. The high quantile is the 99th percentile, or lower while the ring holds few values, so
// that it never reaches the largest ignoredTop of them (the 75th below 120 values): the first
// samples of an anomaly, judged normal until the evidence adds up, join the ring without
// teaching it that the anomaly is normal, and rare outliers do not widen the tail. Adding a
// value costs two binary searches and a move of part of the sorted values; nothing is
// allocated once made. Values are kept in float32, half the bytes, which is more precision
// than a few thousand samples of a distribution can tell apart.
type empirical struct {
	size   int       // values kept at most
	ring   []float32 // allocated with the first value: a service in its warm-up holds none
	next   int
	n      int // values in the ring, and in sorted
	sorted []float32
}

// surpriseShape is the shape of an empirical's tail beyond its 99th percentile: heavier than
// exponential, since it judges surprises and scores whose own tails are what a few days of
// history could not show.
const surpriseShape = 0.25

func newEmpirical(size int) empirical { return empirical{size: size} }

// alloc gives the empirical its storage, once.
func (e *empirical) alloc() {
	if e.ring == nil {
		e.ring, e.sorted = make([]float32, e.size), make([]float32, e.size)
	}
}

// seed replaces everything with vs (the latest of them).
func (e *empirical) seed(vs []float64) {
	if len(vs) > 0 {
		e.alloc()
	}
	vs = vs[max(0, len(vs)-e.size):]
	for i, v := range vs {
		e.ring[i] = float32(v)
	}
	e.n = len(vs)
	e.next = e.n % e.size
	copy(e.sorted, e.ring[:e.n])
	slices.Sort(e.sorted[:e.n])
}

// add records a value, dropping the oldest when full.
func (e *empirical) add(value float64) {
	if math.IsNaN(value) {
		return
	}
	e.alloc()
	v := float32(value)
	// The oldest value leaves its place in the sorted values (past their end while the ring
	// fills) and v takes its own: only the values between the two places move.
	n, free := e.n, e.n
	if n == e.size {
		free, _ = slices.BinarySearch(e.sorted[:n], e.ring[e.next])
	} else {
		e.n++
	}
	at, _ := slices.BinarySearch(e.sorted[:n], v)
	s := e.sorted[:e.n]
	if at > free {
		at--
		copy(s[free:at], s[free+1:at+1])
	} else {
		copy(s[at+1:free+1], s[at:free])
	}
	s[at] = v
	e.ring[e.next] = v
	e.next = (e.next + 1) % e.size
}

// quantile returns the q-quantile of the values (the lower one at a tie of positions).
func (e *empirical) quantile(q float64) float64 {
	return float64(e.sorted[int(q*float64(e.n-1))])
}

// ignoredTop is how many of its largest values an empirical's tail never looks at: enough for
// the samples of an anomaly that join the ring before its alarm is raised (a few times
// Context).
const ignoredTop = 30

// surprise returns −ln of the chance of a value at least v, at most maxSurprise; 0 when the
// distribution is empty.
func (e *empirical) surprise(v float64) float64 {
	s := e.sorted[:e.n]
	if len(s) == 0 {
		return 0
	}
	// The share beyond the high quantile; with few values (a short warm-up) a quarter, so
	// that the tail still lies between two distinct quantiles.
	tailHi := max(0.01, min(0.25, ignoredTop/float64(len(s))))
	tailLo := min(0.5, 10*tailHi)
	hi, lo := e.quantile(1-tailHi), e.quantile(1-tailLo)
	if v <= hi {
		i, _ := slices.BinarySearch(s, float32(v))
		return math.Log(float64(len(s)+1) / float64(len(s)-i+1))
	}
	beta := max((hi-lo)/math.Log(tailLo/tailHi), 1e-6*max(1, math.Abs(hi)))
	return min(maxSurprise, -math.Log(tailHi)+pareto(v-hi, beta, surpriseShape))
}

// Binary form of a calibration (little-endian): "DCAL", format version, features F and metrics
// M (uint32), the spacing (int64 nanoseconds), per feature its median, floor and tail, per
// metric its training range, then the sorted values of scores, single and means, each a count
// (uint32) and that many float64. A tail is its knot count (uint32), beta, shape and the
// tailKnots deviations (float64).
const (
	calMagic   = "DCAL"
	calVersion = 2
	tailBytes  = 4 + 16 + 8*tailKnots
)

// marshal encodes the calibration.
func (c *calibration) marshal() []byte {
	le := binary.LittleEndian
	b := make([]byte, 0, 4+4*3+8+len(c.median)*(16+tailBytes)+len(c.lo)*16+12+8*(c.scores.n+c.single.n+c.means.n))
	b = append(b, calMagic...)
	b = le.AppendUint32(b, calVersion)
	b = le.AppendUint32(b, uint32(len(c.median)))
	b = le.AppendUint32(b, uint32(len(c.lo)))
	b = le.AppendUint64(b, uint64(c.step))
	f := func(v float64) { b = le.AppendUint64(b, math.Float64bits(v)) }
	for j := range c.median {
		f(c.median[j])
		f(c.floor[j])
		b = le.AppendUint32(b, uint32(c.tails[j].knots))
		f(c.tails[j].beta)
		f(c.tails[j].shape)
		for _, v := range c.tails[j].d {
			f(v)
		}
	}
	for j := range c.lo {
		f(c.lo[j])
		f(c.hi[j])
	}
	for _, e := range []*empirical{&c.scores, &c.single, &c.means} {
		b = le.AppendUint32(b, uint32(e.n))
		for _, v := range e.sorted[:e.n] {
			f(float64(v))
		}
	}
	return b
}

// errCalibration reports a stored calibration that cannot be read.
var errCalibration = errors.New("bad calibration")

// unmarshalCalibration decodes what marshal wrote for features features and metrics metrics.
func unmarshalCalibration(b []byte, features, metrics int) (calibration, error) {
	le := binary.LittleEndian
	fixed := 4 + 4*3 + 8 + features*(16+tailBytes) + metrics*16
	if len(b) < fixed+8 || string(b[:4]) != calMagic || le.Uint32(b[4:]) != calVersion ||
		int(le.Uint32(b[8:])) != features || int(le.Uint32(b[12:])) != metrics {
		return calibration{}, fmt.Errorf("%w: %d bytes, not a calibration of %d features and %d metrics", errCalibration, len(b), features, metrics)
	}
	c := newCalibration(features, metrics)
	c.step = time.Duration(le.Uint64(b[16:]))
	p := b[24:]
	ok := true
	f := func() float64 {
		if len(p) < 8 {
			ok = false
			return 0
		}
		v := math.Float64frombits(le.Uint64(p))
		p = p[8:]
		if math.IsNaN(v) {
			ok = false
		}
		return v
	}
	u32 := func() int {
		if len(p) < 4 {
			ok = false
			return 0
		}
		v := int(le.Uint32(p))
		p = p[4:]
		return v
	}
	for j := range c.median {
		c.median[j], c.floor[j] = f(), f()
		t := &c.tails[j]
		t.knots = u32()
		t.beta = f()
		t.shape = f()
		for i := range t.d {
			t.d[i] = f()
		}
		if t.knots > tailKnots || !(t.beta > 0) || t.shape < 0 || t.shape > sparseShape {
			ok = false
		}
	}
	for j := range c.lo {
		c.lo[j], c.hi[j] = f(), f()
	}
	for _, e := range []*empirical{&c.scores, &c.single, &c.means} {
		m := u32()
		if m > e.size || len(p) < 8*m {
			return calibration{}, fmt.Errorf("%w: %d stored values", errCalibration, m)
		}
		vs := make([]float64, m)
		for i := range vs {
			vs[i] = f()
		}
		e.seed(vs)
	}
	if !ok || c.step < 0 || len(p) != 0 {
		return calibration{}, fmt.Errorf("%w: inconsistent values", errCalibration)
	}
	return c, nil
}
