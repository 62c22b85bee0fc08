package detect

import (
	"math"
	"slices"
)

// tailProbs are the tail probabilities at which a tail keeps the deviation exceeded, from the
// median out to one in ten thousand; a tail fitted on n values keeps those with n·p ≥ 2.
var tailProbs = [...]float64{0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 0.0005, 0.0002, 0.0001}

const tailKnots = len(tailProbs)

// maxSurprise caps the surprise of one value, in nats (a chance of about 1e-87): beyond it
// every value is simply "never seen", and sums of surprises stay finite.
const maxSurprise = 200.0

// tail is the upper tail of a distribution of non-negative deviations, kept compact: the
// deviation exceeded with each of the tailProbs (as far as the data reaches), and beyond the
// last of them a generalised Pareto tail fitted to the excesses over the 95th percentile (see
// fitExcess). Its surprise, the negative natural log of the chance of a deviation at least as
// large, costs a short scan and no allocation.
type tail struct {
	d     [tailKnots]float64
	knots int
	beta  float64
	shape float64
}

// fitTail fits a tail to dev, which it sorts in place. floor bounds the tail's scale from
// below, so that deviations of a feature that never moved are very surprising, not infinitely.
func fitTail(dev []float64, floor float64) tail {
	var t tail
	n := len(dev)
	if n == 0 {
		t.beta = max(floor, math.SmallestNonzeroFloat64)
		return t
	}
	slices.Sort(dev)
	at := func(q float64) float64 { return dev[int(math.Floor((1-q)*float64(n-1)))] }
	for i, p := range tailProbs {
		if p*float64(n) < 2 {
			break
		}
		t.d[i] = at(p)
		t.knots = i + 1
	}
	q := 0.05
	if q*float64(n) < 5 {
		q = 0.1
	}
	t.beta, t.shape = fitExcess(dev[int(math.Floor((1-q)*float64(n-1))):])
	// Tied deviations (a metric with a few discrete levels) leave no excess to measure; the
	// scale is then at least that of an exponential through the farthest knot, so a value a
	// little beyond anything seen is rare, not impossible.
	for i := t.knots - 1; i >= 0; i-- {
		if t.d[i] > 0 {
			t.beta = max(t.beta, t.d[i]/-math.Log(tailProbs[i]))
			break
		}
	}
	t.beta = max(t.beta, floor, math.SmallestNonzeroFloat64)
	// A feature that sits at its median four times in five (a sparse count of rare events,
	// a metric that steps between a few levels) shows too few deviations to tell how large
	// they come: beyond the data its tail is taken as heavy as 1/x, so a burst of unusual
	// size is odd, but not beyond anything. (A lower-is-better metric, floored at its median,
	// sits there half the time by construction: that alone is not sparse.)
	if t.knots > 1 && t.d[1] == 0 {
		t.shape = sparseShape
	}
	return t
}

// sparseShape is the tail shape of sparse features (see fitTail).
const sparseShape = 1.0

// surprise returns −ln P(D ≥ d) under the tail, at most maxSurprise: ln 2 at the median (less
// below it), interpolated log-linearly between the knots, the fitted Pareto tail beyond the
// last.
func (t *tail) surprise(d float64) float64 {
	if !(d > 0) {
		return 0
	}
	if t.knots == 0 {
		return min(maxSurprise, t.beyond(d))
	}
	if d <= t.d[0] {
		return math.Ln2 * d / t.d[0]
	}
	i := 0
	for i+1 < t.knots && t.d[i+1] < d {
		i++
	}
	lp := math.Log(tailProbs[i])
	if i+1 == t.knots {
		return min(maxSurprise, t.beyond(d-t.d[i])-lp)
	}
	// t.d[i] < d <= t.d[i+1], so the span is positive.
	lq := math.Log(tailProbs[i+1])
	return min(maxSurprise, -(lp + (d-t.d[i])/(t.d[i+1]-t.d[i])*(lq-lp)))
}

// beyond is the surprise of an excess x over the last knot.
func (t *tail) beyond(x float64) float64 { return pareto(x, t.beta, t.shape) }

// pareto is the surprise of an excess x beyond a tail's start, under a generalised Pareto tail
// of scale beta and shape xi (0: exponential).
func pareto(x, beta, xi float64) float64 {
	if xi < 1e-6 {
		return x / beta
	}
	return math.Log1p(xi*x/beta) / xi
}

// maxShape bounds a fitted tail shape: a tail as heavy as 1/x² is as heavy as the detector
// assumes a metric can be.
const maxShape = 0.5

// fitExcess fits a generalised Pareto tail to the values above the first of top (sorted
// ascending) by the method of moments (Hosking and Wallis 1987): shape ξ = (1 − m²/v)/2 and
// scale β = m(1 + m²/v)/2 for the excesses' mean m and variance v. The shape is kept between
// 0 and maxShape: a tail is never assumed lighter than exponential (a Gaussian metric is judged
// as an exponential one, which is safe), nor heavier than maxShape. Without excesses both are
// zero.
func fitExcess(top []float64) (beta, xi float64) {
	if len(top) == 0 {
		return 0, 0
	}
	base := top[0]
	var sum, sq float64
	k := 0
	for _, v := range top {
		if v > base {
			x := v - base
			sum += x
			sq += x * x
			k++
		}
	}
	if k == 0 {
		return 0, 0
	}
	m := sum / float64(k)
	v := sq/float64(k) - m*m
	if k < 5 || !(v > 0) {
		return m, 0
	}
	r := m * m / v
	xi = min(maxShape, max(0, (1-r)/2))
	return m * (1 - xi), xi
}
