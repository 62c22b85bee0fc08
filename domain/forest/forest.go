package forest

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"unsafe"
)

// Default configuration values, used when the corresponding Config field is zero.
const (
	// DefaultTrees is the number of trees grown when Config.Trees is zero.
	DefaultTrees = 100
	// DefaultSampleSize is the subsample size per tree when Config.SampleSize is zero.
	DefaultSampleSize = 256
)

// Limits of the compact node layout (see split).
const (
	// MaxSampleSize is the largest Config.SampleSize: a tree's links to its nodes are 11 bits.
	MaxSampleSize = 2048
	// MaxDims is the most features a forest can split on: a node names its feature in 8 bits.
	MaxDims = 256
	// MaxDepth is the most splits on a path: training stops at ceil(log2(SampleSize)) splits,
	// 11 for MaxSampleSize, and Score's walk counts each tree's depth in a byte.
	MaxDepth = 11
)

// eulerGamma is the Euler–Mascheroni constant used by AveragePathLength.
const eulerGamma = 0.5772156649015329

// seedStream is the fixed second word of the PCG seed; only Config.Seed varies.
const seedStream = 0x9E3779B97F4A7C15

// maxNodes bounds the total number of nodes so that int32 indices never overflow.
const maxNodes = math.MaxInt32

// ErrNoData is returned by Train when it is given no rows.
var ErrNoData = errors.New("forest: no training data")

// ErrDimensionMismatch is returned by Train when a row is empty or rows have different lengths.
var ErrDimensionMismatch = errors.New("forest: dimension mismatch")

// ErrNonFinite is returned by Train when a training value is NaN or infinite.
var ErrNonFinite = errors.New("forest: non-finite value")

// ErrInvalidConfig is returned by Train when a Config field is negative or beyond the layout's
// limits (MaxSampleSize, MaxDims), or the forest would be too large.
var ErrInvalidConfig = errors.New("forest: invalid config")

// ErrInvalidModel is returned when binary model data is truncated, corrupt or of an unsupported version, or when an untrained Forest is marshalled.
var ErrInvalidModel = errors.New("forest: invalid model")

// Config holds the training parameters; a zero Config is valid and means the defaults.
type Config struct {
	// Trees is the number of isolation trees; zero means DefaultTrees (100).
	Trees int
	// SampleSize is the number of rows drawn without replacement for each
	// tree; zero means DefaultSampleSize (256), at most MaxSampleSize. If
	// there are fewer rows, all rows are used.
	SampleSize int
	// Seed seeds the random source; equal rows, Config and Seed give an identical forest.
	Seed uint64
}

// split is one internal node of a tree: 12 bytes. A sample goes to the left child when
// x[feature] < at (see left), else to the right one; [at − below, at + above] covers the range of
// the node's training rows on that feature (each distance rounded up to 16 bits, see span16),
// which ScoreExtended uses. link packs the feature (bits 24–31) and the references of the left
// (12–23) and right (0–11) children. A reference is either the tree-local index of another
// split, which always comes after its parent (pre-order), or leafFlag | (n−1) for a leaf of n
// training rows, whose path length is its depth + c(n). Leaves take no space of their own.
type split struct {
	at           float32
	below, above span
	link         uint32
}

// newSplit returns the split at at on feature feat of a node whose rows range over
// [lowest, highest] on it (within ±MaxFloat32); its children are linked afterwards. The
// range covers at as well: rows closer together than float32 can tell apart may leave no
// float32 threshold between them (see threshold32).
func newSplit(feat int, at float32, lowest, highest float64) split {
	return split{
		at:    at,
		below: span16(float64(at) - lowest),
		above: span16(highest - float64(at)),
		link:  uint32(feat) << 24,
	}
}

// span is a distance d ≥ 0 in 16 bits: the upper half of its float32 (8 bits of exponent, 8
// of mantissa), rounded up, so it is never shorter than d and at most 1/256 of d longer.
// Distances beyond float32, and spanInf, are infinite; above spanInf is no distance.
type span uint16

const spanInf span = 0xFF00

