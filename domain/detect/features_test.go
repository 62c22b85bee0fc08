package detect_test

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/incident-engine/engine/domain/detect"
	"github.com/incident-engine/engine/domain/forest"
	"github.com/incident-engine/engine/domain/sample"
)

// plainSource produces samples of plain metrics (neither counts nor lower-is-better), each
// around its own level with Gaussian noise, one a minute.
type plainSource struct {
	rng    *rand.Rand
	names  []string
	levels []float64
	sd     float64
	minute int
}

func newPlainSource(seed uint64, n int) *plainSource {
	p := &plainSource{rng: rand.New(rand.NewPCG(seed, 7)), sd: 0.05}
	for i := range n {
		p.names = append(p.names, fmt.Sprintf("m%02d", i+1))
		p.levels = append(p.levels, 0.2+0.6*float64(i)/float64(max(1, n-1)))
	}
	return p
}

// next returns the next sample with fn applied to its values (by metric index).
func (p *plainSource) next(t testing.TB, fn func(v []float64)) sample.Sample {
	t.Helper()
	v := make([]float64, len(p.names))
	for i, l := range p.levels {
		v[i] = l + p.sd*p.rng.NormFloat64()
	}
	if fn != nil {
		fn(v)
	}
	ms := make([]sample.Metric, len(v))
	for i := range v {
		ms[i] = sample.Metric{Name: p.names[i], Value: v[i]}
	}
	s, err := sample.New("host", start.Add(time.Duration(p.minute)*time.Minute), ms)
	if err != nil {
		t.Fatal(err)
	}
	p.minute++
	return s
}

// TestShapeSeesOddShapes checks odd shapes of values that each stay inside the usual range: the
// default detector flags them once the evidence of the last samples adds up (judging values
// alone does as well: the mean surprise of a run of mildly odd values is itself odd), while it
// passes healthy noise, and a single outlier does not make the samples after it anomalous.
func TestShapeSeesOddShapes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name             string
		apply            func(k int, v []float64) // k counts the samples of the episode, from 0
		shapeLo, shapeHi int                      // of the episode's last 12 samples, flagged with the default shape
		valuesHi         int                      // at most flagged by values alone
		why              string
	}{
		{"oscillation", func(k int, v []float64) { v[0] = 0.2 + 0.15*float64(1-2*(k%2)) }, 8, 12, 12, "swinging between +3 and -3 sigma, every value inside the training range: each sample is only a little odd, the run of them is not normal"},
		{"healthy", func(int, []float64) {}, 0, 1, 1, "noise like the training data's is not an anomaly either way"},
		{"one outlier", func(k int, v []float64) {
			if k == 11 {
				v[0] += 1
			}
		}, 0, 1, 1, "20 sigma once: the past is clipped to the training range, so the samples after it are not flagged"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			flagged := make([]int, 2)
			for j, sh := range []detect.Shape{{}, {Volatility: -1}} {
				src := newPlainSource(11, 2)
				d := newDetector(t, detect.Config{Shape: sh})
				for range 256 + 60 {
					observe(t, d, src.next(t, nil))
				}
				for k := range 24 {
					if observe(t, d, src.next(t, func(v []float64) { tc.apply(k, v) })).Anomalous && k >= 12 {
						flagged[j]++
					}
				}
			}
			if flagged[0] < tc.shapeLo || flagged[0] > tc.shapeHi {
				t.Errorf("default shape flagged %d of 12 samples, want %d to %d (%s)", flagged[0], tc.shapeLo, tc.shapeHi, tc.why)
			}
			if flagged[1] > tc.valuesHi {
				t.Errorf("values alone flagged %d of 12 samples, want at most %d (%s)", flagged[1], tc.valuesHi, tc.why)
			}
		})
	}
}

