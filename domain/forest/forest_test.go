package forest

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
)

// gaussianRows returns n rows of d independent N(0, 1) values from a seeded source.
func gaussianRows(n, d int, seed uint64) [][]float64 {
	rng := rand.New(rand.NewPCG(seed, 1))
	rows := make([][]float64, n)
	for i := range rows {
		rows[i] = make([]float64, d)
		for j := range rows[i] {
			rows[i][j] = rng.NormFloat64()
		}
	}
	return rows
}

// mustTrain trains a forest or fails the test.
func mustTrain(t testing.TB, rows [][]float64, cfg Config) *Forest {
	t.Helper()
	f, err := Train(rows, cfg)
	if err != nil {
		t.Fatalf("Train: %v", err)
	}
	return f
}

// treeDepth returns the most splits on a path of tree t, from the reference ref down.
func treeDepth(f *Forest, t int, ref uint32) int {
	if ref&leafFlag != 0 {
		return 0
	}
	s := f.splits[int(f.starts[t])+int(ref)]
	return 1 + max(treeDepth(f, t, s.link>>12&refMask), treeDepth(f, t, s.link&refMask))
}

func TestAveragePathLength(t *testing.T) {
	t.Parallel()
	// Independently written c(n): 2*H(n-1) - 2(n-1)/n with H(i) ≈ ln(i) + γ.
	ref := func(n int) float64 {
		m := float64(n - 1)
		return 2*math.Log(m) + 2*0.5772156649015329 - 2*m/float64(n)
	}
	cases := []struct {
		name string
		n    int
		want float64
		why  string
	}{
		{"zero", 0, 0, "an empty leaf adds nothing to the path"},
		{"one", 1, 0, "a single point is already isolated"},
		{"two", 2, 1, "sklearn special-cases n == 2 to exactly 1"},
		{"three", 3, ref(3), "smallest n that uses the general formula"},
		{"256", 256, ref(256), "the default subsample size normalises every score"},
		{"10000", 10000, ref(10000), "large leaves stay on the formula"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := AveragePathLength(tc.n); math.Abs(got-tc.want) > 1e-9 {
				t.Errorf("AveragePathLength(%d) = %.12f, want %.12f (%s)", tc.n, got, tc.want, tc.why)
			}
		})
	}
	if got := AveragePathLength(256); math.Abs(got-10.2448) > 1e-3 {
		t.Errorf("AveragePathLength(256) = %.6f, want ≈ 10.2448 (published value)", got)
	}
}

func TestScoreSeparatesOutlier(t *testing.T) {
	t.Parallel()
	f := mustTrain(t, gaussianRows(1000, 2, 7), Config{Seed: 3})
	cases := []struct {
		name   string
		x      []float64
		lo, hi float64
		why    string
	}{
		{"centre", []float64{0, 0}, 0, 0.5, "the densest point takes long to isolate"},
		{"far", []float64{8, -8}, 0.65, 1, "a point far outside the cloud is isolated at once"},
		{"edge", []float64{2.5, 0}, 0, 1, "any input scores inside (0, 1]"},
		{"huge", []float64{1e300, -1e300}, 0.65, 1, "extreme values stay finite and in range"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := f.Score(tc.x)
			if !(s > 0 && s <= 1) {
				t.Fatalf("Score(%v) = %v outside (0, 1] (%s)", tc.x, s, tc.why)
			}
			if s <= tc.lo || s >= tc.hi && tc.hi < 1 {
				t.Errorf("Score(%v) = %.4f, want in (%v, %v) (%s)", tc.x, s, tc.lo, tc.hi, tc.why)
			}
		})
	}
	if c, o := f.Score([]float64{0, 0}), f.Score([]float64{8, -8}); o-c < 0.2 {
		t.Errorf("outlier %.4f not clearly above centre %.4f", o, c)
	}
}

func TestDeterminism(t *testing.T) {
	t.Parallel()
	rows := gaussianRows(600, 3, 11)
	probes := gaussianRows(50, 3, 12)
	scores := func(seed uint64) []float64 {
		f := mustTrain(t, rows, Config{Seed: seed})
		out := make([]float64, len(probes))
		for i, p := range probes {
			out[i] = f.Score(p)
		}
		return out
	}
	a, b, c := scores(1), scores(1), scores(2)
	if !slices.Equal(a, b) {
		t.Errorf("same rows and seed gave different scores")
	}
	if slices.Equal(a, c) {
		t.Errorf("seeds 1 and 2 gave identical scores; seed is not used")
	}
	f1, f2 := mustTrain(t, rows, Config{Seed: 1}), mustTrain(t, rows, Config{Seed: 1})
	if !slices.Equal(f1.splits, f2.splits) || !slices.Equal(f1.roots, f2.roots) {
		t.Errorf("same seed gave different trees")
	}
}

func TestTrainErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		rows [][]float64
		cfg  Config
		want error
		why  string
	}{
		{"nil", nil, Config{}, ErrNoData, "nothing to learn from"},
		{"empty", [][]float64{}, Config{}, ErrNoData, "zero rows is the same as nil"},
		{"zero-width", [][]float64{{}, {}}, Config{}, ErrDimensionMismatch, "rows need at least one feature"},
		{"ragged", [][]float64{{1, 2}, {3}}, Config{}, ErrDimensionMismatch, "all rows must have the same length"},
		{"nan", [][]float64{{1, 2}, {math.NaN(), 3}}, Config{}, ErrNonFinite, "NaN cannot be split on"},
		{"inf", [][]float64{{1, math.Inf(-1)}}, Config{}, ErrNonFinite, "infinite bounds make split draws meaningless"},
		{"negative-trees", [][]float64{{1}}, Config{Trees: -1}, ErrInvalidConfig, "negative counts are a caller bug"},
		{"negative-sample", [][]float64{{1}}, Config{SampleSize: -5}, ErrInvalidConfig, "negative counts are a caller bug"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, err := Train(tc.rows, tc.cfg)
			if !errors.Is(err, tc.want) || f != nil {
				t.Errorf("Train = %v, %v; want nil, %v (%s)", f, err, tc.want, tc.why)
			}
		})
	}
}

func TestWrongDimensions(t *testing.T) {
	t.Parallel()
	f := mustTrain(t, gaussianRows(300, 3, 1), Config{})
	cases := []struct {
		name string
		x    []float64
		why  string
	}{
		{"short", []float64{1, 2}, "a missing feature cannot be scored"},
		{"long", []float64{1, 2, 3, 4}, "an extra feature means the caller mixed up models"},
		{"nil", nil, "nil is a zero-length sample"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if s := f.Score(tc.x); !math.IsNaN(s) {
				t.Errorf("Score(%v) = %v, want NaN (%s)", tc.x, s, tc.why)
			}
			out := []float64{1, 1, 1}
			f.PathFeatures(tc.x, out)
			for _, v := range out {
				if !math.IsNaN(v) {
					t.Errorf("PathFeatures(%v) = %v, want all NaN (%s)", tc.x, out, tc.why)
					break
				}
			}
		})
	}
	var zero Forest
	if s := zero.Score(nil); !math.IsNaN(s) {
		t.Errorf("zero Forest Score = %v, want NaN", s)
	}
}

func TestSmallInputs(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		rows      int
		sample    int
		wantPsi   int
		wantDepth int
		why       string
	}{
		{"one-row", 1, 0, 1, 0, "a single row yields single-leaf trees"},
		{"two-rows", 2, 0, 2, 1, "depth limit is ceil(log2(max(2, 2))) = 1"},
		{"fifty-rows", 50, 0, 50, 6, "fewer rows than 256: use them all, depth ceil(log2 50) = 6"},
		{"explicit-64", 1000, 64, 64, 6, "SampleSize 64 limits depth to 6"},
		{"non-power", 1000, 100, 100, 7, "ceil(log2 100) = 7"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := mustTrain(t, gaussianRows(tc.rows, 2, 5), Config{SampleSize: tc.sample, Trees: 20})
			if f.SampleSize() != tc.wantPsi {
				t.Errorf("SampleSize() = %d, want %d (%s)", f.SampleSize(), tc.wantPsi, tc.why)
			}
			deepest := 0
			for t, r := range f.roots {
				deepest = max(deepest, treeDepth(f, t, uint32(r)))
			}
			if deepest != f.depth {
				t.Errorf("deepest tree %d, forest's depth %d: the walks would stop early or late", deepest, f.depth)
			}
			if deepest > tc.wantDepth {
				t.Errorf("deepest tree %d > limit %d (%s)", deepest, tc.wantDepth, tc.why)
			}
			if s := f.Score([]float64{0, 0}); !(s > 0 && s <= 1) {
				t.Errorf("Score = %v outside (0, 1] (%s)", s, tc.why)
			}
		})
	}
}