// span16 returns the span of d, 0 for d ≤ 0.
func span16(d float64) span {
	if !(d > 0) {
		return 0
	}
	return span(min((uint64(math.Float32bits(ceil32(min(d, math.MaxFloat32))))+1<<15-1)>>15, uint64(spanInf)))
}

// float returns the distance s stands for.
func (s span) float() float64 { return float64(math.Float32frombits(uint32(s) << 15)) }

// bounds returns the node's training range on the split's feature, rounded outwards.
func (s *split) bounds() (lo, hi float64) {
	return float64(s.at) - s.below.float(), float64(s.at) + s.above.float()
}

// Child references.
const (
	leafFlag = 1 << 11
	refMask  = 1<<12 - 1
	leafMask = leafFlag - 1
)

// leafPath holds c(n) at n−1, for a leaf reference's low bits.
var leafPath = func() (c [MaxSampleSize]float64) {
	for i := range c {
		c[i] = AveragePathLength(i + 1)
	}
	return c
}()

// leafRef is the reference of a leaf of n training rows (n ≥ 1).
func leafRef(n int) uint32 { return leafFlag | uint32(max(n, 1)-1) }

// feature returns the feature the split tests.
func (s *split) feature() int { return int(s.link >> 24) }

// next returns the reference of the child that v goes to. It is chosen without a branch,
// since which side a sample goes is unpredictable.
func (s *split) next(v float64) uint32 {
	return s.link >> (left(v, s.at) * 12) & refMask
}

// left is 1 when v goes to the left of a split at at, else 0: when v − at is negative, that
// is when v < at (thresholds are never +0, the one value where they would differ, for v
// −0). The sign bit decides without a branch.
func left(v float64, at float32) uint32 { return uint32(math.Float64bits(v-float64(at)) >> 63) }

// cutOff is the probability that a split of this node, drawn in its training range extended
// to v, would cut v off alone: 0 when v lies inside the range, else the gap between v and the
// range over the extended range. ScoreExtended spells the same sum out in its walk.
func (s *split) cutOff(v float64) float64 {
	lo, hi := s.bounds()
	gap := max(lo-v, v-hi, 0)
	if gap == 0 {
		return 0
	}
	return gap / (hi - lo + gap)
}

// Forest is a trained Isolation Forest; obtain one from Train or UnmarshalBinary.
//
// A trained Forest is never modified by Score, PathFeatures, MarshalBinary or
// the accessors, so they are safe for concurrent use; UnmarshalBinary replaces
// the receiver and must not run concurrently with them. The zero Forest has no
// trees and scores every input as NaN.
type Forest struct {
	splits     []split  // all trees' splits, each tree contiguous and in pre-order
	starts     []int32  // index in splits of each tree's first split
	roots      []uint16 // each tree's root reference: its first split, or a leaf
	depth      int      // the most splits on any path
	dims       int      // number of features per sample
	sampleSize int      // subsample size actually used per tree
	invNorm    float64  // 1 / (trees * c(sampleSize)), or 0 when c(sampleSize) == 0
}

// AveragePathLength returns c(n), the average path length of an unsuccessful
// binary-search-tree lookup among n points, as defined by scikit-learn:
// 0 for n <= 1, 1 for n == 2, and 2*(ln(n-1)+γ) - 2*(n-1)/n otherwise.
func AveragePathLength(n int) float64 {
	switch {
	case n <= 1:
		return 0
	case n == 2:
		return 1
	}
	fn := float64(n)
	return 2*(math.Log(fn-1)+eulerGamma) - 2*(fn-1)/fn
}

// Train builds a forest from rows (each row one sample, all the same length >= 1).
//
// It returns ErrNoData, ErrDimensionMismatch, ErrNonFinite or
// ErrInvalidConfig (wrapped with context) when the input cannot be used.
// Values beyond ±math.MaxFloat32 are trained on as ±math.MaxFloat32: the
// trees keep their splits in float32. Train does not retain rows.
func Train(rows [][]float64, cfg Config) (*Forest, error) {
	dims, trees, psi, err := check(rows, cfg)
	if err != nil {
		return nil, err
	}
	return train(rows, dims, trees, psi, cfg.Seed, nil), nil
}

