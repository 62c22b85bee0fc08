package forest

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestScoreExtended checks the novelty score against Score on a 3-feature cloud.
func TestScoreExtended(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 5))
	rows := make([][]float64, 256) // one subsample: every row is in every tree
	for i := range rows {
		rows[i] = []float64{rng.NormFloat64(), 10 + rng.NormFloat64(), 100 * rng.NormFloat64()}
	}
	f := mustTrain(t, rows, Config{Seed: 9})

	for i, r := range rows[:64] {
		if a, b := f.Score(r), f.ScoreExtended(r); math.Abs(a-b) > 1e-12 {
			t.Fatalf("training row %d: Score %v, ScoreExtended %v; want equal inside the training range", i, a, b)
		}
	}

	cases := []struct {
		name string
		x    []float64
		min  float64
		why  string
	}{
		{"far-in-one-feature", []float64{0, 60, 0}, 0.75, "50 sigma in one feature is cut off at the first split on it"},
		{"far-below", []float64{-50, 10, 0}, 0.75, "works on the low side too"},
		{"far-in-all", []float64{30, 40, 3000}, 0.85, "out of range everywhere isolates almost at once"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ext, plain := f.ScoreExtended(c.x), f.Score(c.x)
			if ext < c.min || ext > 1 {
				t.Errorf("ScoreExtended = %.3f, want in [%.2f, 1] (%s)", ext, c.min, c.why)
			}
			if ext <= plain {
				t.Errorf("ScoreExtended %.3f not above Score %.3f for a point outside the training data", ext, plain)
			}
		})
	}

	// Farther out scores higher: the score grows monotonically with the distance.
	prev := 0.0
	for _, d := range []float64{13, 15, 20, 40, 100} {
		s := f.ScoreExtended([]float64{0, d, 0})
		if s < prev {
			t.Errorf("score at latency %v = %.3f, below %.3f nearer in", d, s, prev)
		}
		prev = s
	}
	if n := testing.AllocsPerRun(100, func() { f.ScoreExtended(rows[0]) }); n != 0 {
		t.Errorf("ScoreExtended allocates %v per call, want 0", n)
	}
	if !math.IsNaN(f.ScoreExtended([]float64{1})) {
		t.Error("wrong dimension must give NaN")
	}
}