func TestConstantColumns(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(9, 9))
	oneConst := make([][]float64, 500)
	allConst := make([][]float64, 500)
	for i := range oneConst {
		oneConst[i] = []float64{42, rng.NormFloat64()}
		allConst[i] = []float64{1, 2}
	}
	t.Run("one-constant", func(t *testing.T) {
		t.Parallel()
		// Splits must all use the varying feature, so the outlier is still found.
		f := mustTrain(t, oneConst, Config{Seed: 1})
		for _, nd := range f.splits {
			if nd.feature() == 0 {
				t.Fatalf("split on constant feature 0")
			}
		}
		if c, o := f.Score([]float64{42, 0}), f.Score([]float64{42, 9}); !(o > 0.65 && c < 0.5) {
			t.Errorf("centre %.3f, outlier %.3f: constant column broke scoring", c, o)
		}
		out := make([]float64, 2)
		f.PathFeatures([]float64{42, 9}, out)
		if out[0] != 0 || math.Abs(out[1]-1) > 1e-12 {
			t.Errorf("PathFeatures = %v, want [0 1]", out)
		}
	})
	t.Run("all-constant", func(t *testing.T) {
		t.Parallel()
		// Every tree is a single leaf of 256 rows, so every point scores 0.5.
		f := mustTrain(t, allConst, Config{})
		if len(f.splits) != 0 {
			t.Errorf("%d splits in %d trees, want single leaves", len(f.splits), len(f.roots))
		}
		if s := f.Score([]float64{1, 2}); math.Abs(s-0.5) > 1e-12 {
			t.Errorf("Score = %v, want 0.5", s)
		}
		out := []float64{7, 7}
		f.PathFeatures([]float64{5, 5}, out)
		if out[0] != 0 || out[1] != 0 {
			t.Errorf("PathFeatures = %v, want zeros when nothing splits", out)
		}
	})
}

func TestExtremeValues(t *testing.T) {
	t.Parallel()
	// Values near ±MaxFloat64 would overflow a naive lo+u*(hi-lo) split draw; beyond float32
	// they are trained on as ±MaxFloat32.
	rng := rand.New(rand.NewPCG(4, 4))
	rows := make([][]float64, 300)
	for i := range rows {
		rows[i] = []float64{math.MaxFloat64 * (2*rng.Float64() - 1), rng.NormFloat64()}
	}
	rows[0][0], rows[1][0] = math.MaxFloat64, -math.MaxFloat64
	f := mustTrain(t, rows, Config{})
	for i, nd := range f.splits {
		if !finite(float64(nd.at)) || nd.below > spanInf || nd.above > spanInf {
			t.Fatalf("split %d has a non-finite value: %+v", i, nd)
		}
	}
	if s := f.Score([]float64{0, 0}); !(s > 0 && s <= 1) {
		t.Errorf("Score = %v outside (0, 1]", s)
	}
	data, err := f.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if err := new(Forest).UnmarshalBinary(data); err != nil {
		t.Errorf("model with extreme splits does not round-trip: %v", err)
	}
}

func TestZeroAllocations(t *testing.T) {
	// Not parallel: AllocsPerRun is disturbed by concurrent tests.
	f := mustTrain(t, gaussianRows(1000, 3, 2), Config{})
	x := []float64{0.5, -1, 3}
	out := make([]float64, 3)
	cases := []struct {
		name string
		fn   func()
		why  string
	}{
		{"Score", func() { _ = f.Score(x) }, "scoring sits on the hot path of every sample"},
		{"PathFeatures", func() { f.PathFeatures(x, out) }, "explanations reuse the caller's buffer"},
	}
	for _, tc := range cases {
		if n := testing.AllocsPerRun(200, tc.fn); n != 0 {
			t.Errorf("%s allocates %v per call, want 0 (%s)", tc.name, n, tc.why)
		}
	}
}

