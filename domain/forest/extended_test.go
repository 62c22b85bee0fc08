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

// TestScoreExtendedHasNoCeiling checks that farther out always scores higher: isolation by the
// first split would tie every point beyond the data at 2^(-1/c(256)), about 0.9346; the
// extended score keeps rising towards 1.
func TestScoreExtendedHasNoCeiling(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 6))
	rows := make([][]float64, 1024)
	for i := range rows {
		rows[i] = []float64{rng.NormFloat64(), rng.NormFloat64(), rng.NormFloat64()}
	}
	f := mustTrain(t, rows, Config{Seed: 3})
	ceiling := math.Exp2(-1 / AveragePathLength(256))
	prev := 0.0
	for _, d := range []float64{10, 100, 1e3, 1e4, 1e6} {
		s := f.ScoreExtended([]float64{d, d, d})
		if !(s > prev) || s > 1 {
			t.Errorf("score %v at %g in every feature, want above %v (nearer in) and at most 1", s, d, prev)
		}
		prev = s
	}
	if prev <= ceiling {
		t.Errorf("a point a million sigma out scores %v, want above the first-split ceiling %v", prev, ceiling)
	}
}

// TestTrainOOB checks the out-of-bag scores: the forest is the one Train grows, a training
// row scores as new rows like it do rather than lower (it sat in the trees it is scored by),
// and with no more rows than one subsample every row is scored by every tree.
func TestTrainOOB(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	gen := func(n int) [][]float64 {
		rows := make([][]float64, n)
		for i := range rows {
			rows[i] = []float64{rng.NormFloat64(), rng.NormFloat64()}
		}
		return rows
	}
	rows, fresh := gen(400), gen(4000)
	f, oob, err := TrainOOB(rows, Config{Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	g := mustTrain(t, rows, Config{Seed: 5})
	if a, b := f.Score(fresh[0]), g.Score(fresh[0]); a != b {
		t.Fatalf("TrainOOB's forest scores %v, Train's %v: want the same forest", a, b)
	}
	mean := func(v []float64) float64 {
		s := 0.0
		for _, x := range v {
			s += x
		}
		return s / float64(len(v))
	}
	in, freshScores := make([]float64, len(rows)), make([]float64, len(fresh))
	for i := range rows {
		in[i] = f.Score(rows[i])
	}
	for i := range fresh {
		freshScores[i] = f.Score(fresh[i])
	}
	mo, mi, mf := mean(oob), mean(in), mean(freshScores)
	if !(mo > mi) || math.Abs(mo-mf) > math.Abs(mi-mf) {
		t.Errorf("mean scores: out-of-bag %.4f, in-sample %.4f, fresh rows %.4f; want out-of-bag above in-sample and nearer the fresh rows", mo, mi, mf)
	}
	small := gen(100)
	h, oobSmall, err := TrainOOB(small, Config{Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range small {
		if oobSmall[i] != h.Score(r) {
			t.Fatalf("row %d of 100 (every tree samples every row): out-of-bag %v, Score %v; want equal", i, oobSmall[i], h.Score(r))
		}
	}
	if _, _, err := TrainOOB(nil, Config{}); err == nil {
		t.Error("TrainOOB without rows: want ErrNoData")
	}
}

// TestLockStepWalks checks the lock-step walks of Score (eight trees at once) and
// ScoreExtended (four) against a plain walk of one tree after another, written here with
// branches, for forests whose tree count is and is not a multiple of four and of eight, on
// points inside and far outside the data, and for a forest whose trees are partly single
// leaves. Score must equal the sum of pathLength over the trees to the last bit.
func TestLockStepWalks(t *testing.T) {
	rows := gaussianRows(3000, 3, 21)
	plain := func(f *Forest, x []float64, extended bool) float64 {
		var sum float64
		for t := range f.roots {
			nodes := f.splits[f.starts[t]:]
			ref, stay, h, depth := uint32(f.roots[t]), 1.0, 0.0, 0.0
			for ref&leafFlag == 0 {
				nd := nodes[ref]
				v := x[nd.feature()]
				lo, hi := nd.bounds()
				if p := 0.0; extended && (v < lo || v > hi) {
					if v < lo {
						p = (lo - v) / (hi - v)
					} else {
						p = (v - hi) / (v - lo)
					}
					h += stay * p * (depth + 1 - p)
					stay *= 1 - p
				}
				if v < float64(nd.at) {
					ref = nd.link >> 12 & refMask
				} else {
					ref = nd.link & refMask
				}
				depth++
			}
			sum += h + stay*(depth+AveragePathLength(int(ref&leafMask)+1))
		}
		return math.Exp2(-sum * f.invNorm)
	}
	check := func(t *testing.T, f *Forest, probes [][]float64) {
		for _, x := range probes {
			for _, c := range []struct {
				name     string
				got      float64
				extended bool
			}{{"Score", f.Score(x), false}, {"ScoreExtended", f.ScoreExtended(x), true}} {
				if want := plain(f, x, c.extended); math.Abs(c.got-want) > 1e-12 {
					t.Fatalf("%d trees: %s(%v) = %v, one tree at a time %v", len(f.roots), c.name, x, c.got, want)
				}
			}
			var sum float64
			for tree := range f.roots {
				sum += f.pathLength(tree, x)
			}
			if got, want := f.Score(x), math.Exp2(-sum*f.invNorm); got != want {
				t.Fatalf("%d trees: Score(%v) = %v, tree by tree %v", len(f.roots), x, got, want)
			}
		}
	}
	probes := append(gaussianRows(300, 3, 22), []float64{40, 0, 0}, []float64{-1e6, 3, -7}, []float64{0, 0, 1e30})
	for _, trees := range []int{1, 4, 7, 8, 9, 100} {
		check(t, mustTrain(t, rows, Config{Trees: trees, Seed: uint64(trees)}), probes)
	}
	// Four distinct rows, subsamples of two: some trees sample one row twice and are a leaf.
	mixed := make([][]float64, 40)
	for i := range mixed {
		mixed[i] = []float64{float64(i % 4), float64(i % 2), 0}
	}
	f := mustTrain(t, mixed, Config{Trees: 21, SampleSize: 2, Seed: 6})
	leaves := 0
	for _, r := range f.roots {
		leaves += int(r >> 11 & 1)
	}
	if leaves == 0 || leaves == len(f.roots) {
		t.Fatalf("%d of %d trees are single leaves, want some but not all", leaves, len(f.roots))
	}
	check(t, f, probes)
}
