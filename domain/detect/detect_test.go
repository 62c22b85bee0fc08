package detect_test

import (
	"errors"
	"maps"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/incident-engine/engine/domain/detect"
	"github.com/incident-engine/engine/domain/forest"
	"github.com/incident-engine/engine/domain/sample"
)

// start is the time of the first sample; samples come one minute apart.
var start = time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)

// source produces one service's samples, one a minute, from a seeded random source.
type source struct {
	rng    *rand.Rand
	minute int
	step   time.Duration // between samples (default a minute)
	// level returns the typical request count at a minute (default: a flat 1000).
	level func(minute int) float64
}

func newSource(seed uint64) *source {
	return &source{rng: rand.New(rand.NewPCG(seed, 99)), level: func(int) float64 { return 1000 }}
}

// values draws the next minute's healthy metrics: latency around 120 ms, error rate around
// 1%, request count around level with 5% multiplicative noise.
func (s *source) values() (latency, errRate, count float64) {
	latency = max(1, 120+10*s.rng.NormFloat64())
	errRate = min(1, max(0, 0.01+0.003*s.rng.NormFloat64()))
	count = s.level(s.minute) * math.Exp(0.05*s.rng.NormFloat64())
	return
}

// next returns the next minute's sample with fn applied to its healthy values.
func (s *source) next(t testing.TB, fn func(latency, errRate, count *float64)) sample.Sample {
	t.Helper()
	lat, er, cnt := s.values()
	if fn != nil {
		fn(&lat, &er, &cnt)
	}
	step := s.step
	if step == 0 {
		step = time.Minute
	}
	at := start.Add(time.Duration(s.minute) * step)
	s.minute++
	return mustSample(t, at, map[string]float64{sample.LatencyP95: lat, sample.ErrorRate: er, sample.RequestCount: cnt})
}

func mustSample(t testing.TB, at time.Time, values map[string]float64) sample.Sample {
	t.Helper()
	var ms []sample.Metric
	for name, v := range values {
		ms = append(ms, sample.Metric{Name: name, Value: v})
	}
	s, err := sample.New("api", at, ms)
	if err != nil {
		t.Fatalf("sample.New: %v", err)
	}
	return s
}

func newDetector(t testing.TB, cfg detect.Config) *detect.Detector {
	t.Helper()
	d, err := detect.New("api", cfg)
	if err != nil {
		t.Fatalf("detect.New: %v", err)
	}
	return d
}

func observe(t testing.TB, d *detect.Detector, s sample.Sample) detect.Result {
	t.Helper()
	r, err := d.Observe(s)
	if err != nil {
		t.Fatalf("Observe(%s): %v", s.At, err)
	}
	return r
}

// trained returns a detector with the default config trained on src's first 256 samples.
func trained(t testing.TB, src *source) *detect.Detector {
	t.Helper()
	d := newDetector(t, detect.Config{})
	for range 256 {
		observe(t, d, src.next(t, nil))
	}
	return d
}

func TestWarmUp(t *testing.T) {
	t.Parallel()
	const warmUp = 32
	d := newDetector(t, detect.Config{WarmUp: warmUp})
	src := newSource(1)
	for i := 1; i < warmUp; i++ {
		r := observe(t, d, src.next(t, nil))
		want := detect.Result{WarmUpLeft: warmUp - i}
		if r != want {
			t.Fatalf("sample %d: %+v, want %+v: unjudged, counting down", i, r, want)
		}
	}
	r := observe(t, d, src.next(t, nil))
	if want := (detect.Result{ModelVersion: 1, Trained: true}); r != want {
		t.Errorf("sample %d (the last of the warm-up): %+v, want %+v: the model is trained, nothing left to wait for", warmUp, r, want)
	}
	r = observe(t, d, src.next(t, nil))
	if !r.Judged || r.ModelVersion != 1 || r.WarmUpLeft != 0 || !(r.Threshold > 0 && r.Threshold < 1) || !(r.Score >= 0 && r.Score < 1) {
		t.Errorf("first sample after warm-up: %+v, want judged by model 1 with a score in [0,1) and a threshold in (0,1)", r)
	}
	if got, want := d.Features(), []string{sample.ErrorRate, sample.LatencyP95, sample.RequestCount}; !slices.Equal(got, want) {
		t.Errorf("Features() = %v, want %v", got, want)
	}
}