func TestPathFeatures(t *testing.T) {
	t.Parallel()
	f := mustTrain(t, gaussianRows(1000, 3, 4), Config{Seed: 8})
	cases := []struct {
		name string
		x    []float64
		top  int
		why  string
	}{
		{"feature-1-high", []float64{0, 7, 0}, 1, "only feature 1 is unusual"},
		{"feature-1-low", []float64{0.2, -6, -0.1}, 1, "direction does not matter"},
		{"feature-2", []float64{0, 0, 9}, 2, "the credit follows the unusual feature"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out := make([]float64, 3)
			f.PathFeatures(tc.x, out)
			var sum float64
			for _, v := range out {
				sum += v
			}
			if math.Abs(sum-1) > 1e-12 {
				t.Errorf("shares %v sum to %v, want 1 (%s)", out, sum, tc.why)
			}
			// Splits above the isolating one are credited too, so the other
			// features keep a floor share; the unusual one must still lead
			// clearly.
			for j, v := range out {
				if j != tc.top && v > out[tc.top]-0.05 {
					t.Errorf("shares %v: feature %d not clearly the largest (%s)", out, tc.top, tc.why)
				}
			}
		})
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	t.Parallel()
	f := mustTrain(t, gaussianRows(800, 4, 3), Config{Trees: 30, Seed: 5})
	data, err := f.MarshalBinary()
	if err != nil {
		t.Fatalf("MarshalBinary: %v", err)
	}
	var g Forest
	if err := g.UnmarshalBinary(data); err != nil {
		t.Fatalf("UnmarshalBinary: %v", err)
	}
	if g.Dims() != f.Dims() || g.SampleSize() != f.SampleSize() || g.Trees() != f.Trees() {
		t.Fatalf("round trip changed shape: dims %d/%d psi %d/%d trees %d/%d",
			g.Dims(), f.Dims(), g.SampleSize(), f.SampleSize(), g.Trees(), f.Trees())
	}
	a, b := make([]float64, 4), make([]float64, 4)
	for _, p := range gaussianRows(100, 4, 99) {
		if fs, gs := f.Score(p), g.Score(p); fs != gs {
			t.Fatalf("Score(%v) = %v after round trip, want %v", p, gs, fs)
		}
		f.PathFeatures(p, a)
		g.PathFeatures(p, b)
		if !slices.Equal(a, b) {
			t.Fatalf("PathFeatures(%v) = %v after round trip, want %v", p, b, a)
		}
	}
	if _, err := new(Forest).MarshalBinary(); !errors.Is(err, ErrInvalidModel) {
		t.Errorf("marshalling a zero Forest: err = %v, want ErrInvalidModel", err)
	}
}

func TestUnmarshalRejectsBadInput(t *testing.T) {
	t.Parallel()
	f := mustTrain(t, gaussianRows(300, 2, 3), Config{Trees: 5})
	good, err := f.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	edit := func(fn func(b []byte) []byte) []byte { return fn(slices.Clone(good)) }
	cases := []struct {
		name string
		data []byte
		why  string
	}{
		{"nil", nil, "no bytes at all"},
		{"header-only", good[:12], "cut inside the header"},
		{"truncated", good[:len(good)-1], "the last byte is missing"},
		{"half", good[:len(good)/2], "cut mid-node"},
		{"extra", append(slices.Clone(good), 0), "trailing garbage"},
		{"magic", edit(func(b []byte) []byte { b[0] = 'X'; return b }), "not a forest model"},
		{"version", edit(func(b []byte) []byte { b[4] = 9; return b }), "a future format must not be misread"},
		{"flipped-node", edit(func(b []byte) []byte { b[len(b)/2] ^= 0x40; return b }), "the checksum catches silent corruption"},
		{"flipped-crc", edit(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), "the checksum itself is checked"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := *f
			if err := g.UnmarshalBinary(tc.data); !errors.Is(err, ErrInvalidModel) {
				t.Errorf("UnmarshalBinary = %v, want ErrInvalidModel (%s)", err, tc.why)
			}
			if g.Score([]float64{0, 0}) != f.Score([]float64{0, 0}) {
				t.Errorf("failed UnmarshalBinary modified the receiver (%s)", tc.why)
			}
		})
	}
}

