package forest

import "math"

// maxPath bounds the depth of a tree: trees stop at ceil(log2(SampleSize)) and node indices
// are int32, so no path has more than 32 splits.
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
	nodes := f.nodes
	var path [maxPath]int32
	for _, root := range f.roots {
		i, stay, n := root, 1.0, 0
		for {
			nd := &nodes[i]
			if nd.feature < 0 {
				if h := nd.value; h > 0 && n > 0 {
					w := stay / h
					for _, feat := range path[:n] {
						out[feat] += w
					}
				}
				break
			}
			v := x[nd.feature]
			if p := nd.cutOff(v); p > 0 {
				out[nd.feature] += stay * p
				stay *= 1 - p
			}
			if n < maxPath {
				path[n] = nd.feature
				n++
			}
			i = nd.child(i, v)
		}
	}
	normalise(out)
}