func TestJudgesNormalAndOutliers(t *testing.T) {
	t.Parallel()
	src := newSource(2)
	d := trained(t, src)

	flagged := 0
	const n = 1000
	for range n {
		r := observe(t, d, src.next(t, nil))
		if !r.Judged {
			t.Fatalf("result %+v after warm-up, want judged", r)
		}
		if r.Anomalous && r.Score < r.Threshold {
			t.Fatalf("result %+v: an anomaly must score at least the threshold", r)
		}
		if r.Anomalous {
			flagged++
		}
	}
	if flagged*100 >= 3*n {
		t.Errorf("%d of %d fresh normal samples flagged, want under 3%%", flagged, n)
	}

	cases := []struct {
		name  string
		apply func(latency, errRate, count *float64)
		want  bool
		why   string
	}{
		{"latency x5", func(l, _, _ *float64) { *l *= 5 }, true, "one metric far above anything seen in warm-up"},
		{"error rate 30%", func(_, e, _ *float64) { *e = 0.3 }, true, "thirty times the usual error rate"},
		{"traffic collapse", func(_, _, c *float64) { *c *= 0.1 }, true, "a tenth of the usual requests"},
		{"all at once", func(l, e, c *float64) { *l, *e, *c = *l*3, 0.2, *c*0.2 }, true, "a meltdown"},
		{"traffic spike", func(_, _, c *float64) { *c *= 10 }, false, "more traffic than usual is not a fault by itself (counts are clipped above their level)"},
		{"faster than ever", func(l, _, _ *float64) { *l = 5 }, false, "latency far below anything seen is good news (clamped to the training floor)"},
		{"no errors at all", func(_, e, _ *float64) { *e = 0 }, false, "an error rate of zero is better than usual, not an anomaly"},
		{"better on both", func(l, e, _ *float64) { *l, *e = 20, 0 }, false, "better latency and fewer errors together are still not an incident"},
	}
	for _, tc := range cases {
		// Not a subtest: the cases share the detector and its clock.
		r := observe(t, d, src.next(t, tc.apply))
		if r.Anomalous != tc.want || (r.Score >= r.Threshold) != tc.want {
			t.Errorf("%s: %+v, want anomalous %v (%s)", tc.name, r, tc.want, tc.why)
		}
		// Let the evidence of the case (the mean surprise of the last ten samples) and the
		// count levels settle back before the next.
		for range 15 {
			observe(t, d, src.next(t, nil))
		}
	}
}

// TestDailyCycle checks the ratio-to-level feature: request_count follows a day-long cycle
// whose peak is far above anything in the 256-minute warm-up (which starts in the trough),
// yet the slow change is not flagged, while a sudden collapse to a tenth is.
func TestDailyCycle(t *testing.T) {
	t.Parallel()
	src := newSource(3)
	src.level = func(m int) float64 { return 1000 * (1 - 0.6*math.Cos(2*math.Pi*float64(m)/1440)) }
	d := newDetector(t, detect.Config{})

	warmMax := 0.0
	for range 256 {
		s := src.next(t, nil)
		c, _ := s.Value(sample.RequestCount)
		warmMax = max(warmMax, c)
		observe(t, d, s)
	}
	// Over the next day: every sample, and those whose count is well beyond the warm-up's.
	dayMax, flagged, n, beyondFlagged, beyond := 0.0, 0, 0, 0, 0
	for src.minute < 1440+256 {
		s := src.next(t, nil)
		c, _ := s.Value(sample.RequestCount)
		dayMax = max(dayMax, c)
		anomalous := observe(t, d, s).Anomalous
		n++
		if anomalous {
			flagged++
		}
		if c > 1.2*warmMax {
			beyond++
			if anomalous {
				beyondFlagged++
			}
		}
	}
	t.Logf("warm-up max %.0f, day max %.0f; flagged %d of %d, %d of %d beyond the warm-up range", warmMax, dayMax, flagged, n, beyondFlagged, beyond)
	if dayMax < 1.5*warmMax || beyond < n/3 {
		t.Fatalf("daily peak %.0f (%d samples beyond 1.2x the warm-up max %.0f) is not far enough out; the test proves nothing", dayMax, beyond, warmMax)
	}
	if beyondFlagged*100 >= 3*beyond {
		t.Errorf("%d of %d samples with counts beyond the warm-up range flagged, want under 3%%: the count is judged against its level, not its warm-up values", beyondFlagged, beyond)
	}
	if flagged*100 >= 3*n {
		t.Errorf("%d of %d samples of a normal daily cycle flagged, want under 3%%", flagged, n)
	}
	r := observe(t, d, src.next(t, func(_, _, c *float64) { *c *= 0.1 }))
	if !r.Anomalous {
		t.Errorf("collapse to 10%% of the cycle's level: %+v, want anomalous", r)
	}
}