// TestUnmarshalStructure feeds structurally invalid models with a valid
// checksum, and random byte soup, to check validation beyond the CRC.
func TestUnmarshalStructure(t *testing.T) {
	t.Parallel()
	f := mustTrain(t, gaussianRows(300, 2, 3), Config{Trees: 3})
	first, last := f.starts[1]-1, int32(len(f.splits)-1) // the last splits of trees 0 and 2
	cases := []struct {
		name   string
		mutate func(g *Forest)
		why    string
	}{
		{"feature-out-of-range", func(g *Forest) { g.splits[0].link |= 2 << 24 }, "a split on a missing feature would index out of range"},
		{"child-backwards", func(g *Forest) { g.splits[1].link = g.splits[1].link&^refMask | 1 }, "a cycle would loop forever"},
		{"child-outside-tree", func(g *Forest) {
			g.splits[first].link = g.splits[first].link&^refMask | uint32(f.starts[1]-f.starts[0])
		}, "a child in another tree"},
		{"leaf-too-big", func(g *Forest) { g.splits[last].link = g.splits[last].link&^refMask | leafRef(257) }, "a leaf holds at most the subsample"},
		{"nan-threshold", func(g *Forest) { g.splits[0].at = float32(math.NaN()) }, "NaN thresholds are never produced"},
		{"range-not-a-distance", func(g *Forest) { g.splits[0].above = spanInf + 1 }, "a span above infinity is NaN"},
		{"empty-range", func(g *Forest) { g.splits[0].below, g.splits[0].above = 0, 0 }, "a split has rows on both sides"},
		{"root-not-first", func(g *Forest) { g.roots[1] = 1 }, "a tree's walk starts at its first split"},
		{"leaf-root-with-splits", func(g *Forest) { g.roots[1] = uint16(leafRef(10)) }, "a tree with splits starts at one"},
		{"first-tree-late", func(g *Forest) { g.starts[0] = 1 }, "the first tree starts at split 0"},
		{"trees-unordered", func(g *Forest) { g.starts[1], g.starts[2] = g.starts[2], g.starts[1] }, "trees occupy increasing split ranges"},
		{"zero-dims", func(g *Forest) { g.dims = 0 }, "a model needs at least one feature"},
		{"too-many-dims", func(g *Forest) { g.dims = MaxDims + 1 }, "a split names its feature in 8 bits"},
		{"zero-sample", func(g *Forest) { g.sampleSize = 0 }, "a model was trained on at least one row"},
		{"too-deep", func(g *Forest) {
			g.splits = g.splits[:g.starts[2]] // the last tree becomes a chain of MaxDepth+1 splits
			for j := range MaxDepth + 1 {
				s := newSplit(0, float32(j)+0.5, float64(j), MaxDepth+1)
				s.link |= leafRef(1)<<12 | uint32(j+1)
				if j == MaxDepth {
					s.link = s.link&^refMask | leafRef(1)
				}
				g.splits = append(g.splits, s)
			}
		}, "training never grows a path longer than MaxDepth, which the walks count in a byte"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := &Forest{splits: slices.Clone(f.splits), starts: slices.Clone(f.starts), roots: slices.Clone(f.roots), dims: f.dims, sampleSize: f.sampleSize}
			if err := new(Forest).UnmarshalBinary(marshalUnchecked(g)); err != nil {
				t.Fatalf("unmutated model rejected: %v", err)
			}
			tc.mutate(g)
			data := marshalUnchecked(g)
			var h Forest
			if err := h.UnmarshalBinary(data); !errors.Is(err, ErrInvalidModel) {
				t.Errorf("UnmarshalBinary = %v, want ErrInvalidModel (%s)", err, tc.why)
			}
		})
	}
	t.Run("random-bytes", func(t *testing.T) {
		t.Parallel()
		rng := rand.New(rand.NewPCG(1, 2))
		good, _ := f.MarshalBinary()
		for range 2000 {
			b := slices.Clone(good)
			b = b[:rng.IntN(len(b)+1)]
			for range rng.IntN(4) + 1 {
				if len(b) > 0 {
					b[rng.IntN(len(b))] = byte(rng.Uint32())
				}
			}
			var h Forest
			_ = h.UnmarshalBinary(b) // must not panic
		}
	})
}

// marshalUnchecked encodes g in the documented binary format without any
// sanity checks, with a valid checksum, so only structural validation can
// reject it.
func marshalUnchecked(g *Forest) []byte {
	le := binary.LittleEndian
	b := []byte(magic)
	b = le.AppendUint32(b, formatVersion)
	b = le.AppendUint32(b, uint32(g.dims))
	b = le.AppendUint32(b, uint32(g.sampleSize))
	b = le.AppendUint32(b, uint32(len(g.roots)))
	b = le.AppendUint32(b, uint32(len(g.splits)))
	for t, r := range g.roots {
		b = le.AppendUint32(b, uint32(g.starts[t]))
		b = le.AppendUint32(b, uint32(r))
	}
	for _, s := range g.splits {
		b = le.AppendUint32(b, math.Float32bits(s.at))
		b = le.AppendUint16(b, uint16(s.below))
		b = le.AppendUint16(b, uint16(s.above))
		b = le.AppendUint32(b, s.link)
	}
	return le.AppendUint32(b, crc32.ChecksumIEEE(b))
}

