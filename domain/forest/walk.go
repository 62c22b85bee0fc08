package forest

import "math"

// The walks below follow several trees at once, in lock-step, one level a step. A walk down
// one tree is a chain of dependent loads (the split, the feature it tests, the child), so a
// processor walking trees one after another mostly waits; independent chains side by side
// keep it busy. Which way a walk turns and where it ends are decided without a branch (a
// walk that has reached its leaf steps on with no effect until every lane is done); the one
// branch left, in ScoreExtended, is whether x lies outside a split's training range, which
// for normal samples is rare and well predicted, and skips a division.
// Score's lanes are each one integer held in a register; ScoreExtended's, which carry the
// share of x still walking and its path so far, are arrays, since its step is too large for
// the compiler to inline and a call a step would cost more than the arrays do.

// lanes is how many trees ScoreExtended follows at once; Score's walk (totalPath) follows
// eight, each lane's state one register (see lane).
const lanes = 4

// totalPath returns the sum over all trees of the path length of x. It walks eight trees at
// a time, each lane's state a single integer that the compiler keeps in a register (an
// array of lanes would live in memory, and every step of the walk would wait on a store);
// lanes past the last tree walk it again, uncounted. The sum is taken in tree order, each
// tree's depth + c(n) as a unit, so it equals a walk of one tree after another exactly.
func (f *Forest) totalPath(x []float64) float64 {
	var sum float64
	if len(f.splits) == 0 { // every tree a leaf
		for _, root := range f.roots {
			sum += leafPath[root&leafMask]
		}
		return sum
	}
	splits := f.splits
	for t := 0; t < len(f.roots); t += 8 {
		n := min(8, len(f.roots)-t)
		l0, l1, l2, l3 := f.lane(t, n, 0), f.lane(t, n, 1), f.lane(t, n, 2), f.lane(t, n, 3)
		l4, l5, l6, l7 := f.lane(t, n, 4), f.lane(t, n, 5), f.lane(t, n, 6), f.lane(t, n, 7)
		var depths uint64 // a byte a lane
		for range f.depth {
			if l0&l1&l2&l3&l4&l5&l6&l7&leafFlag != 0 {
				break
			}
			depths += walking(l0) | walking(l1)<<8 | walking(l2)<<16 | walking(l3)<<24 |
				walking(l4)<<32 | walking(l5)<<40 | walking(l6)<<48 | walking(l7)<<56
			l0, l1, l2, l3 = step(splits, x, l0), step(splits, x, l1), step(splits, x, l2), step(splits, x, l3)
			l4, l5, l6, l7 = step(splits, x, l4), step(splits, x, l5), step(splits, x, l6), step(splits, x, l7)
		}
		for k, l := range [8]uint64{l0, l1, l2, l3, l4, l5, l6, l7} {
			if k < n {
				sum += float64(depths>>(8*k)&0xFF) + leafPath[l&leafMask]
			}
		}
	}
	return sum
}

// lane is the state of a walk down tree t+k of the n trees from t (the last of them for k ≥
// n): the index in splits of the tree's first split in the high 32 bits (for a tree that is a
// leaf, the next tree's first or the forest's last: any split, so that every step reads one),
// the reference reached in the low 12. A lane at its leaf reads its tree's first split.
func (f *Forest) lane(t, n, k int) uint64 {
	tree := t + min(k, n-1)
	return uint64(min(f.starts[tree], int32(len(f.splits)-1)))<<32 | uint64(f.roots[tree])
}

// step moves lane l one split down, or leaves it at its leaf. Small enough to be inlined,
// which keeps the eight lanes in registers.
func step(splits []split, x []float64, l uint64) uint64 {
	r := uint32(l)
	m := (r>>11&1 - 1) & refMask // refMask while walking, 0 at the leaf
	nd := &splits[uint32(l>>32)+r&m&leafMask]
	return l ^ uint64((r^nd.link>>(left(x[nd.link>>24], nd.at)*12))&m)
}

// walking is 1 while lane l has not reached its leaf, else 0.
func walking(l uint64) uint64 { return uint64(uint32(l)>>11&1 ^ 1) }

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
// the same under both. It returns NaN under the same conditions as Score, and for x holding
// NaN or an infinity, and does not allocate.
func (f *Forest) ScoreExtended(x []float64) float64 {
	if len(x) != f.dims || len(f.roots) == 0 {
		return math.NaN()
	}
	if f.invNorm == 0 {
		return 0.5
	}
	if len(f.splits) == 0 {
		return math.Exp2(-f.totalPath(x) * f.invNorm)
	}
	// The expected path length h of x in a tree: of the share s of x that reaches a split,
	// s·p is cut off there, at its depth + 1 − p (p is the split's cutOff), and the rest goes
	// on; summed along the path this is Σ s·(1 − p²) over the splits, plus the share that
	// reaches the leaf times c(n).
	splits, last := f.splits, int32(len(f.splits)-1)
	var sum float64
	for t := 0; t < len(f.roots); t += lanes {
		// Each lane's split, its tree's first split, the share of x still walking (0 once
		// at the leaf) and the path length so far; lanes past the last tree walk it again,
		// uncounted.
		var at, base [lanes]int32
		var stay, h [lanes]float64
		n := min(lanes, len(f.roots)-t)
		for k := range lanes {
			tree := t + min(k, n-1)
			base[k] = min(f.starts[tree], last)
			at[k], stay[k] = base[k], 1
			if root := uint32(f.roots[tree]); root&leafFlag != 0 {
				stay[k], h[k] = 0, leafPath[root&leafMask]
			}
		}
		for range f.depth {
			for k := range lanes {
				s := stay[k]
				nd := &splits[at[k]]
				v := x[nd.feature()]
				hk := h[k] + s
				if lo, hi := nd.bounds(); v < lo || v > hi {
					gap := max(lo-v, v-hi)
					p := gap / (hi - lo + gap)
					hk -= s * p * p
					s -= s * p
				}
				next := nd.next(v)
				leaf := next >> 11 & 1
				end := float64(leaf) * s
				h[k] = hk + end*leafPath[next&leafMask]
				stay[k] = s - end
				at[k] ^= (at[k] ^ (base[k] + int32(next&leafMask))) & (int32(leaf) - 1)
			}
		}
		for k := range n {
			sum += h[k]
		}
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
	for t := range f.roots {
		nodes := f.splits[f.starts[t]:]
		// First walk: find the path length h of x's leaf.
		h := f.pathLength(t, x)
		if h <= 0 || f.roots[t]&leafFlag != 0 {
			continue // no split to credit
		}
		w := 1 / h
		// Second walk: credit every split feature on the path.
		for ref := uint32(f.roots[t]); ref&leafFlag == 0; {
			nd := &nodes[ref]
			out[nd.feature()] += w
			ref = nd.next(x[nd.feature()])
		}
	}
	normalise(out)
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
