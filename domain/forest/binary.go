package forest

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"sort"
)

// Binary format, version 4 (all integers little-endian):
//
//	magic      [4]byte  "IFOR"
//	version    uint32   4
//	dims       uint32
//	sampleSize uint32
//	trees      uint32
//	splits     uint32
//	trees      trees  x {start uint32, root uint32}
//	splits     splits x {at float32 bits, below, above uint16, link uint32} (see split)
//	crc        uint32   CRC-32 (IEEE) of every preceding byte
//
// Version 3, read and converted, held each split's range as mid ± half:
//
//	splits     splits x {at, mid, half float32 bits, link uint32}
//
// Version 2, read and converted, held every node, leaves included, in float64:
//
//	header as above, then nodes uint32 in place of splits
//	roots      trees  x uint32
//	nodes      nodes  x {value, lo, hi float64 bits, feature int32, right int32}
const (
	magic         = "IFOR"
	formatVersion = 4
	headerSize    = 4 + 5*4
	treeSize      = 8
	splitSize     = 12
	crcSize       = 4

	v3SplitSize = 16
	v2NodeSize  = 32
)

// MarshalBinary encodes the forest in a versioned, checksummed binary format; it implements encoding.BinaryMarshaler.
func (f *Forest) MarshalBinary() ([]byte, error) {
	if len(f.roots) == 0 || f.dims <= 0 {
		return nil, fmt.Errorf("cannot marshal an untrained forest: %w", ErrInvalidModel)
	}
	buf := make([]byte, 0, headerSize+treeSize*len(f.roots)+splitSize*len(f.splits)+crcSize)
	buf = append(buf, magic...)
	le := binary.LittleEndian
	buf = le.AppendUint32(buf, formatVersion)
	buf = le.AppendUint32(buf, uint32(f.dims))
	buf = le.AppendUint32(buf, uint32(f.sampleSize))
	buf = le.AppendUint32(buf, uint32(len(f.roots)))
	buf = le.AppendUint32(buf, uint32(len(f.splits)))
	for t, root := range f.roots {
		buf = le.AppendUint32(buf, uint32(f.starts[t]))
		buf = le.AppendUint32(buf, uint32(root))
	}
	for _, s := range f.splits {
		buf = le.AppendUint32(buf, math.Float32bits(s.at))
		buf = le.AppendUint16(buf, uint16(s.below))
		buf = le.AppendUint16(buf, uint16(s.above))
		buf = le.AppendUint32(buf, s.link)
	}
	buf = le.AppendUint32(buf, crc32.ChecksumIEEE(buf))
	return buf, nil
}

