// Package forest implements an Isolation Forest (Liu, Ting and Zhou, 2008)
// for unsupervised anomaly scoring of fixed-length numeric feature vectors.
//
// The algorithm follows scikit-learn's IsolationForest: every tree is grown
// on a subsample drawn without replacement, each split picks a random
// non-constant feature and a split value drawn uniformly between that
// feature's minimum and maximum in the node, trees stop growing at depth
// ceil(log2(subsample size)), and a sample's score is
// 2^(-E[h(x)]/c(subsample size)), where h(x) is the isolation path length
// and c is [AveragePathLength]. Scores lie in (0, 1]; values well above 0.5
// indicate anomalies and values well below 0.5 indicate normal samples.
//
// Trees are stored in one flat array of 12-byte splits with float32
// thresholds and their ranges in 16 bits, their leaves folded into their
// parents' links, so a model of 100 trees of 256 rows takes about 80 KB; [Forest.Score]
// walks eight trees at once in lock-step and [Forest.ScoreExtended] four; both run without
// allocating and are safe for concurrent use. Training draws and partitions
// in float64 and keeps each threshold on the same side of every training row.
// A trained forest can be persisted with [Forest.MarshalBinary] and restored
// with [Forest.UnmarshalBinary], which also reads the two earlier formats.
//
// The package deliberately does not update a model incrementally (retrain
// on a new window instead), does not engineer or scale features, and does
// not decide what score counts as an incident: streaming updates, feature
// extraction and thresholds live in other packages. It imports the Go
// standard library only, and training is fully deterministic for a given
// [Config.Seed].
package forest
