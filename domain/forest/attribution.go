package forest

import "math"

// maxPath bounds the splits on a path that Attribute credits at the leaf: trees stop at
// ceil(log2(SampleSize)) ≤ 11 splits; a decoded model's deeper paths credit their first 64.
const maxPath = 64

// Attribute writes into out each feature's share in isolating x as ScoreExtended sees it;
// shares sum to 1.
//
// It follows ScoreExtended's walk down every tree. Where x lies outside a node's training range
// on the split feature, ScoreExtended isolates it there with probability p (for the mass that
// got that far, stay); that cut-off mass, stay·p, is credited to the node's split feature alone,
// since no other feature moved x off the training data there. The mass that reaches the leaf
// is credited like PathFeatures: each split feature on the path gets stay/h, h being the
// leaf's path length, so features on short paths count more. For x inside every node's range
// the result therefore equals PathFeatures exactly; for x far outside the training data on one
// feature, that feature takes nearly all of it, while PathFeatures would share the credit with
// every feature the trees happen to split on first.
//
// out must have length f.Dims() and is overwritten. If len(x) or len(out) differs from
// f.Dims(), every element of out is set to NaN. If no tree splits on the way to x, out is left
// all zero. Attribute does not allocate.
func (f *Forest) Attribute(x []float64, out []float64) {
	if len(x) != f.dims || len(out) != f.dims {
		for i := range out {
			out[i] = math.NaN()
		}
		return
	}
	clear(out)
	var path [maxPath]uint8
	for t := range f.roots {
		nodes := f.splits[f.starts[t]:]
		ref, stay, n, depth := uint32(f.roots[t]), 1.0, 0, 0
		for ref&leafFlag == 0 {
			nd := &nodes[ref]
			v := x[nd.feature()]
			if p := nd.cutOff(v); p > 0 {
				out[nd.feature()] += stay * p
				stay *= 1 - p
			}
			if n < maxPath {
				path[n] = uint8(nd.feature())
				n++
			}
			ref = nd.next(v)
			depth++
		}
		if h := float64(depth) + leafPath[ref&leafMask]; h > 0 && n > 0 {
			w := stay / h
			for _, feat := range path[:n] {
				out[feat] += w
			}
		}
	}
	normalise(out)
}