// TestSustainedCollapse checks that a count's level follows a collapse only slowly (at most
// LevelDrift per hour), so an outage stays anomalous for hours instead of becoming the new
// normal within minutes, and that traffic returning afterwards is not itself flagged.
func TestSustainedCollapse(t *testing.T) {
	t.Parallel()
	src := newSource(9)
	d := trained(t, src)
	for range 60 {
		observe(t, d, src.next(t, nil))
	}
	const outage = 120
	flagged := 0
	for range outage {
		if observe(t, d, src.next(t, func(_, _, c *float64) { *c *= 0.1 })).Anomalous {
			flagged++
		}
	}
	if flagged != outage {
		t.Errorf("%d of %d minutes of a traffic collapse flagged, want all: two hours is too soon to accept it as normal", flagged, outage)
	}
	flagged = 0
	for range 30 {
		if observe(t, d, src.next(t, nil)).Anomalous {
			flagged++
		}
	}
	if flagged > 1 {
		t.Errorf("%d of the 30 samples after traffic returned flagged, want at most 1: recovery is not a fault", flagged)
	}
}

func TestRedelivery(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		first int // samples observed before the redelivered one
		why   string
	}{
		{"during warm-up", 10, "a redelivery must not count towards the warm-up"},
		{"when trained", 300, "a redelivery must not move the count level"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// Two identical detectors; only one sees the redeliveries.
			a, b := newDetector(t, detect.Config{}), newDetector(t, detect.Config{})
			src := newSource(4)
			var s sample.Sample
			var want detect.Result
			for range tc.first {
				s = src.next(t, nil)
				want = observe(t, a, s)
				observe(t, b, s)
			}
			again := observe(t, a, s)
			if again != want {
				t.Errorf("redelivery: %+v, want the first result %+v (%s)", again, want, tc.why)
			}
			changed := s
			changed.Metrics = slices.Clone(s.Metrics)
			for i := range changed.Metrics {
				changed.Metrics[i].Value *= 7
			}
			if r := observe(t, a, changed); r != want {
				t.Errorf("redelivery with other values: %+v, want the first result %+v: the time identifies the sample", r, want)
			}
			for i := range 300 {
				s := src.next(t, nil)
				if ra, rb := observe(t, a, s), observe(t, b, s); ra != rb {
					t.Fatalf("sample %d after the redeliveries: %+v, twin without them %+v (%s)", i, ra, rb, tc.why)
				}
			}
		})
	}
}

func TestOutOfOrder(t *testing.T) {
	t.Parallel()
	a, b := newDetector(t, detect.Config{}), newDetector(t, detect.Config{})
	src := newSource(5)
	var samples []sample.Sample
	for range 300 {
		s := src.next(t, nil)
		samples = append(samples, s)
		observe(t, a, s)
		observe(t, b, s)
	}
	for _, old := range []sample.Sample{samples[298], samples[0], {Service: "api", At: start.Add(-time.Hour), Metrics: samples[0].Metrics}} {
		r, err := a.Observe(old)
		if !errors.Is(err, detect.ErrOutOfOrder) || r != (detect.Result{}) {
			t.Errorf("Observe(sample at %s) = %+v, %v; want the zero Result and ErrOutOfOrder", old.At, r, err)
		}
	}
	for i := range 100 {
		s := src.next(t, nil)
		if ra, rb := observe(t, a, s), observe(t, b, s); ra != rb {
			t.Fatalf("sample %d after the late ones: %+v, twin without them %+v; a late sample must change nothing", i, ra, rb)
		}
	}
}