// marshalV3 encodes g as version 3 did: each split's range as mid ± half in float32, the
// midpoint rounded to nearest and half rounded up to cover the range and the threshold.
func marshalV3(g *Forest) []byte {
	b := marshalUnchecked(g)[:headerSize+treeSize*len(g.roots)]
	le := binary.LittleEndian
	le.PutUint32(b[4:], 3)
	for _, s := range g.splits {
		lo, hi := s.bounds()
		mid := float32(lo/2 + hi/2)
		half := ceil32(max(hi-float64(mid), float64(mid)-lo, math.Abs(float64(s.at)-float64(mid))))
		b = le.AppendUint32(b, math.Float32bits(s.at))
		b = le.AppendUint32(b, math.Float32bits(mid))
		b = le.AppendUint32(b, math.Float32bits(half))
		b = le.AppendUint32(b, s.link)
	}
	return le.AppendUint32(b, crc32.ChecksumIEEE(b))
}

// marshalV2 encodes g as version 2 did: every node, leaves included, in pre-order, in
// float64; a leaf holds depth + c(n) with its depth in lo.
func marshalV2(g *Forest) []byte {
	le := binary.LittleEndian
	var roots []uint32
	var nodes []byte
	count := 0
	node := func(value, lo, hi float64, feature, right int32) int {
		nodes = le.AppendUint64(nodes, math.Float64bits(value))
		nodes = le.AppendUint64(nodes, math.Float64bits(lo))
		nodes = le.AppendUint64(nodes, math.Float64bits(hi))
		nodes = le.AppendUint32(nodes, uint32(feature))
		nodes = le.AppendUint32(nodes, uint32(right))
		count++
		return count - 1
	}
	var emit func(t int, ref uint32, depth int)
	emit = func(t int, ref uint32, depth int) {
		if ref&leafFlag != 0 {
			node(float64(depth)+leafPath[ref&leafMask], float64(depth), 0, -1, -1)
			return
		}
		s := g.splits[int(g.starts[t])+int(ref)]
		lo, hi := s.bounds()
		self := node(float64(s.at), lo, hi, int32(s.feature()), 0)
		emit(t, s.link>>12&refMask, depth+1)
		le.PutUint32(nodes[v2NodeSize*self+28:], uint32(count))
		emit(t, s.link&refMask, depth+1)
	}
	for t, r := range g.roots {
		roots = append(roots, uint32(count))
		emit(t, uint32(r), 0)
	}
	b := []byte(magic)
	b = le.AppendUint32(b, 2)
	b = le.AppendUint32(b, uint32(g.dims))
	b = le.AppendUint32(b, uint32(g.sampleSize))
	b = le.AppendUint32(b, uint32(len(g.roots)))
	b = le.AppendUint32(b, uint32(count))
	for _, r := range roots {
		b = le.AppendUint32(b, r)
	}
	b = append(b, nodes...)
	return le.AppendUint32(b, crc32.ChecksumIEEE(b))
}

// TestUnmarshalVersion2 reads a model in the format before compact splits: an upgraded
// worker keeps its services' models instead of warming every one up again.
func TestUnmarshalVersion2(t *testing.T) {
	t.Parallel()
	f := mustTrain(t, gaussianRows(2000, 3, 3), Config{Trees: 20, Seed: 4})
	var g Forest
	if err := g.UnmarshalBinary(marshalV2(f)); err != nil {
		t.Fatalf("version 2 model rejected: %v", err)
	}
	if g.Trees() != f.Trees() || g.Splits() != f.Splits() || g.depth != f.depth {
		t.Fatalf("converted: %d trees, %d splits, depth %d; want %d, %d, %d", g.Trees(), g.Splits(), g.depth, f.Trees(), f.Splits(), f.depth)
	}
	for _, x := range gaussianRows(200, 3, 9) {
		if a, b := f.ScoreExtended(x), g.ScoreExtended(x); a != b {
			t.Fatalf("ScoreExtended(%v) = %v after conversion, want %v", x, b, a)
		}
	}
	bad := marshalV2(f)
	bad[headerSize+4*20+24] = 7 // the first node's feature
	binary.LittleEndian.PutUint32(bad[len(bad)-4:], crc32.ChecksumIEEE(bad[:len(bad)-4]))
	if err := g.UnmarshalBinary(bad); !errors.Is(err, ErrInvalidModel) {
		t.Errorf("version 2 model with a split on feature 7 of 3: err = %v, want ErrInvalidModel", err)
	}
}

