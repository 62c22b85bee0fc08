package evaluate_test

import (
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/incident-engine/engine/domain/evaluate"
)

// b turns a 0/1 string into labels: "1001" is true, false, false, true.
func b(s string) []bool {
	out := make([]bool, len(s))
	for i, c := range s {
		out[i] = c == '1'
	}
	return out
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-12 }

func TestRanking(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name          string
		scores        []float64
		labels        []bool
		auc, ap, f1   float64
		bestThreshold float64
		why           string
	}{
		{
			"interleaved", []float64{0.9, 0.8, 0.7, 0.6, 0.5}, b("10100"), 5.0 / 6, 0.5 + 1.0/3, 0.8, 0.7,
			"positives beat 3 and 2 of the 3 negatives; AP = 1*(1/2) + (2/3)*(1/2); F1 at 0.7 = 2*2/(3+2)",
		},
		{
			"tie across classes", []float64{0.9, 0.5, 0.5, 0.1}, b("1100"), 3.5 / 4, 0.5 + 1.0/3, 0.8, 0.5,
			"the tied pair counts half in AUC; the tie is one threshold with precision 2/3",
		},
		{
			"constant score", []float64{0.5, 0.5, 0.5, 0.5}, b("1010"), 0.5, 0.5, 2 * 2.0 / 6, 0.5,
			"a constant ranks nothing: AUC one half, AP the base rate, F1 of flagging everything",
		},
		{
			"inverted", []float64{0.1, 0.9}, b("10"), 0, 0.5, 2.0 / 3, 0.1,
			"the positive scores lowest: AUC 0, and it is only found by flagging both",
		},
		{
			"perfect", []float64{3, 2, 1, 0}, b("1100"), 1, 1, 1, 2,
			"scores need not lie in [0,1]; a threshold at 2 separates exactly",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := slices.Clone(tc.scores)
			auc, err := evaluate.ROCAUC(in, tc.labels)
			if err != nil || !near(auc, tc.auc) {
				t.Errorf("ROCAUC = %v, %v; want %v (%s)", auc, err, tc.auc, tc.why)
			}
			ap, err := evaluate.AveragePrecision(in, tc.labels)
			if err != nil || !near(ap, tc.ap) {
				t.Errorf("AveragePrecision = %v, %v; want %v (%s)", ap, err, tc.ap, tc.why)
			}
			f1, th, err := evaluate.BestF1(in, tc.labels)
			if err != nil || !near(f1, tc.f1) || th != tc.bestThreshold {
				t.Errorf("BestF1 = %v at %v, %v; want %v at %v (%s)", f1, th, err, tc.f1, tc.bestThreshold, tc.why)
			}
			if !slices.Equal(in, tc.scores) {
				t.Errorf("scores changed to %v", in)
			}
		})
	}
}

func TestRankingErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		scores []float64
		labels []bool
		want   error
		why    string
	}{
		{"no positives", []float64{1, 2}, b("00"), evaluate.ErrOneClass, "nothing to find"},
		{"all positives", []float64{1, 2}, b("11"), evaluate.ErrOneClass, "nothing to tell apart"},
		{"lengths", []float64{1, 2, 3}, b("10"), evaluate.ErrLength, "rows must pair up"},
		{"NaN", []float64{math.NaN(), 2}, b("10"), evaluate.ErrNaN, "NaN has no rank"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if v, err := evaluate.ROCAUC(tc.scores, tc.labels); !errors.Is(err, tc.want) || !math.IsNaN(v) {
				t.Errorf("ROCAUC = %v, %v; want NaN and %v (%s)", v, err, tc.want, tc.why)
			}
			if v, err := evaluate.AveragePrecision(tc.scores, tc.labels); !errors.Is(err, tc.want) || !math.IsNaN(v) {
				t.Errorf("AveragePrecision = %v, %v; want NaN and %v (%s)", v, err, tc.want, tc.why)
			}
			if v, _, err := evaluate.BestF1(tc.scores, tc.labels); !errors.Is(err, tc.want) || !math.IsNaN(v) {
				t.Errorf("BestF1 = %v, %v; want NaN and %v (%s)", v, err, tc.want, tc.why)
			}
		})
	}
}