func TestMetricSetChange(t *testing.T) {
	t.Parallel()
	src := newSource(6)
	d := trained(t, src)
	if r := observe(t, d, src.next(t, nil)); !r.Judged || r.ModelVersion != 1 {
		t.Fatalf("before the change: %+v, want judged by model 1", r)
	}

	withCPU := func() sample.Sample {
		s := src.next(t, nil)
		ms := append(slices.Clone(s.Metrics), sample.Metric{Name: "cpu", Value: 0.4 + 0.05*src.rng.NormFloat64()})
		out, err := sample.New(s.Service, s.At, ms)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	r := observe(t, d, withCPU())
	if want := (detect.Result{ModelVersion: 1, WarmUpLeft: 255}); r != want {
		t.Errorf("first sample with a new metric: %+v, want %+v: unjudged, a new warm-up under way", r, want)
	}
	if got, want := d.Features(), []string{"cpu", sample.ErrorRate, sample.LatencyP95, sample.RequestCount}; !slices.Equal(got, want) {
		t.Errorf("Features() = %v, want %v", got, want)
	}
	for i := 2; i < 256; i++ {
		if r := observe(t, d, withCPU()); r.Judged || r.WarmUpLeft != 256-i {
			t.Fatalf("warm-up sample %d: %+v, want unjudged with %d left", i, r, 256-i)
		}
	}
	if r := observe(t, d, withCPU()); r.ModelVersion != 2 || r.Judged {
		t.Errorf("last warm-up sample: %+v, want model 2 trained, this sample unjudged", r)
	}
	if r := observe(t, d, withCPU()); !r.Judged || r.ModelVersion != 2 {
		t.Errorf("after the new warm-up: %+v, want judged by model 2", r)
	}
	collapse := withCPU()
	for i, m := range collapse.Metrics {
		if m.Name == sample.RequestCount {
			collapse.Metrics[i].Value *= 0.1
		}
	}
	if r := observe(t, d, collapse); !r.Anomalous {
		t.Errorf("traffic collapse under the new model: %+v, want anomalous: count levels restart with the new metric set", r)
	}
	if r := observe(t, d, src.next(t, nil)); r.Judged || r.ModelVersion != 2 || r.WarmUpLeft != 255 {
		t.Errorf("dropping the metric again: %+v, want a third warm-up", r)
	}
}

// TestOtherCounts checks that a metric the detector treats as a count (by its _count or
// _total suffix) but that sample validation lets be negative cannot break the model.
func TestOtherCounts(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		metric string
		value  func(i int) float64
		why    string
	}{
		{"negative _count", "retries_count", func(i int) float64 { return -5 - float64(i%3) }, "log1p of less than -1 is NaN"},
		{"_count of minus one", "retries_count", func(int) float64 { return -1 }, "log1p(-1) is -Inf"},
		{"negative _total", "bytes_total", func(i int) float64 { return -float64(i) }, "the _total suffix is a count too"},
		{"ordinary _total", "bytes_total", func(i int) float64 { return 1e6 + float64(i) }, "a positive count works as request_count does"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := newDetector(t, detect.Config{WarmUp: 32})
			for i := range 40 {
				s := mustSample(t, start.Add(time.Duration(i)*time.Minute), map[string]float64{tc.metric: tc.value(i), "cpu": 0.5})
				r, err := d.Observe(s)
				if err != nil {
					t.Fatalf("sample %d: %v (%s)", i, err, tc.why)
				}
				if i >= 32 && (!r.Judged || math.IsNaN(r.Score)) {
					t.Fatalf("sample %d: %+v, want a judged, finite score (%s)", i, r, tc.why)
				}
			}
		})
	}
}