// TestUnmarshalVersion3 reads a model of the previous format, whose ranges were mid ± half
// in float32: it keeps every split and scores every point inside the ranges as before, and
// points beyond them within the 16-bit rounding of the ranges.
func TestUnmarshalVersion3(t *testing.T) {
	t.Parallel()
	f := mustTrain(t, gaussianRows(2000, 3, 3), Config{Trees: 20, Seed: 4})
	var g Forest
	if err := g.UnmarshalBinary(marshalV3(f)); err != nil {
		t.Fatalf("version 3 model rejected: %v", err)
	}
	if g.Trees() != f.Trees() || g.Splits() != f.Splits() || g.depth != f.depth {
		t.Fatalf("converted: %d trees, %d splits, depth %d; want %d, %d, %d", g.Trees(), g.Splits(), g.depth, f.Trees(), f.Splits(), f.depth)
	}
	for i, s := range g.splits {
		lo, hi := s.bounds()
		flo, fhi := f.splits[i].bounds()
		if s.at != f.splits[i].at || s.link != f.splits[i].link || lo > flo || hi < fhi {
			t.Fatalf("split %d converted to %v in [%v, %v], want %v covering [%v, %v]", i, s.at, lo, hi, f.splits[i].at, flo, fhi)
		}
	}
	for _, x := range gaussianRows(200, 3, 9) {
		if a, b := f.Score(x), g.Score(x); a != b {
			t.Fatalf("Score(%v) = %v after conversion, want %v", x, b, a)
		}
		x[0] *= 8 // far outside most ranges
		if a, b := f.ScoreExtended(x), g.ScoreExtended(x); math.Abs(a-b) > 0.01 {
			t.Fatalf("ScoreExtended(%v) = %v after conversion, want about %v", x, b, a)
		}
	}
}

// TestSpan16 checks the 16-bit distances of the splits' ranges: never shorter than the
// distance, at most 1/256 of it longer, infinite beyond float32.
func TestSpan16(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 5))
	for range 100000 {
		d := math.Exp(rng.Float64()*160 - 80)
		got := span16(d).float()
		if got < d || got > d*(1+1.0/256) {
			t.Fatalf("span16(%v) = %v, want within [d, d·(1+1/256)]", d, got)
		}
		if span16(got).float() != got {
			t.Fatalf("span16 of a span's own value %v moved it to %v", got, span16(got).float())
		}
	}
	for _, tc := range []struct{ d, want float64 }{{0, 0}, {-1, 0}, {math.NaN(), 0}, {math.MaxFloat32, math.Inf(1)}, {math.MaxFloat64, math.Inf(1)}, {math.Inf(1), math.Inf(1)}} {
		if got := span16(tc.d).float(); got != tc.want {
			t.Errorf("span16(%v) = %v, want %v", tc.d, got, tc.want)
		}
	}
}

// splitMix64 is a tiny generator shared with scripts/bench_sklearn.py so that
// Go and scikit-learn see exactly the same dataset.
type splitMix64 struct{ state uint64 }

func (s *splitMix64) next() uint64 {
	s.state += 0x9E3779B97F4A7C15
	z := s.state
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

func (s *splitMix64) uniform() float64 { return float64(s.next()>>11) * (1.0 / (1 << 53)) }

func (s *splitMix64) normal() float64 {
	u1 := 1 - s.uniform()
	u2 := s.uniform()
	return math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
}

// parityDataset mirrors parity_dataset() in scripts/bench_sklearn.py:
// 1000 N(0, I) inliers then 50 Uniform[-6, 6)^3 outliers, seed 42.
func parityDataset() (rows [][]float64, outlier []bool) {
	g := &splitMix64{state: 42}
	for range 1000 {
		rows = append(rows, []float64{g.normal(), g.normal(), g.normal()})
		outlier = append(outlier, false)
	}
	for range 50 {
		rows = append(rows, []float64{-6 + 12*g.uniform(), -6 + 12*g.uniform(), -6 + 12*g.uniform()})
		outlier = append(outlier, true)
	}
	return rows, outlier
}

// rocAUC returns the area under the ROC curve of scores for the positive
// labels, as the Mann–Whitney U statistic with average ranks for ties.
func rocAUC(scores []float64, positive []bool) float64 {
	order := make([]int, len(scores))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return scores[order[a]] < scores[order[b]] })
	var rankSum float64
	var pos int
	for i := 0; i < len(order); {
		j := i
		for j < len(order) && scores[order[j]] == scores[order[i]] {
			j++
		}
		avg := float64(i+j+1) / 2 // ranks are 1-based: mean of i+1 .. j
		for k := i; k < j; k++ {
			if positive[order[k]] {
				rankSum += avg
				pos++
			}
		}
		i = j
	}
	neg := len(scores) - pos
	return (rankSum - float64(pos*(pos+1))/2) / float64(pos*neg)
}

