package detect

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestTailSurprise checks a feature's tail against distributions whose tails are known: the
// surprise of a deviation is about −ln of its chance inside the data, keeps rising beyond it,
// and a sparse feature (at its median four times in five) gets a heavy tail.
func TestTailSurprise(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(2, 2))
	exp := make([]float64, 5000)
	for i := range exp {
		exp[i] = rng.ExpFloat64()
	}
	tl := fitTail(exp, 1e-9)
	for _, d := range []float64{1, 2, 4, 6} { // P(D >= d) = e^-d
		if got := tl.surprise(d); math.Abs(got-d) > 0.35 {
			t.Errorf("exponential: surprise(%v) = %.2f, want about %v", d, got, d)
		}
	}
	if tl.shape > 0.15 {
		t.Errorf("exponential: fitted shape %.2f, want about 0", tl.shape)
	}
	if a, b := tl.surprise(20), tl.surprise(40); !(b > a && a > 15) {
		t.Errorf("beyond the data: surprise(20) = %.1f, surprise(40) = %.1f; want large and rising", a, b)
	}
	if got := tl.surprise(0); got != 0 {
		t.Errorf("surprise(0) = %v, want 0", got)
	}

	sparse := make([]float64, 1000)
	for i := range sparse {
		if i%50 == 0 {
			sparse[i] = 0.1 // a rare event, 2% of the time
		}
	}
	st := fitTail(sparse, 1e-9)
	if st.shape != sparseShape {
		t.Fatalf("sparse feature: shape %v, want %v", st.shape, sparseShape)
	}
	// Ten times any value seen is rare, not beyond anything: a handful of nats past the
	// chance of the largest value seen.
	if got := st.surprise(1); got < math.Log(50) || got > 12 {
		t.Errorf("sparse feature: surprise of 10x the largest deviation seen = %.1f, want between %.1f and 12", got, math.Log(50))
	}
}

// TestEmpirical checks the live distribution: surprise follows the values' ranks inside them,
// grows beyond them, and its tail ignores the largest values, so that a run of unusual values
// joining the ring does not make them unsurprising.
func TestEmpirical(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 3))
	e := newEmpirical(2048)
	for range 4000 {
		e.add(rng.ExpFloat64())
	}
	if e.n != 2048 {
		t.Fatalf("ring holds %d values, want its 2048", e.n)
	}
	for i := 1; i < e.n; i++ {
		if e.sorted[i] < e.sorted[i-1] {
			t.Fatalf("sorted values out of order at %d", i)
		}
	}
	if got := e.surprise(math.Log(10)); math.Abs(got-math.Log(10)) > 0.3 {
		t.Errorf("surprise of the 90th percentile = %.2f, want about ln 10", got)
	}
	// Beyond the data the tail is heavier than the exponential the values came from (a chance
	// of e^-15), on purpose: it judges quantities whose tails a few days do not show.
	far := e.surprise(15)
	if far < math.Log(2049)+1 || e.surprise(30) <= far {
		t.Errorf("surprise(15) = %.1f, surprise(30) = %.1f; want beyond the data rarer than any value in it, and rising", far, e.surprise(30))
	}
	for range 20 { // the first samples of an anomaly, before its alarm
		e.add(15)
	}
	if got := e.surprise(15); got < far-1.5 {
		t.Errorf("after 20 values of 15 joined the ring, surprise(15) = %.1f, want still about %.1f", got, far)
	}
	var empty empirical
	if empty.surprise(3) != 0 {
		t.Error("an empty distribution must not be surprised")
	}
}

// TestEmpiricalStaysSorted checks that the sorted copy of the ring is always exactly the
// ring's values in order, through its filling and its replacements (ties included).
func TestEmpiricalStaysSorted(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	e := newEmpirical(64)
	for i := range 5000 {
		e.add(float64(rng.IntN(40)) / 4) // many ties
		want := slices.Clone(e.ring[:e.n])
		slices.Sort(want)
		if !slices.Equal(e.sorted[:e.n], want) {
			t.Fatalf("after %d values: sorted %v, want %v", i+1, e.sorted[:e.n], want)
		}
	}
}