// TestAlarmLevel checks that the alarm level follows the noise budget and the sample spacing:
// a service sampled every five minutes, or one allowed more false alarms, has a lower level.
func TestAlarmLevel(t *testing.T) {
	t.Parallel()
	level := func(budget float64, step time.Duration) float64 {
		d := newDetector(t, detect.Config{FalseAlarmsPerDay: budget, WarmUp: 64})
		src := newSource(5)
		src.step = step
		for range 64 {
			observe(t, d, src.next(t, nil))
		}
		return observe(t, d, src.next(t, nil)).Threshold
	}
	perMinute, perFive, looser := level(0.02, time.Minute), level(0.02, 5*time.Minute), level(0.5, time.Minute)
	// The level is ln(samples a day / budget) nats; on the score's scale 1 - 2^(-z/11.5).
	want := func(perDay, budget float64) float64 { return 1 - math.Exp2(-math.Log(perDay/budget)/(5*math.Ln10)) }
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"one a minute", perMinute, want(1440, 0.02)},
		{"one every five minutes", perFive, want(288, 0.02)},
		{"budget 0.5", looser, want(1440, 0.5)},
	} {
		if math.Abs(c.got-c.want) > 1e-9 {
			t.Errorf("%s: threshold %.6f, want %.6f", c.name, c.got, c.want)
		}
	}
	if !(perFive < perMinute && looser < perMinute) {
		t.Errorf("thresholds %.3f (1m), %.3f (5m), %.3f (budget 0.5): fewer samples a day or a larger budget must lower it", perMinute, perFive, looser)
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	var c detect.Config
	c.SetDefaults()
	if want := (detect.Config{WarmUp: 256, Forest: forest.Config{Trees: detect.DefaultTrees}, FalseAlarmsPerDay: 0.7, Context: 10, Slack: math.Log(100), LevelSpan: 10, LevelDrift: 0.5, LevelRise: 0.1,
		RetrainEvery: 24 * time.Hour, RetrainWindow: 1440, RetrainSpan: 7 * 24 * time.Hour, Exclusion: 15 * time.Minute,
		RelearnAfter: 3 * time.Hour, StableSpread: 3}); !reflect.DeepEqual(c, want) {
		t.Errorf("defaults %+v, want %+v", c, want)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
	custom := detect.Config{WarmUp: 16, Forest: forest.Config{Trees: 100}, FalseAlarmsPerDay: 1, Context: 1, Slack: 0.5, LevelSpan: 1, LevelDrift: 3, LevelRise: 1,
		RetrainEvery: time.Hour, RetrainWindow: 100, RetrainSpan: time.Hour, Exclusion: time.Minute, RelearnAfter: -1, StableSpread: 1}
	c = custom
	c.SetDefaults()
	if !reflect.DeepEqual(c, custom) {
		t.Errorf("SetDefaults changed set fields: %+v, want %+v", c, custom)
	}
	valid := c

	cases := []struct {
		name    string
		cfg     func(c *detect.Config)
		wantErr []string // fragments, one per problem; none means valid
		why     string
	}{
		{"smallest", func(*detect.Config) {}, nil, "every boundary value at once"},
		{"warm-up 15", func(c *detect.Config) { c.WarmUp = 15 }, []string{"warm-up 15"}, "too few samples to train on"},
		{"no budget", func(c *detect.Config) { c.FalseAlarmsPerDay = -1 }, []string{"false alarms per day -1"}, "a budget below zero means nothing"},
		{"no slack", func(c *detect.Config) { c.Slack = -1 }, []string{"slack -1"}, "every sample would be odd"},
		{"context 0", func(c *detect.Config) { c.Context = -1 }, []string{"context -1"}, "a mean over no samples"},
		{"level span 0", func(c *detect.Config) { c.LevelSpan = 0 }, []string{"level span 0"}, "an average over no samples"},
		{"negative level drift", func(c *detect.Config) { c.LevelDrift = -0.1 }, []string{"level drift -0.1"}, "a level cannot move a negative distance"},
		{"stable spread below 1", func(c *detect.Config) { c.StableSpread = 0.5 }, []string{"stable spread 0.5"}, "steadier than its own spread is impossible"},
		{"negative trees", func(c *detect.Config) { c.Forest.Trees = -1 }, []string{"forest trees"}, "the forest rejects it at training, too late"},
		{"sample size 4096", func(c *detect.Config) { c.Forest.SampleSize = 4096 }, []string{"sample size 4096 is above 2048"}, "the forest's compact nodes link at most 2048 rows"},
		{
			"every problem", func(c *detect.Config) {
				c.WarmUp, c.Slack, c.LevelSpan, c.LevelDrift, c.Forest.Trees = 1, -1, -1, -1, -1
			},
			[]string{"warm-up 1", "slack -1", "level span -1", "level drift -1", "forest trees"}, "all reported at once",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := valid
			tc.cfg(&cfg)
			err := cfg.Validate()
			if (err == nil) != (len(tc.wantErr) == 0) {
				t.Fatalf("Validate(%+v) = %v, want error %v (%s)", cfg, err, tc.wantErr, tc.why)
			}
			for _, frag := range tc.wantErr {
				if !strings.Contains(err.Error(), frag) {
					t.Errorf("Validate error %q does not mention %q (%s)", err, frag, tc.why)
				}
			}
		})
	}

	t.Run("New validates after defaults", func(t *testing.T) {
		t.Parallel()
		if d, err := detect.New("api", detect.Config{WarmUp: 8}); err == nil || d != nil {
			t.Errorf("New with warm-up 8 = %v, %v; want nil and an error", d, err)
		}
		if _, err := detect.New("api", detect.Config{}); err != nil {
			t.Errorf("New with the zero Config = %v, want the defaults to be valid", err)
		}
	})
}