// TestShapeLayout checks which metrics get derived features, through the stored model's
// forest: only plain metrics do; counts and lower-is-better metrics keep their own features.
func TestShapeLayout(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		metrics []string
		shape   detect.Shape
		dims    int
		other   detect.Shape // a detector with this shape ...
		fits    bool         // ... can restore the model
		why     string
	}{
		{"producer metrics", []string{sample.ErrorRate, sample.LatencyP95, sample.RequestCount}, detect.Shape{}, 4, detect.Shape{Volatility: -1}, true,
			"two lower-is-better metrics keep their value alone, the count gets its sudden drop whatever the shape"},
		{"plus cpu", []string{"cpu", sample.ErrorRate, sample.RequestCount}, detect.Shape{}, 5, detect.Shape{Volatility: -1}, false, "cpu gets its volatility"},
		{"change too", []string{"cpu", "mem"}, detect.Shape{Change: 3}, 6, detect.Shape{}, false, "value, volatility and change per plain metric"},
		{"values only", []string{"cpu", "mem"}, detect.Shape{Volatility: -1}, 2, detect.Shape{}, false, "a negative volatility leaves it out"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := newDetector(t, detect.Config{WarmUp: 32, Shape: tc.shape})
			rng := rand.New(rand.NewPCG(3, 3))
			for i := range 32 {
				values := map[string]float64{}
				for _, n := range tc.metrics {
					values[n] = 0.5 + 0.01*rng.NormFloat64()
				}
				observe(t, d, mustSample(t, start.Add(time.Duration(i)*time.Minute), values))
			}
			m, err := d.Model()
			if err != nil {
				t.Fatal(err)
			}
			var f forest.Forest
			if err := f.UnmarshalBinary(m.Forest); err != nil {
				t.Fatal(err)
			}
			if f.Dims() != tc.dims || len(m.Features) != len(tc.metrics) || len(m.Typical) != len(tc.metrics) {
				t.Errorf("forest of %d features, model of %d metrics and %d typical values; want %d features of %d metrics (%s)",
					f.Dims(), len(m.Features), len(m.Typical), tc.dims, len(tc.metrics), tc.why)
			}
			if err := newDetector(t, detect.Config{Shape: tc.shape}).Restore(m); err != nil {
				t.Errorf("restore into a detector of the same shape: %v", err)
			}
			if err := newDetector(t, detect.Config{Shape: tc.other}).Restore(m); (err == nil) != tc.fits {
				t.Errorf("restore into a detector of shape %+v: %v, want success %v (%s)", tc.other, err, tc.fits, tc.why)
			}
		})
	}
}

func TestExplain(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		method detect.Explanation
		apply  func(v []float64)
		top    []int   // the metrics that must lead ...
		lead   float64 // ... with at least this share together
		why    string
	}{
		{"far out", detect.ExplainIsolation, func(v []float64) { v[3] = 3 }, []int{3}, 0.7, "one metric far beyond its training values takes most of it"},
		{"two far out", detect.ExplainIsolation, func(v []float64) { v[1], v[3] = -2, 3 }, []int{1, 3}, 0.8, "both about 45 sigma away, below and above: both lead"},
		{"oscillation", detect.ExplainDeviation, nil, []int{2}, 0.6, "a metric swinging inside its range gets the credit of its swings"},
		{"far out, deviation", detect.ExplainDeviation, func(v []float64) { v[3] = 3 }, []int{3}, 0.95, "the only metric outside its usual range takes nearly all of it"},
		{"far out, path", detect.ExplainPath, func(v []float64) { v[3] = 3 }, nil, 0, "PathFeatures spreads the credit over every split on the paths (forest.TestAttribute compares the two); here only the shares are checked"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := newPlainSource(5, 6)
			d := newDetector(t, detect.Config{Explanation: tc.method})
			out := make([]float64, 6)
			if d.Explain(out) {
				t.Fatal("Explain before any model reported true")
			}
			for range 300 {
				observe(t, d, src.next(t, nil))
			}
			var r detect.Result
			if tc.apply != nil {
				r = observe(t, d, src.next(t, tc.apply))
			} else {
				// Swing until the detector flags it, then explain that sample.
				for k := 0; k < 48 && !r.Anomalous; k++ {
					r = observe(t, d, src.next(t, func(v []float64) { v[2] = src.levels[2] + 0.2*float64(1-2*(k%2)) }))
				}
			}
			if !r.Anomalous {
				t.Fatalf("result %+v, want anomalous (%s)", r, tc.why)
			}
			if !d.Explain(out) {
				t.Fatal("Explain of a trained detector reported false")
			}
			var sum, lead float64
			for _, v := range out {
				sum += v
			}
			ranked := make([]int, len(out))
			for i := range ranked {
				ranked[i] = i
			}
			slices.SortFunc(ranked, func(a, b int) int { return cmp.Compare(out[b], out[a]) })
			for _, m := range tc.top {
				lead += out[m]
			}
			if math.Abs(sum-1) > 1e-9 || !slices.Equal(slices.Sorted(slices.Values(ranked[:len(tc.top)])), tc.top) || lead < tc.lead {
				t.Errorf("shares %v (sum %v): want metrics %v on top with at least %.2f, summing to 1 (%s)", out, sum, tc.top, tc.lead, tc.why)
			}
			if d.Explain(make([]float64, 7)) {
				t.Error("Explain with one share per forest feature, not per metric, reported true")
			}
		})
	}
}