// check validates Train's input and returns the dimensions, tree count and subsample size.
func check(rows [][]float64, cfg Config) (dims, trees, psi int, err error) {
	if len(rows) == 0 {
		return 0, 0, 0, ErrNoData
	}
	dims = len(rows[0])
	if dims == 0 {
		return 0, 0, 0, fmt.Errorf("row 0 has no values: %w", ErrDimensionMismatch)
	}
	if dims > MaxDims {
		return 0, 0, 0, fmt.Errorf("%d features, at most %d: %w", dims, MaxDims, ErrInvalidConfig)
	}
	for i, r := range rows {
		if len(r) != dims {
			return 0, 0, 0, fmt.Errorf("row %d has %d values, row 0 has %d: %w", i, len(r), dims, ErrDimensionMismatch)
		}
		for j, v := range r {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return 0, 0, 0, fmt.Errorf("row %d, feature %d is %v: %w", i, j, v, ErrNonFinite)
			}
		}
	}

	trees, psi = cfg.Trees, cfg.SampleSize
	if trees < 0 || psi < 0 || psi > MaxSampleSize {
		return 0, 0, 0, fmt.Errorf("Trees=%d, SampleSize=%d: neither may be negative, SampleSize at most %d: %w", trees, psi, MaxSampleSize, ErrInvalidConfig)
	}
	if trees == 0 {
		trees = DefaultTrees
	}
	if psi == 0 {
		psi = DefaultSampleSize
	}
	psi = min(psi, len(rows))
	if trees > maxNodes || uint64(trees)*uint64(psi) > maxNodes {
		return 0, 0, 0, fmt.Errorf("%d trees of up to %d nodes exceed %d nodes: %w", trees, psi-1, maxNodes, ErrInvalidConfig)
	}
	return dims, trees, psi, nil
}

// TrainOOB is Train that also returns, for every training row, its out-of-bag score: the
// score over the trees whose subsample did not hold the row, an honest estimate of how the
// forest scores new samples like it (a row scores lower in the trees that were grown on it).
// A row that every tree sampled (when there are no more rows than SampleSize) gets its score
// over every tree. The forest is the one Train returns for the same rows and Config.
func TrainOOB(rows [][]float64, cfg Config) (*Forest, []float64, error) {
	dims, trees, psi, err := check(rows, cfg)
	if err != nil {
		return nil, nil, err
	}
	words := (len(rows) + 63) / 64
	inBag := make([]uint64, trees*words)
	f := train(rows, dims, trees, psi, cfg.Seed, inBag)
	scores := make([]float64, len(rows))
	c := AveragePathLength(f.sampleSize)
	for i, r := range rows {
		var sum float64
		n := 0
		for t := range f.roots {
			if inBag[t*words+i/64]&(1<<(i%64)) != 0 {
				continue
			}
			sum += f.pathLength(t, r)
			n++
		}
		switch {
		case c == 0:
			scores[i] = 0.5
		case n == 0:
			scores[i] = f.Score(r)
		default:
			scores[i] = math.Exp2(-sum / float64(n) / c)
		}
	}
	return f, scores, nil
}

// train grows trees trees of psi rows each; with inBag (one bitset of len(rows) bits per
// tree) it marks the rows each tree sampled.
func train(rows [][]float64, dims, trees, psi int, seed uint64, inBag []uint64) *Forest {
	b := newBuilder(rows, psi, seed)
	f := &Forest{
		starts:     make([]int32, trees),
		roots:      make([]uint16, trees),
		dims:       dims,
		sampleSize: psi,
	}
	words := (len(rows) + 63) / 64
	for t := range trees {
		f.starts[t] = int32(len(b.splits))
		f.roots[t] = uint16(b.tree())
		if inBag != nil {
			bag := inBag[t*words : (t+1)*words]
			if b.perm == nil {
				for i := range rows {
					bag[i/64] |= 1 << (i % 64)
				}
			} else {
				for _, i := range b.perm[:psi] {
					bag[i/64] |= 1 << (i % 64)
				}
			}
		}
	}
	// Depth-limited trees use far fewer than the psi−1 possible splits (about 93 of 255
	// for psi = 256), so keep an exactly sized copy.
	f.splits = slices.Clone(b.splits)
	f.depth = b.deepest
	f.setNorm()
	return f
}