// TestObserveAllocs checks that a trained detector scores without allocating. Not parallel:
// AllocsPerRun counts every goroutine's allocations.
func TestObserveAllocs(t *testing.T) {
	src := newSource(7)
	d := newDetector(t, detect.Config{RetrainEvery: 1000 * time.Hour}) // retraining allocates; scoring must not
	// Past the warm-up and the retrainings of a young model (at twice its rows, up to a full
	// window).
	for range 1500 {
		observe(t, d, src.next(t, nil))
	}
	s := src.next(t, nil)
	var err error
	var r detect.Result
	allocs := testing.AllocsPerRun(500, func() {
		s.At = s.At.Add(time.Minute)
		r, err = d.Observe(s)
	})
	if err != nil || !r.Judged {
		t.Fatalf("last Observe = %+v, %v; want a judged result", r, err)
	}
	if allocs != 0 {
		t.Errorf("Observe allocates %.1f times per sample once trained, want 0", allocs)
	}
}

func TestDeterministic(t *testing.T) {
	t.Parallel()
	cfg := detect.Config{Forest: forest.Config{Seed: 42}}
	play := func(service string) []detect.Result {
		d, err := detect.New(service, cfg)
		if err != nil {
			t.Fatal(err)
		}
		src := newSource(8)
		var out []detect.Result
		for i := range 400 {
			s := src.next(t, func(l, _, _ *float64) {
				if i%50 == 49 {
					*l *= 3
				}
			})
			out = append(out, observe(t, d, s))
		}
		return out
	}
	a, b := play("api"), play("api")
	if !reflect.DeepEqual(a, b) {
		t.Errorf("two detectors of the same service and config disagree")
	}
	if a[len(a)-1].Score == 0 || !a[len(a)-1].Judged {
		t.Fatalf("last result %+v, want a judged score", a[len(a)-1])
	}
	if other := play("db"); reflect.DeepEqual(a, other) {
		t.Errorf("services api and db got identical forests; the seed is meant to be mixed with the service name")
	}
}