// UnmarshalBinary replaces f with the forest encoded in data by MarshalBinary; it implements encoding.BinaryUnmarshaler.
//
// It validates the header, checksum and tree structure and returns an error
// wrapping ErrInvalidModel, leaving f unchanged, if data is truncated,
// corrupt or of an unsupported version. It never panics. A model of version
// 3 is converted: its ranges are rounded outwards to 16 bits, so ScoreExtended may rate a
// point outside them a little lower (by at most 1/256 of a range's width). A model of
// version 2 (float64 nodes) is converted too: its thresholds and ranges are rounded to
// float32, so it may score a sample on a threshold's rounding differently.
func (f *Forest) UnmarshalBinary(data []byte) error {
	if len(data) < headerSize+crcSize {
		return invalid("%d bytes is shorter than the %d-byte header", len(data), headerSize+crcSize)
	}
	if string(data[:4]) != magic {
		return invalid("bad magic %q", data[:4])
	}
	le := binary.LittleEndian
	version := le.Uint32(data[4:])
	dims := uint64(le.Uint32(data[8:]))
	psi := uint64(le.Uint32(data[12:]))
	trees := uint64(le.Uint32(data[16:]))
	count := uint64(le.Uint32(data[20:]))
	var want uint64
	switch version {
	case formatVersion:
		want = uint64(headerSize) + treeSize*trees + splitSize*count + crcSize
	case 3:
		want = uint64(headerSize) + treeSize*trees + v3SplitSize*count + crcSize
	case 2:
		want = uint64(headerSize) + 4*trees + v2NodeSize*count + crcSize
	default:
		return invalid("unsupported format version %d (want %d)", version, formatVersion)
	}
	if uint64(len(data)) != want {
		return invalid("length %d, header implies %d", len(data), want)
	}
	body := data[:len(data)-crcSize]
	if got, sum := crc32.ChecksumIEEE(body), le.Uint32(data[len(body):]); got != sum {
		return invalid("checksum mismatch")
	}
	switch {
	case dims == 0 || dims > MaxDims:
		return invalid("dims %d out of range [1, %d]", dims, MaxDims)
	case psi == 0 || psi > MaxSampleSize:
		return invalid("sample size %d out of range [1, %d]", psi, MaxSampleSize)
	case trees == 0 || count > maxNodes:
		return invalid("%d trees with %d nodes", trees, count)
	}
	g := &Forest{dims: int(dims), sampleSize: int(psi)}
	p := data[headerSize:]
	if version == 2 {
		if err := g.fromV2(p, int(trees), int(count)); err != nil {
			return err
		}
	} else {
		g.starts, g.roots, g.splits = make([]int32, trees), make([]uint16, trees), make([]split, count)
		for t := range g.roots {
			start, root := le.Uint32(p[treeSize*t:]), le.Uint32(p[treeSize*t+4:])
			if uint64(start) > count || root > refMask {
				return invalid("tree %d starts at %d with root %#x", t, start, root)
			}
			g.starts[t], g.roots[t] = int32(start), uint16(root)
		}
		p = p[treeSize*trees:]
		for i := range g.splits {
			if version == 3 {
				q := p[v3SplitSize*i:]
				at, mid, half := math.Float32frombits(le.Uint32(q)), math.Float32frombits(le.Uint32(q[4:])), math.Float32frombits(le.Uint32(q[8:]))
				if !finite(float64(at)) || !finite(float64(mid)) || !finite(float64(half)) ||
					!(half > 0 && math.Abs(float64(at)-float64(mid)) <= float64(half)) {
					return invalid("split %d at %v outside its range %v ± %v", i, at, mid, half)
				}
				g.splits[i] = newSplit(0, at, float64(mid)-float64(half), float64(mid)+float64(half))
				g.splits[i].link = le.Uint32(q[12:])
				continue
			}
			q := p[splitSize*i:]
			g.splits[i] = split{
				at:    math.Float32frombits(le.Uint32(q)),
				below: span(le.Uint16(q[4:])),
				above: span(le.Uint16(q[6:])),
				link:  le.Uint32(q[8:]),
			}
		}
	}
	if err := g.validate(); err != nil {
		return err
	}
	g.setNorm()
	*f = *g
	return nil
}

// invalid returns an ErrInvalidModel with the reason.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrInvalidModel)
}

// validate checks the structure of a decoded forest and sets its depth. Tree t owns splits
// [starts[t], starts[t+1]); a tree without splits has a leaf for root, any other its first
// split. Every reference to a split points inside its tree and after its parent, so every
// walk ends at a leaf without leaving the array, and every leaf holds at most SampleSize rows;
// no path is longer than MaxDepth.
func (g *Forest) validate() error {
	if g.starts[0] != 0 {
		return invalid("first tree starts at %d, want 0", g.starts[0])
	}
	leafOK := func(ref uint32) bool { return int(ref&leafMask) < g.sampleSize }
	depth := make([]int, 0, leafFlag)
	g.depth = 0
	for t := range g.roots {
		start, end := int(g.starts[t]), len(g.splits)
		if t+1 < len(g.roots) {
			end = int(g.starts[t+1])
		}
		root := uint32(g.roots[t])
		switch {
		case end < start:
			return invalid("tree %d has split range [%d, %d)", t, start, end)
		case end-start > leafFlag-1:
			return invalid("tree %d has %d splits, at most %d", t, end-start, leafFlag-1)
		case end == start && (root&leafFlag == 0 || !leafOK(root)):
			return invalid("tree %d has no split and root %#x", t, root)
		case end > start && root != 0:
			return invalid("tree %d has root %#x, want its first split", t, root)
		}
		depth = depth[:end-start]
		// Children come after their parents: their depths are known, walking backwards.
		for j := end - start - 1; j >= 0; j-- {
			s := g.splits[start+j]
			if !finite(float64(s.at)) || s.below > spanInf || s.above > spanInf {
				return invalid("split %d has a non-finite value", start+j)
			}
			if s.below == 0 && s.above == 0 {
				return invalid("split %d at %v has an empty range", start+j, s.at)
			}
			if s.feature() >= g.dims {
				return invalid("split %d tests feature %d of %d", start+j, s.feature(), g.dims)
			}
			depth[j] = 1
			for _, ref := range [2]uint32{s.link >> 12 & refMask, s.link & refMask} {
				switch {
				case ref&leafFlag != 0:
					if !leafOK(ref) {
						return invalid("split %d has a leaf of %d rows, sample size %d", start+j, ref&leafMask+1, g.sampleSize)
					}
				case int(ref) <= j || int(ref) >= end-start:
					return invalid("split %d has child %d outside (%d, %d)", start+j, ref, j, end-start)
				default:
					depth[j] = max(depth[j], 1+depth[ref])
				}
			}
		}
		if end > start {
			g.depth = max(g.depth, depth[0])
		}
	}
	if g.depth > MaxDepth {
		return invalid("a path of %d splits, at most %d", g.depth, MaxDepth)
	}
	return nil
}