func TestConfusion(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name          string
		flags, labels []bool
		want          evaluate.Counts
		p, r, f1      float64
		why           string
	}{
		{"mixed", b("11001"), b("10100"), evaluate.Counts{TP: 1, FP: 2, FN: 1, TN: 1}, 1.0 / 3, 0.5, 0.4, "F1 = 2/(2+2+1)"},
		{"nothing flagged", b("000"), b("010"), evaluate.Counts{FN: 1, TN: 2}, 0, 0, 0, "no flags: precision is 0, not NaN"},
		{"nothing to find", b("000"), b("000"), evaluate.Counts{TN: 3}, 0, 0, 0, "no positives at all"},
		{"exact", b("0110"), b("0110"), evaluate.Counts{TP: 2, TN: 2}, 1, 1, 1, "every flag right"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := evaluate.Confusion(tc.flags, tc.labels)
			if err != nil || c != tc.want {
				t.Fatalf("Confusion = %+v, %v; want %+v (%s)", c, err, tc.want, tc.why)
			}
			if !near(c.Precision(), tc.p) || !near(c.Recall(), tc.r) || !near(c.F1(), tc.f1) {
				t.Errorf("P/R/F1 = %v/%v/%v, want %v/%v/%v (%s)", c.Precision(), c.Recall(), c.F1(), tc.p, tc.r, tc.f1, tc.why)
			}
		})
	}
	if _, err := evaluate.Confusion(b("1"), b("10")); !errors.Is(err, evaluate.ErrLength) {
		t.Errorf("Confusion of unequal lengths: %v, want ErrLength", err)
	}
}

func TestSegments(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		labels []bool
		want   []evaluate.Segment
		why    string
	}{
		{"two runs", b("01101"), []evaluate.Segment{{1, 3}, {4, 5}}, "End is exclusive; a run may end the series"},
		{"none", b("000"), nil, "no labels, no segments"},
		{"all", b("111"), []evaluate.Segment{{0, 3}}, "one run from the first row"},
		{"empty", nil, nil, "no rows"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := evaluate.Segments(tc.labels); !slices.Equal(got, tc.want) {
				t.Errorf("Segments(%v) = %v, want %v (%s)", tc.labels, got, tc.want, tc.why)
			}
		})
	}
}

func TestDetect(t *testing.T) {
	t.Parallel()
	segs := []evaluate.Segment{{10, 20}, {30, 35}, {50, 60}}
	cases := []struct {
		name   string
		alarms []int
		found  int
		delays []int
		why    string
	}{
		{"some", []int{60, 34, 5, 15, 12}, 2, []int{2, 4}, "the first alarm inside counts; one at End (60) is outside; order of alarms does not matter"},
		{"before only", []int{9, 29, 49}, 0, nil, "an alarm just before a segment did not see it"},
		{"at start", []int{10, 30, 50}, 3, []int{0, 0, 0}, "an alarm on the first row has no delay"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := evaluate.Detect(segs, tc.alarms)
			if d.Found != tc.found || !slices.Equal(d.Delays, tc.delays) {
				t.Errorf("Detect = %+v, want found %d with delays %v (%s)", d, tc.found, tc.delays, tc.why)
			}
		})
	}
	d := evaluate.Detect(segs, []int{60, 34, 5, 15, 12})
	if !near(d.Recall(len(segs)), 2.0/3) || !near(d.MeanDelay(), 3) {
		t.Errorf("recall %v, mean delay %v; want 2/3 and 3", d.Recall(len(segs)), d.MeanDelay())
	}
	if none := evaluate.Detect(nil, []int{1}); !math.IsNaN(none.Recall(0)) || !math.IsNaN(none.MeanDelay()) {
		t.Errorf("no segments: recall %v, delay %v; want NaN for both", none.Recall(0), none.MeanDelay())
	}
}