// TestRelearnsASteadyNewLevel checks that a lasting level shift of a plain metric is learned as
// the new normal after RelearnAfter, so its alarm ends, while an error rate that stays high
// (an outage) is never learned, however steady.
func TestRelearnsASteadyNewLevel(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		metric  string
		shifted func(rng *rand.Rand) float64
		learned bool
		why     string
	}{
		{"plain metric steps up", "queue_depth", func(rng *rand.Rand) float64 { return 80 + 2*rng.NormFloat64() }, true,
			"a deploy that moved a plain metric to a new steady level: learned, the alarm ends"},
		{"error rate stays high", sample.ErrorRate, func(rng *rand.Rand) float64 { return 0.2 + 0.002*rng.NormFloat64() }, false,
			"a worse error rate is an outage, never a new normal, however steady"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(8, 8))
			d := newDetector(t, detect.Config{})
			normal := map[string]float64{"queue_depth": 50, sample.ErrorRate: 0.01}
			noise := map[string]float64{"queue_depth": 2, sample.ErrorRate: 0.002}
			mk := func(m int, shifted bool) sample.Sample {
				vals := map[string]float64{}
				// In a fixed order: the draws must not follow the map's random order.
				for _, n := range slices.Sorted(maps.Keys(normal)) {
					vals[n] = max(0, normal[n]+noise[n]*rng.NormFloat64())
				}
				if shifted {
					vals[tc.metric] = tc.shifted(rng)
				}
				return mustSample(t, start.Add(time.Duration(m)*time.Minute), vals)
			}
			m := 0
			for ; m < 600; m++ {
				observe(t, d, mk(m, false))
			}
			var relearnedAt, anomalousLate int
			for k := range 6 * 60 {
				r := observe(t, d, mk(m, true))
				m++
				if r.Relearned && relearnedAt == 0 {
					relearnedAt = k
					if !r.Trained {
						t.Errorf("relearning at shifted sample %d: %+v, want Trained too (a new model to store)", k, r)
					}
				}
				if k >= 5*60 && r.Anomalous {
					anomalousLate++
				}
			}
			if tc.learned {
				if relearnedAt < 3*60 || relearnedAt > 3*60+30 {
					t.Errorf("relearned at shifted sample %d, want soon after RelearnAfter (3h = 180 samples) (%s)", relearnedAt, tc.why)
				}
				if anomalousLate > 0 {
					t.Errorf("%d of the last 60 shifted samples still anomalous, want none once learned (%s)", anomalousLate, tc.why)
				}
				// Back to the old level is not an alarm either: the old normal is still known.
				flagged := 0
				for range 60 {
					if observe(t, d, mk(m, false)).Anomalous {
						flagged++
					}
					m++
				}
				if flagged > 2 {
					t.Errorf("%d of 60 samples back at the old level flagged, want at most 2: the new normal joins the old", flagged)
				}
				return
			}
			if relearnedAt != 0 || anomalousLate < 55 {
				t.Errorf("relearned at %d, %d of the last 60 shifted samples anomalous; want never learned, still anomalous (%s)", relearnedAt, anomalousLate, tc.why)
			}
		})
	}
}

// TestAlarmLevelKeepsTheSampleSpacing checks that the alarm level still follows the service's
// own spacing once the retraining window, full, keeps only one sample in several: a service
// sampled every minute keeps the level of 1,440 samples a day after a week.
func TestAlarmLevelKeepsTheSampleSpacing(t *testing.T) {
	t.Parallel()
	d := newDetector(t, detect.Config{WarmUp: 64, FalseAlarmsPerDay: 0.5, RetrainWindow: 100, RetrainSpan: 10 * time.Hour, RetrainEvery: time.Hour})
	src := newSource(6)
	first := observe(t, d, src.next(t, nil))
	for range 64 {
		first = observe(t, d, src.next(t, nil))
	}
	var last detect.Result
	retrained := 0
	for range 12 * 60 { // the window fills, then keeps one sample in six
		last = observe(t, d, src.next(t, nil))
		if last.Trained {
			retrained++
		}
	}
	want := 1 - math.Exp2(-math.Log(1440/0.5)/(5*math.Ln10))
	if retrained < 5 || math.Abs(first.Threshold-want) > 1e-9 || math.Abs(last.Threshold-want) > 1e-9 {
		t.Errorf("thresholds %.6f then %.6f after %d retrainings, want %.6f throughout: the spacing of the samples, not of the window's rows", first.Threshold, last.Threshold, retrained, want)
	}
}

// TestShortWarmUpScoresStayFinite checks that the shortest warm-ups allowed judge with finite
// scores: while the calibration holds fewer values than its tail ignores, ranks decide
// alone (a tail through two equal quantiles made every later score NaN for good).
func TestShortWarmUpScoresStayFinite(t *testing.T) {
	t.Parallel()
	for _, warmUp := range []int{16, 32, 50} {
		d := newDetector(t, detect.Config{WarmUp: warmUp})
		src := newSource(uint64(warmUp))
		for i := range 300 {
			r := observe(t, d, src.next(t, nil))
			if math.IsNaN(r.Score) || math.IsInf(r.Score, 0) {
				t.Fatalf("warm-up %d, sample %d: score %v, want a finite score", warmUp, i, r.Score)
			}
		}
	}
}

