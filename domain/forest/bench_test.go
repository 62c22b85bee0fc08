package forest

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// Benchmarks mirror scripts/bench_sklearn.py: 100 trees, subsample 256,
// trained on 10,000 N(0, I) rows, scored on a rotating set of query rows.

const (
	benchTrainRows = 10_000
	benchQueries   = 1024 // power of two so the index wraps with a mask
)

// benchForest trains the benchmark forest and query set for d features.
func benchForest(b *testing.B, d int) (*Forest, [][]float64) {
	b.Helper()
	f := mustTrain(b, gaussianRows(benchTrainRows, d, 1), Config{Seed: 1})
	return f, gaussianRows(benchQueries, d, 2)
}

// reportRate adds a samples/s metric (one sample per iteration).
func reportRate(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "samples/s")
}

func benchScore(b *testing.B, d int) { benchScoreWith(b, d, (*Forest).Score) }

// BenchmarkScoreExtended measures the extrapolating score the engine's detector uses.
func BenchmarkScoreExtended(b *testing.B) { benchScoreWith(b, 3, (*Forest).ScoreExtended) }

// BenchmarkScoreExtended19 is BenchmarkScoreExtended with 19 features.
func BenchmarkScoreExtended19(b *testing.B) { benchScoreWith(b, 19, (*Forest).ScoreExtended) }

func benchScoreWith(b *testing.B, d int, score func(*Forest, []float64) float64) {
	f, queries := benchForest(b, d)
	var sink float64
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		sink += score(f, queries[i&(benchQueries-1)])
	}
	reportRate(b)
	if sink != sink { // NaN: keeps sink alive and catches a broken model
		b.Fatal("NaN score")
	}
}

// BenchmarkScore scores one 3-feature sample per iteration.
func BenchmarkScore(b *testing.B) { benchScore(b, 3) }

// BenchmarkScore19 scores one 19-feature sample (the ASD dataset's width) per iteration.
func BenchmarkScore19(b *testing.B) { benchScore(b, 19) }

// BenchmarkPathFeatures explains one 3-feature sample per iteration.
func BenchmarkPathFeatures(b *testing.B) {
	f, queries := benchForest(b, 3)
	out := make([]float64, 3)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		f.PathFeatures(queries[i&(benchQueries-1)], out)
	}
	reportRate(b)
}

// BenchmarkTrain trains a default forest (100 trees x 256) on 10,000 rows.
func BenchmarkTrain(b *testing.B) {
	for _, d := range []int{3, 19} {
		b.Run(fmt.Sprintf("d=%d", d), func(b *testing.B) {
			rows := gaussianRows(benchTrainRows, d, 1)
			b.ReportAllocs()
			var seed uint64
			for b.Loop() {
				seed++
				if _, err := Train(rows, Config{Seed: seed}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "models/s")
		})
	}
}

// BenchmarkScoreExtendedModels scores one sample per iteration on each of 4,096 models in
// turn, in a shuffled order, as a worker judging 4,096 services does: the models do not fit
// in the processor's caches, so each walk waits on memory. It reports the bytes one model
// holds.
func BenchmarkScoreExtendedModels(b *testing.B) { benchModels(b, (*Forest).ScoreExtended) }

// BenchmarkScoreModels is BenchmarkScoreExtendedModels with the paper's Score.
func BenchmarkScoreModels(b *testing.B) { benchModels(b, (*Forest).Score) }

func benchModels(b *testing.B, score func(*Forest, []float64) float64) {
	const models = 4096
	trained := make([]*Forest, 16)
	for i := range trained {
		trained[i] = mustTrain(b, gaussianRows(2000, 3, uint64(i)), Config{Seed: uint64(i)})
	}
	// Copies of 16 trained models, each with splits of its own: the memory is what counts.
	forests := make([]*Forest, models)
	for i := range forests {
		f := *trained[i%len(trained)]
		f.splits = slices.Clone(f.splits)
		f.starts, f.roots = slices.Clone(f.starts), slices.Clone(f.roots)
		forests[i] = &f
	}
	rand.New(rand.NewPCG(1, 1)).Shuffle(models, func(i, j int) { forests[i], forests[j] = forests[j], forests[i] })
	queries := gaussianRows(benchQueries, 3, 2)
	var sink, bytes float64
	for _, f := range forests {
		bytes += float64(f.MemoryBytes())
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		sink += score(forests[i&(models-1)], queries[i&(benchQueries-1)])
	}
	reportRate(b)
	b.ReportMetric(bytes/models, "model-bytes")
	if sink != sink {
		b.Fatal("NaN score")
	}
}
