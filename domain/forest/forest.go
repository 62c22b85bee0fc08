package forest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
)

// Default configuration values, used when the corresponding Config field is zero.
const (
	// DefaultTrees is the number of trees grown when Config.Trees is zero.
	DefaultTrees = 100
	// DefaultSampleSize is the subsample size per tree when Config.SampleSize is zero.
	DefaultSampleSize = 256
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

// ErrInvalidConfig is returned by Train when a Config field is negative or the forest would be too large.
var ErrInvalidConfig = errors.New("forest: invalid config")

// ErrInvalidModel is returned when binary model data is truncated, corrupt or of an unsupported version, or when an untrained Forest is marshalled.
var ErrInvalidModel = errors.New("forest: invalid model")

// Config holds the training parameters; a zero Config is valid and means the defaults.
type Config struct {
	// Trees is the number of isolation trees; zero means DefaultTrees (100).
	Trees int
	// SampleSize is the number of rows drawn without replacement for each
	// tree; zero means DefaultSampleSize (256). If there are fewer rows,
	// all rows are used.
	SampleSize int
	// Seed seeds the random source; equal rows, Config and Seed give an identical forest.
	Seed uint64
}

// node is one tree node in the flat, pre-order node array.
//
// For an internal node, value is the split threshold (x[feature] < value goes
// left, to the next node in the array; otherwise it goes to index right), and
// lo, hi are the range of the node's training rows on the split feature (used
// by ScoreExtended). For a leaf, feature is -1, value is the precomputed path
// length depth + AveragePathLength(leaf size), and lo holds the depth.
type node struct {
	value   float64
	lo, hi  float64
	feature int32
	right   int32
}

// Forest is a trained Isolation Forest; obtain one from Train or UnmarshalBinary.
//
// A trained Forest is never modified by Score, PathFeatures, MarshalBinary or
// the accessors, so they are safe for concurrent use; UnmarshalBinary replaces
// the receiver and must not run concurrently with them. The zero Forest has no
// trees and scores every input as NaN.
type Forest struct {
	nodes      []node  // all trees, each stored contiguously in pre-order
	roots      []int32 // index of each tree's root in nodes
	dims       int     // number of features per sample
	sampleSize int     // subsample size actually used per tree
	invNorm    float64 // 1 / (trees * c(sampleSize)), or 0 when c(sampleSize) == 0
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
// Train does not retain rows.
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
	if trees < 0 || psi < 0 {
		return 0, 0, 0, fmt.Errorf("Trees=%d, SampleSize=%d must not be negative: %w", trees, psi, ErrInvalidConfig)
	}
	if trees == 0 {
		trees = DefaultTrees
	}
	if psi == 0 {
		psi = DefaultSampleSize
	}
	psi = min(psi, len(rows))
	if trees > maxNodes || uint64(trees)*uint64(2*psi-1) > maxNodes {
		return 0, 0, 0, fmt.Errorf("%d trees of up to %d nodes exceed %d nodes: %w", trees, 2*psi-1, maxNodes, ErrInvalidConfig)
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
		for t, root := range f.roots {
			if inBag[t*words+i/64]&(1<<(i%64)) != 0 {
				continue
			}
			sum += f.treePath(root, r)
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
		roots:      make([]int32, trees),
		dims:       dims,
		sampleSize: psi,
	}
	words := (len(rows) + 63) / 64
	var nodes []node
	for t := range trees {
		f.roots[t] = int32(len(nodes))
		nodes = b.tree(nodes)
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
	// Depth-limited trees use far fewer than the 2*psi-1 possible nodes
	// (about 130 of 511 for psi = 256), so keep an exactly sized copy.
	f.nodes = slices.Clone(nodes)
	f.setNorm()
	return f
}

// treePath returns the path length of x in the tree rooted at root.
func (f *Forest) treePath(root int32, x []float64) float64 {
	nodes := f.nodes
	i := root
	for {
		nd := &nodes[i]
		if nd.feature < 0 {
			return nd.value
		}
		i = nd.child(i, x[nd.feature])
	}
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
	sub      []float64 // the current subsample, row-major psi x dims
	idx      []int32   // subsample row indices, partitioned in place while growing
	feats    []int32   // feature permutation, for drawing features without replacement
	nodes    []node
	leafBase []float64 // c(n) for n in [0, psi]
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
		leafBase: make([]float64, psi+1),
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
	for n := range b.leafBase {
		b.leafBase[n] = AveragePathLength(n)
	}
	return b
}

// tree draws a subsample, grows one tree on it and appends its nodes to dst.
func (b *builder) tree(dst []node) []node {
	if b.perm == nil {
		for i, r := range b.rows {
			copy(b.sub[i*b.dims:], r)
		}
	} else {
		// Partial Fisher–Yates: the first psi entries of perm become a
		// uniform sample without replacement.
		n := len(b.perm)
		for i := range b.psi {
			j := i + b.rng.IntN(n-i)
			b.perm[i], b.perm[j] = b.perm[j], b.perm[i]
			copy(b.sub[i*b.dims:], b.rows[b.perm[i]])
		}
	}
	for i := range b.idx {
		b.idx[i] = int32(i)
	}
	b.nodes = dst
	b.grow(0, b.psi, 0)
	return b.nodes
}

// grow appends the subtree for idx[lo:hi] at the given depth in pre-order.
func (b *builder) grow(lo, hi, depth int) {
	n := hi - lo
	if depth >= b.maxDepth || n <= 1 {
		b.leaf(n, depth)
		return
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
		b.leaf(n, depth)
		return
	}

	// Uniform in [lowest, highest). The convex form cannot overflow; the
	// clamps keep both children non-empty despite rounding (a draw of
	// exactly lowest would leave the left child empty).
	u := b.rng.Float64()
	split := lowest*(1-u) + highest*u
	if !(split > lowest) || split > highest {
		split = highest
	}

	// Partition: x < split to the front.
	mid := 0
	for i, r := range idx {
		if sub[int(r)*dims+feat] < split {
			idx[i], idx[mid] = idx[mid], idx[i]
			mid++
		}
	}

	self := len(b.nodes)
	b.nodes = append(b.nodes, node{value: split, lo: lowest, hi: highest, feature: int32(feat)})
	b.grow(lo, lo+mid, depth+1)
	b.nodes[self].right = int32(len(b.nodes))
	b.grow(lo+mid, hi, depth+1)
}

// leaf appends a leaf holding n training rows at the given depth.
func (b *builder) leaf(n, depth int) {
	b.nodes = append(b.nodes, node{value: float64(depth) + b.leafBase[n], lo: float64(depth), feature: -1, right: -1})
}

// Dims returns the number of features each sample must have.
func (f *Forest) Dims() int { return f.dims }

// SampleSize returns the subsample size actually used per tree: Config.SampleSize, or the number of training rows if that was smaller.
func (f *Forest) SampleSize() int { return f.sampleSize }

// Trees returns the number of trees in the forest.
func (f *Forest) Trees() int { return len(f.roots) }

// Score returns the anomaly score 2^(-E[h(x)]/c(SampleSize())) of x, in (0, 1].
//
// Scores near 1 mean x is isolated quickly (anomalous); scores well below
// 0.5 mean x is hard to isolate (normal). If len(x) != f.Dims(), or the
// forest has no trees, Score returns NaN. If the forest was trained on a
// single row, every score is 0.5 (scikit-learn's convention). NaN values in
// x are not checked; they compare false and follow the right branch.
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

// totalPath returns the sum over all trees of the path length of x.
func (f *Forest) totalPath(x []float64) float64 {
	var sum float64
	for _, root := range f.roots {
		sum += f.treePath(root, x)
	}
	return sum
}

// ScoreExtended is Score for novelty detection: it also isolates points that lie outside the
// training data, which Score cannot do.
//
// A forest trained on clean data sends a point far beyond every training value down the same
// branches as the most extreme training rows, so Score rates it no higher than those rows.
// Had the point been in the subsample, a split on that feature, drawn uniformly in the node's
// range extended to the point, would have cut it off with probability p = gap/(extended range).
// ScoreExtended takes that expectation along the path: at each split whose feature x lies
// outside the node's training range, x is isolated with probability p, and otherwise continues
// down the trained branch. A cut-off there is credited at depth + 1 − p rather than depth + 1:
// barely outside the range it costs the split it takes, infinitely far out it costs nothing,
// so that the farther out a point lies the higher it scores, up to 1, instead of every point
// beyond the data tying at the score of isolation by the first split (about 0.93 for 256-row
// subsamples). For x inside every node's range it equals Score exactly, so training rows score
// the same under both. It returns NaN under the same conditions as Score and does not
// allocate.
func (f *Forest) ScoreExtended(x []float64) float64 {
	if len(x) != f.dims || len(f.roots) == 0 {
		return math.NaN()
	}
	if f.invNorm == 0 {
		return 0.5
	}
	nodes := f.nodes
	var sum float64
	for _, root := range f.roots {
		i := root
		stay, h, depth := 1.0, 0.0, 0.0
		for {
			nd := &nodes[i]
			if nd.feature < 0 {
				h += stay * nd.value
				break
			}
			v := x[nd.feature]
			if p := nd.cutOff(v); p > 0 {
				h += stay * p * (depth + 1 - p)
				stay *= 1 - p
			}
			depth++
			i = nd.child(i, v)
		}
		sum += h
	}
	return math.Exp2(-sum * f.invNorm)
}

// PathFeatures reports how much each feature contributed to isolating x.
//
// For every tree it walks x to its leaf, credits each split feature on that
// path with 1/h, where h is the path length of that leaf (so features on
// short isolation paths count more), and finally normalises out to sum to 1.
// out must have length f.Dims() and is overwritten. If len(x) or len(out)
// differs from f.Dims(), every element of out is set to NaN. If no tree
// splits on the way to x (for example all training rows were identical),
// out is left all zero. PathFeatures does not allocate.
func (f *Forest) PathFeatures(x []float64, out []float64) {
	if len(x) != f.dims || len(out) != f.dims {
		for i := range out {
			out[i] = math.NaN()
		}
		return
	}
	clear(out)
	nodes := f.nodes
	for _, root := range f.roots {
		// First walk: find the path length h of x's leaf.
		i := root
		for nodes[i].feature >= 0 {
			if x[nodes[i].feature] < nodes[i].value {
				i++
			} else {
				i = nodes[i].right
			}
		}
		h := nodes[i].value
		if h <= 0 {
			continue // root is a leaf: no split to credit
		}
		w := 1 / h
		// Second walk: credit every split feature on the path.
		i = root
		for nodes[i].feature >= 0 {
			feat := nodes[i].feature
			out[feat] += w
			if x[feat] < nodes[i].value {
				i++
			} else {
				i = nodes[i].right
			}
		}
	}
	normalise(out)
}

// child returns the index of the child of node i (this node) that v goes to: the left one,
// the next node, when v < value, else the right one. It is chosen without a branch, since
// which side a sample goes is unpredictable: the sign bit of v − value is 1 exactly when
// v < value (v is never NaN, and a difference is zero only between equal values).
func (nd *node) child(i int32, v float64) int32 {
	left := int32(math.Float64bits(v-nd.value) >> 63)
	return nd.right + left*(i+1-nd.right)
}

// cutOff is the probability that a split of this node, drawn in its training range extended
// to v, would cut v off alone: 0 when v lies inside the range.
func (nd *node) cutOff(v float64) float64 {
	switch {
	case v > nd.hi:
		return (v - nd.hi) / (v - nd.lo)
	case v < nd.lo:
		return (nd.lo - v) / (nd.hi - v)
	}
	return 0
}

// normalise scales out to sum 1, leaving it alone when it sums to 0.
func normalise(out []float64) {
	var total float64
	for _, v := range out {
		total += v
	}
	if total > 0 {
		inv := 1 / total
		for i := range out {
			out[i] *= inv
		}
	}
}

// Binary format (all integers little-endian):
//
//	magic      [4]byte  "IFOR"
//	version    uint32   2
//	dims       uint32
//	sampleSize uint32
//	trees      uint32
//	nodes      uint32
//	roots      trees  x uint32
//	nodes      nodes  x {value, lo, hi float64 bits, feature int32, right int32}
//	crc        uint32   CRC-32 (IEEE) of every preceding byte
const (
	magic         = "IFOR"
	formatVersion = 2
	headerSize    = 4 + 5*4
	nodeSize      = 32
	crcSize       = 4
)

// MarshalBinary encodes the forest in a versioned, checksummed binary format; it implements encoding.BinaryMarshaler.
func (f *Forest) MarshalBinary() ([]byte, error) {
	if len(f.roots) == 0 || f.dims <= 0 {
		return nil, fmt.Errorf("cannot marshal an untrained forest: %w", ErrInvalidModel)
	}
	buf := make([]byte, 0, headerSize+4*len(f.roots)+nodeSize*len(f.nodes)+crcSize)
	buf = append(buf, magic...)
	le := binary.LittleEndian
	buf = le.AppendUint32(buf, formatVersion)
	buf = le.AppendUint32(buf, uint32(f.dims))
	buf = le.AppendUint32(buf, uint32(f.sampleSize))
	buf = le.AppendUint32(buf, uint32(len(f.roots)))
	buf = le.AppendUint32(buf, uint32(len(f.nodes)))
	for _, r := range f.roots {
		buf = le.AppendUint32(buf, uint32(r))
	}
	for _, nd := range f.nodes {
		buf = le.AppendUint64(buf, math.Float64bits(nd.value))
		buf = le.AppendUint64(buf, math.Float64bits(nd.lo))
		buf = le.AppendUint64(buf, math.Float64bits(nd.hi))
		buf = le.AppendUint32(buf, uint32(nd.feature))
		buf = le.AppendUint32(buf, uint32(nd.right))
	}
	buf = le.AppendUint32(buf, crc32.ChecksumIEEE(buf))
	return buf, nil
}

// UnmarshalBinary replaces f with the forest encoded in data by MarshalBinary; it implements encoding.BinaryUnmarshaler.
//
// It validates the header, checksum and tree structure and returns an error
// wrapping ErrInvalidModel, leaving f unchanged, if data is truncated,
// corrupt or of an unsupported version. It never panics.
func (f *Forest) UnmarshalBinary(data []byte) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrInvalidModel)
	}
	if len(data) < headerSize+crcSize {
		return bad("%d bytes is shorter than the %d-byte header", len(data), headerSize+crcSize)
	}
	if string(data[:4]) != magic {
		return bad("bad magic %q", data[:4])
	}
	le := binary.LittleEndian
	if v := le.Uint32(data[4:]); v != formatVersion {
		return bad("unsupported format version %d (want %d)", v, formatVersion)
	}
	dims := uint64(le.Uint32(data[8:]))
	psi := uint64(le.Uint32(data[12:]))
	trees := uint64(le.Uint32(data[16:]))
	count := uint64(le.Uint32(data[20:]))
	want := uint64(headerSize) + 4*trees + nodeSize*count + crcSize
	if uint64(len(data)) != want {
		return bad("length %d, header implies %d", len(data), want)
	}
	body := data[:len(data)-crcSize]
	if got, sum := crc32.ChecksumIEEE(body), le.Uint32(data[len(body):]); got != sum {
		return bad("checksum mismatch")
	}
	switch {
	case dims == 0 || dims > math.MaxInt32:
		return bad("dims %d out of range", dims)
	case psi == 0 || psi > math.MaxInt32:
		return bad("sample size %d out of range", psi)
	case trees == 0 || count < trees || count > maxNodes:
		return bad("%d trees with %d nodes", trees, count)
	}

	g := &Forest{
		nodes:      make([]node, count),
		roots:      make([]int32, trees),
		dims:       int(dims),
		sampleSize: int(psi),
	}
	p := data[headerSize:]
	for t := range g.roots {
		g.roots[t] = int32(le.Uint32(p[4*t:]))
	}
	p = p[4*trees:]
	for i := range g.nodes {
		q := p[nodeSize*i:]
		g.nodes[i] = node{
			value:   math.Float64frombits(le.Uint64(q)),
			lo:      math.Float64frombits(le.Uint64(q[8:])),
			hi:      math.Float64frombits(le.Uint64(q[16:])),
			feature: int32(le.Uint32(q[24:])),
			right:   int32(le.Uint32(q[28:])),
		}
	}
	// Structure: tree t owns nodes [roots[t], roots[t+1]). Every child index
	// is strictly greater than its parent's and inside the tree, so every walk
	// terminates at a leaf without leaving the array.
	if g.roots[0] != 0 {
		return bad("first root at %d, want 0", g.roots[0])
	}
	for t := range g.roots {
		start, end := int64(g.roots[t]), int64(count)
		if t+1 < len(g.roots) {
			end = int64(g.roots[t+1])
		}
		if end <= start {
			return bad("tree %d has node range [%d, %d)", t, start, end)
		}
		for i := start; i < end; i++ {
			nd := g.nodes[i]
			if !finite(nd.value) || !finite(nd.lo) || !finite(nd.hi) {
				return bad("node %d has non-finite value", i)
			}
			if nd.feature < 0 {
				if nd.feature != -1 || nd.right != -1 || nd.value < 0 {
					return bad("node %d is a malformed leaf", i)
				}
				continue
			}
			if !(nd.lo <= nd.value && nd.value <= nd.hi && nd.lo < nd.hi) {
				return bad("node %d split %v outside its range [%v, %v]", i, nd.value, nd.lo, nd.hi)
			}
			if uint64(nd.feature) >= dims {
				return bad("node %d splits on feature %d of %d", i, nd.feature, dims)
			}
			if r := int64(nd.right); r <= i+1 || r >= end {
				return bad("node %d has right child %d outside (%d, %d)", i, r, i+1, end)
			}
		}
	}
	g.setNorm()
	*f = *g
	return nil
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