func TestFalseAlarms(t *testing.T) {
	t.Parallel()
	segs := []evaluate.Segment{{10, 20}, {30, 35}}
	cases := []struct {
		name     string
		spans    []evaluate.Segment
		segments []evaluate.Segment
		want     int
		why      string
	}{
		{"mixed", []evaluate.Segment{{0, 5}, {8, 12}, {20, 30}}, segs, 2, "only [8,12) overlaps; [20,30) touches both segments but shares no row"},
		{"inside", []evaluate.Segment{{31, 32}}, segs, 0, "an incident inside a segment is a true one"},
		{"no segments", []evaluate.Segment{{0, 1}, {5, 9}}, nil, 2, "without labels every incident is false"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := evaluate.FalseAlarms(tc.spans, tc.segments); got != tc.want {
				t.Errorf("FalseAlarms = %d, want %d (%s)", got, tc.want, tc.why)
			}
		})
	}
}

func TestHitRate(t *testing.T) {
	t.Parallel()
	shares := []float64{0.4, 0.3, 0.2, 0.1}
	cases := []struct {
		name   string
		shares []float64
		truth  []int
		p      float64
		want   float64
		why    string
	}{
		{"half found", shares, []int{1, 3}, 1, 0.5, "top 2 are metrics 0 and 1: one of the two named"},
		{"150% still misses", shares, []int{1, 3}, 1.5, 0.5, "top 3 = 0,1,2: metric 3 is last"},
		{"all found", shares, []int{0, 1}, 1, 1, "the two largest shares are the truth"},
		{"capped at all metrics", shares, []int{3, 2, 1}, 1.5, 1, "floor(4.5) exceeds the 4 metrics: every metric is named"},
		{"ties by index", []float64{0.25, 0.25, 0.25, 0.25}, []int{2}, 1, 0, "equal shares rank by lower index, so metric 0 is the top one"},
		{"floor to zero", shares, []int{0}, 0.5, 0, "floor(0.5) names no metric"},
		{"outside", shares, []int{7, 0}, 1, 0.5, "a truth index beyond the metrics is a miss"},
		{"empty truth", shares, nil, 1, math.NaN(), "nothing to find is not a score"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := evaluate.HitRate(tc.shares, tc.truth, tc.p)
			if !(near(got, tc.want) || math.IsNaN(got) && math.IsNaN(tc.want)) {
				t.Errorf("HitRate(%v, %v, %v) = %v, want %v (%s)", tc.shares, tc.truth, tc.p, got, tc.want, tc.why)
			}
		})
	}
}

func TestChanceHitRate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		dims, n int
		p, want float64
		why     string
	}{
		{"small truth", 19, 2, 1, 2.0 / 19, "each of the 2 named metrics is the top 2 with probability 2/19"},
		{"150%", 19, 2, 1.5, 3.0 / 19, "floor(3) metrics named"},
		{"large truth", 19, 15, 1.5, 1, "floor(22.5) exceeds the 19 metrics: every metric is named"},
		{"empty truth", 19, 0, 1, math.NaN(), "nothing to find"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := evaluate.ChanceHitRate(tc.dims, tc.n, tc.p)
			if !(near(got, tc.want) || math.IsNaN(got) && math.IsNaN(tc.want)) {
				t.Errorf("ChanceHitRate(%d, %d, %v) = %v, want %v (%s)", tc.dims, tc.n, tc.p, got, tc.want, tc.why)
			}
		})
	}
}

func TestMean(t *testing.T) {
	t.Parallel()
	if m, n := evaluate.Mean([]float64{1, math.NaN(), 3}); m != 2 || n != 2 {
		t.Errorf("Mean skipping NaN = %v over %d, want 2 over 2", m, n)
	}
	if m, n := evaluate.Mean([]float64{math.NaN()}); !math.IsNaN(m) || n != 0 {
		t.Errorf("Mean of nothing = %v over %d, want NaN over 0", m, n)
	}
}