// TestDeclaredMetricKinds checks that a metric's declared kind overrides its name: an error
// budget left, which its name makes lower-is-better (so a fall would be good news), declared
// higher-is-better is anomalous when it falls and not when it rises; a declaration for one
// service ("service/metric") wins over one for every service.
func TestDeclaredMetricKinds(t *testing.T) {
	t.Parallel()
	const budget = "error_budget_remaining"
	run := func(kinds map[string]detect.Kind, level float64) (anomalous int) {
		rng := rand.New(rand.NewPCG(4, 4))
		d := newDetector(t, detect.Config{Kinds: kinds})
		mk := func(m int, b float64) sample.Sample {
			return mustSample(t, start.Add(time.Duration(m)*time.Minute), map[string]float64{
				budget: b + 0.01*rng.NormFloat64(), "queue_depth": 50 + 2*rng.NormFloat64(),
			})
		}
		m := 0
		for ; m < 600; m++ {
			observe(t, d, mk(m, 0.8))
		}
		for range 30 {
			if observe(t, d, mk(m, level)).Anomalous {
				anomalous++
			}
			m++
		}
		return anomalous
	}
	higher := map[string]detect.Kind{budget: detect.KindHigherIsBetter}
	if n := run(nil, 0.3); n != 0 {
		t.Errorf("by its name (lower-is-better) a falling budget flagged %d of 30 samples; the name rule sees no fall", n)
	}
	if n := run(higher, 0.3); n < 20 {
		t.Errorf("declared higher-is-better, a budget fallen to 0.3 flagged %d of 30 samples, want most", n)
	}
	if n := run(higher, 1.0); n != 0 {
		t.Errorf("declared higher-is-better, a budget risen to 1.0 flagged %d of 30 samples, want none", n)
	}
	perService := map[string]detect.Kind{budget: detect.KindLowerIsBetter, "api/" + budget: detect.KindHigherIsBetter}
	if n := run(perService, 0.3); n < 20 {
		t.Errorf("declared higher-is-better for api only, over lower-is-better for all: %d of 30 flagged, want most", n)
	}
	if _, err := detect.ParseKind("sideways"); err == nil {
		t.Errorf("ParseKind(sideways): no error")
	}
	if k, err := detect.ParseKind("higher_is_better"); err != nil || k != detect.KindHigherIsBetter {
		t.Errorf("ParseKind(higher_is_better) = %v, %v", k, err)
	}
}

// TestRetrainsAfterAnAnomalyWhenTheWarmUpFillsTheWindow checks that a detector whose warm-up is
// as large as its retraining window keeps retraining on schedule after an anomaly: the
// anomaly's rows are left out of the window, which is then never wholly clean again (found on
// smd-dev, where such a detector kept one model for its last three weeks and, with an unlucky
// seed, flagged a machine's normal drift by the dozen a day).
func TestRetrainsAfterAnAnomalyWhenTheWarmUpFillsTheWindow(t *testing.T) {
	t.Parallel()
	src := newSource(11)
	// The window takes every sample (it spans 256 minutes), so the anomaly's rows stay in it
	// for the 200 minutes looked at.
	d := newDetector(t, detect.Config{WarmUp: 256, RetrainWindow: 256, RetrainSpan: 256 * time.Minute, RetrainEvery: time.Hour})
	for range 256 {
		observe(t, d, src.next(t, nil))
	}
	anomalous := false
	for range 10 {
		r := observe(t, d, src.next(t, func(lat, _, _ *float64) { *lat = 900 }))
		anomalous = anomalous || r.Anomalous
	}
	if !anomalous {
		t.Fatal("ten samples at 900 ms latency: none anomalous, the test needs an anomaly")
	}
	var first, last int
	for k := range 200 {
		r := observe(t, d, src.next(t, nil))
		if k == 0 {
			first = r.ModelVersion
		}
		last = r.ModelVersion
	}
	if last < first+2 {
		t.Errorf("model v%d 200 minutes after the anomaly, v%d just after it; want a retraining every hour", last, first)
	}
}