// fromV2 converts the trees and nodes of a version 2 model, p being what follows its header.
func (g *Forest) fromV2(p []byte, trees, count int) error {
	type node struct {
		value, lo, hi  float64
		feature, right int32
	}
	le := binary.LittleEndian
	roots := make([]int32, trees)
	for t := range roots {
		roots[t] = int32(le.Uint32(p[4*t:]))
	}
	p = p[4*trees:]
	nodes := make([]node, count)
	for i := range nodes {
		q := p[v2NodeSize*i:]
		nodes[i] = node{
			value:   math.Float64frombits(le.Uint64(q)),
			lo:      math.Float64frombits(le.Uint64(q[8:])),
			hi:      math.Float64frombits(le.Uint64(q[16:])),
			feature: int32(le.Uint32(q[24:])),
			right:   int32(le.Uint32(q[28:])),
		}
	}
	if len(roots) > 0 && roots[0] != 0 {
		return invalid("first root at %d, want 0", roots[0])
	}
	clamp := func(v float64) float64 { return min(max(v, -math.MaxFloat32), math.MaxFloat32) }
	g.starts, g.roots = make([]int32, trees), make([]uint16, trees)
	var convert func(i, end int32) (uint32, error)
	base := 0
	convert = func(i, end int32) (uint32, error) {
		nd := nodes[i]
		if !finite(nd.value) || !finite(nd.lo) || !finite(nd.hi) {
			return 0, invalid("node %d has non-finite value", i)
		}
		if nd.feature < 0 {
			if nd.feature != -1 || nd.right != -1 || nd.value < 0 {
				return 0, invalid("node %d is a malformed leaf", i)
			}
			// A leaf held depth + c(n), and its depth in lo: find n.
			c := nd.value - nd.lo
			n := sort.Search(g.sampleSize, func(k int) bool { return leafPath[k] >= c })
			if n == g.sampleSize || n > 0 && c-leafPath[n-1] < leafPath[n]-c {
				n--
			}
			return leafRef(max(n, 0) + 1), nil
		}
		if !(nd.lo <= nd.value && nd.value <= nd.hi && nd.lo < nd.hi) || nd.feature >= int32(g.dims) {
			return 0, invalid("node %d is a malformed split", i)
		}
		if r := nd.right; r <= i+1 || r >= end {
			return 0, invalid("node %d has right child %d outside (%d, %d)", i, r, i+1, end)
		}
		self := len(g.splits) - base
		if self >= leafFlag-1 {
			return 0, invalid("tree of node %d has more than %d splits", i, leafFlag-1)
		}
		// Rounded, the threshold stays in the range.
		lo, hi := clamp(nd.lo), clamp(nd.hi)
		at := min(max(float32(clamp(nd.value)), ceil32(lo)), floor32(hi))
		if at == 0 {
			at = float32(math.Copysign(0, -1)) // see threshold32
		}
		s := newSplit(int(nd.feature), at, lo, hi)
		g.splits = append(g.splits, s)
		left, err := convert(i+1, end)
		if err != nil {
			return 0, err
		}
		right, err := convert(nd.right, end)
		if err != nil {
			return 0, err
		}
		g.splits[base+self].link |= left<<12 | right
		return uint32(self), nil
	}
	for t, r := range roots {
		end := int32(count)
		if t+1 < trees {
			end = roots[t+1]
		}
		if r < 0 || end <= r || end > int32(count) {
			return invalid("tree %d has node range [%d, %d)", t, r, end)
		}
		base = len(g.splits)
		g.starts[t] = int32(base)
		root, err := convert(r, end)
		if err != nil {
			return err
		}
		g.roots[t] = uint16(root)
	}
	return nil
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
