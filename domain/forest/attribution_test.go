package forest

import (
	"math"
	"slices"
	"testing"
)

func TestAttribute(t *testing.T) {
	t.Parallel()
	rows := gaussianRows(256, 3, 6) // one subsample: every row is in every tree
	f := mustTrain(t, rows, Config{Seed: 3})

	t.Run("inside the training data it is PathFeatures", func(t *testing.T) {
		t.Parallel()
		a, p := make([]float64, 3), make([]float64, 3)
		for i, r := range rows[:64] {
			f.Attribute(r, a)
			f.PathFeatures(r, p)
			for j := range a {
				if math.Abs(a[j]-p[j]) > 1e-12 {
					t.Fatalf("training row %d: Attribute %v, PathFeatures %v; want equal where nothing is cut off", i, a, p)
				}
			}
		}
	})

	cases := []struct {
		name string
		x    []float64
		top  int
		min  float64 // the least share the top feature must take
		why  string
	}{
		{"far in one feature", []float64{0, 40, 0}, 1, 0.9, "40 sigma out: cut off at the first split on it, nearly every tree"},
		{"far below", []float64{0.3, 0, -40}, 2, 0.9, "the low side is cut off the same way"},
		{"just outside", []float64{0, 4.5, 0}, 1, 0.6, "a small gap is a small cut-off probability, the rest goes down the path"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, path := make([]float64, 3), make([]float64, 3)
			f.Attribute(tc.x, out)
			f.PathFeatures(tc.x, path)
			var sum float64
			for _, v := range out {
				sum += v
			}
			if math.Abs(sum-1) > 1e-12 {
				t.Errorf("shares %v sum to %v, want 1", out, sum)
			}
			if slices.Index(out, slices.Max(out)) != tc.top || out[tc.top] < tc.min {
				t.Errorf("shares %v: want feature %d on top with at least %.2f (%s)", out, tc.top, tc.min, tc.why)
			}
			if out[tc.top] <= path[tc.top] {
				t.Errorf("Attribute gives feature %d %.3f, PathFeatures %.3f: the cut-off mass should sharpen it (%s)", tc.top, out[tc.top], path[tc.top], tc.why)
			}
		})
	}

	t.Run("wrong lengths", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			x, out []float64
		}{{[]float64{1}, make([]float64, 3)}, {rows[0], make([]float64, 2)}} {
			f.Attribute(tc.x, tc.out)
			for _, v := range tc.out {
				if !math.IsNaN(v) {
					t.Errorf("Attribute(len %d, len %d) = %v, want all NaN", len(tc.x), len(tc.out), tc.out)
				}
			}
		}
	})
}

// TestAttributeAllocs is not parallel: AllocsPerRun is disturbed by concurrent tests.
func TestAttributeAllocs(t *testing.T) {
	f := mustTrain(t, gaussianRows(1000, 19, 2), Config{})
	x, out := gaussianRows(1, 19, 9)[0], make([]float64, 19)
	x[4] = 30
	if n := testing.AllocsPerRun(200, func() { f.Attribute(x, out) }); n != 0 {
		t.Errorf("Attribute allocates %v per call, want 0: it runs for every anomaly on the score stage", n)
	}
}

// BenchmarkAttribute explains one 19-feature sample, one feature far out, per iteration.
func BenchmarkAttribute(b *testing.B) {
	f, queries := benchForest(b, 19)
	out := make([]float64, 19)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		q := queries[i&(benchQueries-1)]
		f.Attribute(q, out)
	}
	reportRate(b)
}