// TestObserveAllocsShape checks that derived features and explanations do not allocate: the
// score stage calls both for every anomalous sample. Not parallel: AllocsPerRun counts every
// goroutine's allocations.
func TestObserveAllocsShape(t *testing.T) {
	src := newPlainSource(8, 19)
	d := newDetector(t, detect.Config{RetrainEvery: 1000 * time.Hour, Shape: detect.Shape{Change: 3}})
	for range 1500 { // past the retrainings of a young model
		observe(t, d, src.next(t, nil))
	}
	samples := make([]sample.Sample, 600)
	for i := range samples {
		samples[i] = src.next(t, nil)
	}
	out := make([]float64, 19)
	var err error
	i := 0
	allocs := testing.AllocsPerRun(500, func() {
		_, err = d.Observe(samples[i])
		d.Explain(out)
		i++
	})
	if err != nil {
		t.Fatal(err)
	}
	if allocs != 0 {
		t.Errorf("Observe and Explain allocate %.1f times per sample, want 0", allocs)
	}
}

// BenchmarkObserve19 measures the score stage on the width of the ASD benchmark: 19 plain
// metrics, each with its value and volatility, so 38 forest features. The metrics are
// Gaussian noise, whose paths all reach full depth: a worst case next to real rows
// (BenchmarkScoreASD in cmd/incidentctl). Retraining is pushed out of the way, as in
// BenchmarkObserve.
func BenchmarkObserve19(b *testing.B) {
	for _, tc := range []struct {
		name  string
		shape detect.Shape
	}{{"default", detect.Shape{}}, {"values-only", detect.Shape{Volatility: -1}}} {
		b.Run(tc.name, func(b *testing.B) {
			src := newPlainSource(9, 19)
			d, err := detect.New("host", detect.Config{RetrainEvery: 1 << 62, Shape: tc.shape})
			if err != nil {
				b.Fatal(err)
			}
			samples := make([]sample.Sample, 1024)
			for i := range samples {
				samples[i] = src.next(b, nil)
			}
			for _, s := range samples[:256] {
				if _, err := d.Observe(s); err != nil {
					b.Fatal(err)
				}
			}
			at := samples[len(samples)-1].At
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				s := samples[i&1023]
				at = at.Add(time.Minute)
				s.At = at
				if _, err := d.Observe(s); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "samples/s")
		})
	}
}

func TestShapeAndExplanationConfig(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		cfg  detect.Config
		ok   bool
		why  string
	}{
		{"defaults", detect.Config{}, true, "the zero Shape and Explanation are the defaults"},
		{"values only", detect.Config{Shape: detect.Shape{Volatility: -1}}, true, "a negative volatility turns it off"},
		{"longest", detect.Config{Shape: detect.Shape{Volatility: 64, Change: 64}}, true, "64 samples of history at most"},
		{"too long", detect.Config{Shape: detect.Shape{Volatility: 65}}, false, "the history kept per metric is bounded"},
		{"negative change", detect.Config{Shape: detect.Shape{Change: -1}}, false, "a mean over no samples"},
		{"unknown explanation", detect.Config{Explanation: 7}, false, "only two methods exist"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := detect.New("api", tc.cfg); (err == nil) != tc.ok {
				t.Errorf("New(%+v) = %v, want ok %v (%s)", tc.cfg, err, tc.ok, tc.why)
			}
		})
	}
	for _, name := range []string{"", "isolation", "path"} {
		e, err := detect.ParseExplanation(name)
		if err != nil || (name != "" && e.String() != name) {
			t.Errorf("ParseExplanation(%q) = %v, %v; want the method of that name", name, e, err)
		}
	}
	if _, err := detect.ParseExplanation("shap"); err == nil {
		t.Error("ParseExplanation(shap) succeeded, want an error")
	}
}