func TestROCAUCHelper(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		scores []float64
		pos    []bool
		want   float64
		why    string
	}{
		{"perfect", []float64{0.1, 0.2, 0.9}, []bool{false, false, true}, 1, "positive ranked first"},
		{"inverted", []float64{0.9, 0.2, 0.1}, []bool{false, false, true}, 0, "positive ranked last"},
		{"ties", []float64{0.5, 0.5}, []bool{false, true}, 0.5, "a tie counts half"},
		{"mixed", []float64{0.1, 0.4, 0.35, 0.8}, []bool{false, false, true, true}, 0.75, "sklearn's roc_auc_score example"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := rocAUC(tc.scores, tc.pos); math.Abs(got-tc.want) > 1e-12 {
				t.Errorf("rocAUC = %v, want %v (%s)", got, tc.want, tc.why)
			}
		})
	}
}

// TestSklearnParity compares with scikit-learn 1.2.1 IsolationForest
// (n_estimators=100, max_samples=256) on the identical dataset, as printed by
// scripts/bench_sklearn.py over random_state 0..9:
//
//	ROC-AUC       mean 0.9885, range 0.9877 .. 0.9901
//	score(0,0,0)  mean 0.3642, range 0.3599 .. 0.3689
//	score(4,4,4)  mean 0.7277, range 0.7101 .. 0.7500
//
// The bounds below allow for seed-to-seed variation of our own forest.
func TestSklearnParity(t *testing.T) {
	t.Parallel()
	rows, outlier := parityDataset()
	cases := []struct {
		name   string
		metric func(f *Forest) float64
		lo, hi float64
		why    string
	}{
		{"auc", func(f *Forest) float64 {
			s := make([]float64, len(rows))
			for i, r := range rows {
				s[i] = f.Score(r)
			}
			return rocAUC(s, outlier)
		}, 0.975, 1, "ranks outliers like sklearn (0.9885) and well above 0.9"},
		{"centre", func(f *Forest) float64 { return f.Score([]float64{0, 0, 0}) }, 0.34, 0.39, "sklearn scores the centre 0.36"},
		{"far", func(f *Forest) float64 { return f.Score([]float64{4, 4, 4}) }, 0.68, 0.78, "sklearn scores (4,4,4) 0.73"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for seed := range uint64(5) {
				f := mustTrain(t, rows, Config{Seed: seed})
				got := tc.metric(f)
				t.Logf("seed %d: %s = %.4f", seed, tc.name, got)
				if got < tc.lo || got > tc.hi {
					t.Errorf("seed %d: %s = %.4f, want in [%v, %v] (%s)", seed, tc.name, got, tc.lo, tc.hi, tc.why)
				}
			}
		})
	}
}

// TestRowsCloserThanFloat32 trains on a feature whose values differ by less than float32 can
// tell apart (a rate like −0.105360515 ± 1e-10, as a worker met): the thresholds cannot fall
// between the rows, yet every model must still be valid and read back.
func TestRowsCloserThanFloat32(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 7))
	// Just under a float32 value g: the float32 just under the rows is a whole step (7e-9)
	// below them, while their range around g is a few 1e-10.
	g := float64(float32(-0.105360515))
	rows := make([][]float64, 600)
	for i := range rows {
		rows[i] = []float64{g - 1e-10*float64(1+rng.IntN(5)), rng.NormFloat64()}
	}
	for seed := range uint64(20) {
		f := mustTrain(t, rows, Config{Seed: seed})
		data, err := f.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var g Forest
		if err := g.UnmarshalBinary(data); err != nil {
			t.Fatalf("seed %d: the model does not read back: %v", seed, err)
		}
		if s := g.ScoreExtended(rows[0]); !(s > 0 && s <= 1) {
			t.Fatalf("seed %d: score %v", seed, s)
		}
	}
}