// setNorm precomputes the score normaliser from the tree count and sample size.
func (f *Forest) setNorm() {
	f.invNorm = 0
	if c := AveragePathLength(f.sampleSize); c > 0 && len(f.roots) > 0 {
		f.invNorm = 1 / (float64(len(f.roots)) * c)
	}
}

// builder holds the reusable scratch state for growing trees.
type builder struct {
	rows     [][]float64
	dims     int
	psi      int
	maxDepth int
	rng      *rand.Rand
	perm     []int     // permutation of all row indices, for sampling without replacement
	sub      []float64 // the current subsample, row-major psi x dims, within ±MaxFloat32
	idx      []int32   // subsample row indices, partitioned in place while growing
	feats    []int32   // feature permutation, for drawing features without replacement
	splits   []split   // every tree's splits so far
	base     int       // index in splits of the current tree's first split
	deepest  int       // the most splits on a path so far
}

// newBuilder allocates the scratch state for growing trees of psi rows each.
func newBuilder(rows [][]float64, psi int, seed uint64) *builder {
	dims := len(rows[0])
	b := &builder{
		rows: rows,
		dims: dims,
		psi:  psi,
		// ceil(log2(max(psi, 2))), computed exactly on integers.
		maxDepth: bits.Len(uint(max(psi, 2) - 1)),
		rng:      rand.New(rand.NewPCG(seed, seedStream)),
		sub:      make([]float64, psi*dims),
		idx:      make([]int32, psi),
		feats:    make([]int32, dims),
	}
	if psi < len(rows) {
		b.perm = make([]int, len(rows))
		for i := range b.perm {
			b.perm[i] = i
		}
	}
	for j := range b.feats {
		b.feats[j] = int32(j)
	}
	return b
}

// tree draws a subsample, grows one tree on it, appends its splits and returns its root.
func (b *builder) tree() uint32 {
	if b.perm == nil {
		for i, r := range b.rows {
			clampCopy(b.sub[i*b.dims:], r)
		}
	} else {
		// Partial Fisher–Yates: the first psi entries of perm become a
		// uniform sample without replacement.
		n := len(b.perm)
		for i := range b.psi {
			j := i + b.rng.IntN(n-i)
			b.perm[i], b.perm[j] = b.perm[j], b.perm[i]
			clampCopy(b.sub[i*b.dims:], b.rows[b.perm[i]])
		}
	}
	for i := range b.idx {
		b.idx[i] = int32(i)
	}
	b.base = len(b.splits)
	return b.grow(0, b.psi, 0)
}

// clampCopy copies src into dst, each value brought within ±MaxFloat32.
func clampCopy(dst, src []float64) {
	for j, v := range src {
		dst[j] = min(max(v, -math.MaxFloat32), math.MaxFloat32)
	}
}

// grow appends the subtree for idx[lo:hi] at the given depth in pre-order and returns its
// reference.
func (b *builder) grow(lo, hi, depth int) uint32 {
	n := hi - lo
	if depth >= b.maxDepth || n <= 1 {
		return leafRef(n)
	}
	idx, sub, dims := b.idx[lo:hi], b.sub, b.dims

	// Draw features without replacement until one is not constant in the
	// node, like scikit-learn's splitter.
	feat := -1
	var lowest, highest float64
	for k := range dims {
		j := k + b.rng.IntN(dims-k)
		b.feats[k], b.feats[j] = b.feats[j], b.feats[k]
		f := int(b.feats[k])
		lowest = sub[int(idx[0])*dims+f]
		highest = lowest
		for _, r := range idx[1:] {
			v := sub[int(r)*dims+f]
			lowest = min(lowest, v)
			highest = max(highest, v)
		}
		if highest > lowest {
			feat = f
			break
		}
	}
	if feat < 0 {
		return leafRef(n)
	}

	// Uniform in [lowest, highest). The convex form cannot overflow; the clamps keep
	// both children non-empty despite rounding (a draw of exactly lowest would leave the
	// left child empty).
	u := b.rng.Float64()
	split := lowest*(1-u) + highest*u
	if !(split > lowest) || split > highest {
		split = highest
	}

	// Partition: x < split to the front, noting the largest value that goes left and
	// the smallest that goes right.
	mid, below, above := 0, lowest, highest
	for i, r := range idx {
		if v := sub[int(r)*dims+feat]; v < split {
			idx[i], idx[mid] = idx[mid], idx[i]
			mid++
			below = max(below, v)
		} else {
			above = min(above, v)
		}
	}
	at := threshold32(split, below, above)

	self := len(b.splits) - b.base
	b.splits = append(b.splits, newSplit(feat, at, lowest, highest))
	b.deepest = max(b.deepest, depth+1)
	left := b.grow(lo, lo+mid, depth+1)
	right := b.grow(lo+mid, hi, depth+1)
	b.splits[b.base+self].link |= left<<12 | right
	return uint32(self)
}

// threshold32 returns the float32 threshold of a split drawn at split, whose rows below
// it reach up to below and the others start at above: the float32 nearest split that keeps
// every row on its side (when below and above lie so close that none lies between, the one
// just under above). It is never +0, which left would not tell from −0: it is then −0, below
// which no zero lies, so left(v, at) is exactly v < at.
func threshold32(split, below, above float64) float32 {
	at := float32(split)
	if float64(at) <= below {
		at = above32(below)
	}
	if float64(at) > above {
		at = floor32(above)
	}
	if at == 0 {
		at = float32(math.Copysign(0, -1))
	}
	return at
}

// floor32 returns the largest float32 at most v, ceil32 the smallest at least v, above32 the
// smallest above v; v is within ±MaxFloat32.
func floor32(v float64) float32 {
	f := float32(v)
	if float64(f) > v {
		f = math.Nextafter32(f, float32(math.Inf(-1)))
	}
	return f
}

func ceil32(v float64) float32 {
	f := float32(v)
	if float64(f) < v {
		f = math.Nextafter32(f, float32(math.Inf(1)))
	}
	return f
}

func above32(v float64) float32 {
	f := ceil32(v)
	if float64(f) == v {
		f = math.Nextafter32(f, float32(math.Inf(1)))
	}
	return f
}

// Dims returns the number of features each sample must have.
func (f *Forest) Dims() int { return f.dims }

// SampleSize returns the subsample size actually used per tree: Config.SampleSize, or the number of training rows if that was smaller.
func (f *Forest) SampleSize() int { return f.sampleSize }

// Trees returns the number of trees in the forest.
func (f *Forest) Trees() int { return len(f.roots) }

// Splits returns the number of internal nodes of all trees; with MemoryBytes it tells what a
// model costs.
func (f *Forest) Splits() int { return len(f.splits) }

// MemoryBytes returns the bytes the forest holds on the heap: its splits and its per-tree
// index, 12 bytes a split and 6 a tree.
func (f *Forest) MemoryBytes() int {
	return cap(f.splits)*int(unsafe.Sizeof(split{})) + cap(f.starts)*4 + cap(f.roots)*2
}

// Score returns the anomaly score 2^(-E[h(x)]/c(SampleSize())) of x, in (0, 1].
//
// Scores near 1 mean x is isolated quickly (anomalous); scores well below
// 0.5 mean x is hard to isolate (normal). If len(x) != f.Dims(), or the
// forest has no trees, Score returns NaN. If the forest was trained on a
// single row, every score is 0.5 (scikit-learn's convention). NaN values in
// x are not checked; they follow one branch or the other.
// Score does not allocate.
func (f *Forest) Score(x []float64) float64 {
	if len(x) != f.dims || len(f.roots) == 0 {
		return math.NaN()
	}
	if f.invNorm == 0 {
		return 0.5
	}
	return math.Exp2(-f.totalPath(x) * f.invNorm)
}

// pathLength returns the path length of x in tree t.
func (f *Forest) pathLength(t int, x []float64) float64 {
	nodes := f.splits[f.starts[t]:]
	ref, depth := uint32(f.roots[t]), 0
	for ref&leafFlag == 0 {
		nd := &nodes[ref]
		ref = nd.next(x[nd.feature()])
		depth++
	}
	return float64(depth) + leafPath[ref&leafMask]
}
