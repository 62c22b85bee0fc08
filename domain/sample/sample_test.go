package sample_test

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/incident-engine/engine/domain/sample"
)

// at is a valid sample time used wherever the timestamp is not under test.
var at = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// seed returns the three metrics every seed service reports, with healthy values.
func seed() []sample.Metric {
	return []sample.Metric{
		{Name: sample.RequestCount, Value: 1000},
		{Name: sample.LatencyP95, Value: 120},
		{Name: sample.ErrorRate, Value: 0.01},
	}
}

// many returns n distinct, valid metrics.
func many(n int) []sample.Metric {
	ms := make([]sample.Metric, n)
	for i := range ms {
		ms[i] = sample.Metric{Name: fmt.Sprintf("m%02d", i), Value: float64(i)}
	}
	return ms
}

func TestNewNormalises(t *testing.T) {
	t.Parallel()
	cest := time.FixedZone("CEST", 2*60*60)
	in := []sample.Metric{
		{Name: "zeta", Value: 3},
		{Name: sample.RequestCount, Value: 1000},
		{Name: "alpha", Value: -1},
		{Name: sample.ErrorRate, Value: 0.5},
	}
	orig := slices.Clone(in)

	s, err := sample.New("  api \t\n", time.Date(2025, 6, 1, 0, 30, 0, 123456789, cest), in)
	if err != nil {
		t.Fatalf("New: %v", err)
	}

	if s.Service != "api" {
		t.Errorf("Service = %q, want %q (surrounding white space is trimmed)", s.Service, "api")
	}
	wantAt := time.Date(2025, 5, 31, 22, 30, 0, 123456000, time.UTC)
	if !s.At.Equal(wantAt) || s.At.Location() != time.UTC || s.At.Nanosecond() != 123456000 {
		t.Errorf("At = %v (loc %v, ns %d), want %v in UTC truncated to microseconds", s.At, s.At.Location(), s.At.Nanosecond(), wantAt)
	}
	wantNames := []string{"alpha", sample.ErrorRate, sample.RequestCount, "zeta"}
	if got := s.Names(); !slices.Equal(got, wantNames) {
		t.Errorf("Names() = %v, want %v (sorted by name)", got, wantNames)
	}
	if !slices.Equal(in, orig) {
		t.Errorf("New reordered the caller's slice: %v, want %v untouched", in, orig)
	}
	// The sample must not share its metrics with the caller's slice.
	in[0].Value = 99
	if v, _ := s.Value("zeta"); v != 3 {
		t.Errorf("Value(zeta) = %v after the caller changed its slice, want 3", v)
	}
}

func TestNewAcceptsBoundaries(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		service string
		at      time.Time
		metrics []sample.Metric
		why     string
	}{
		{"longest service", strings.Repeat("s", sample.MaxServiceLen), at, seed(), "MaxServiceLen bytes is still allowed"},
		{"service with inner space", "auth service", at, seed(), "only control characters are forbidden inside the name"},
		{"most metrics", "api", at, many(sample.MaxMetrics), "MaxMetrics metrics are still allowed"},
		{"longest metric name", "api", at, []sample.Metric{{Name: strings.Repeat("n", sample.MaxNameLen), Value: 1}}, "MaxNameLen bytes is still allowed"},
		{"name punctuation", "api", at, []sample.Metric{{Name: "http.5xx-rate_1m", Value: 1}}, "'.', '-' and '_' are allowed in names"},
		{"error rate 0", "api", at, []sample.Metric{{Name: sample.ErrorRate, Value: 0}}, "the interval [0,1] is closed"},
		{"error rate 1", "api", at, []sample.Metric{{Name: sample.ErrorRate, Value: 1}}, "every request failing is a valid error rate"},
		{"zero latency and count", "api", at, []sample.Metric{{Name: sample.LatencyP95, Value: 0}, {Name: sample.RequestCount, Value: 0}}, "zero is not negative: an idle service"},
		{"negative custom metric", "api", at, []sample.Metric{{Name: "temperature", Value: -12.5}}, "only the seed metrics have sign rules"},
		{"year 2000", "api", time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), seed(), "first year of the accepted range"},
		{"year 2261", "api", time.Date(2261, 12, 31, 23, 59, 59, 0, time.UTC), seed(), "last year of the accepted range"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := sample.New(tc.service, tc.at, tc.metrics)
			if err != nil {
				t.Fatalf("New: %v, want a valid sample (%s)", err, tc.why)
			}
			if len(s.Metrics) != len(tc.metrics) {
				t.Errorf("%d metrics, want %d (%s)", len(s.Metrics), len(tc.metrics), tc.why)
			}
		})
	}
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	withMetric := func(name string, v float64) []sample.Metric { return []sample.Metric{{Name: name, Value: v}} }
	cases := []struct {
		name    string
		service string
		at      time.Time
		metrics []sample.Metric
		// msg is a fragment of the error message that names this problem.
		msg string
		why string
	}{
		{"empty service", "", at, seed(), "service is missing", "every sample belongs to a service"},
		{"blank service", " \t ", at, seed(), "service is missing", "white space alone is trimmed to nothing"},
		{"service too long", strings.Repeat("s", sample.MaxServiceLen+1), at, seed(), "longer than", "names are bounded to fit the database column"},
		{"service with NUL", "api\x00x", at, seed(), "control characters", "control characters corrupt logs and keys"},
		{"service with DEL", "a\x7fb", at, seed(), "control characters", "DEL is a control character too"},
		{"service with inner newline", "api\nx", at, seed(), "control characters", "only leading and trailing white space is trimmed"},
		{"zero timestamp", "api", time.Time{}, seed(), "timestamp is missing", "event time is required"},
		{"year 1999", "api", time.Date(1999, 12, 31, 23, 59, 59, 0, time.UTC), seed(), "out of range", "before 2000 is a clock error"},
		{"year 2262", "api", time.Date(2262, 1, 1, 0, 0, 0, 0, time.UTC), seed(), "out of range", "beyond Unix nanoseconds, in which the detector keeps times"},
		{"year 10000", "api", time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), seed(), "out of range", "RFC 3339 cannot write five-digit years"},
		{"year judged in UTC", "api", time.Date(2000, 1, 1, 0, 30, 0, 0, time.FixedZone("CET", 3600)), seed(), "out of range", "local 2000-01-01 00:30+01:00 is 1999 in UTC"},
		{"no metrics", "api", at, nil, "no metrics", "a sample without values says nothing"},
		{"empty metrics", "api", at, []sample.Metric{}, "no metrics", "an empty list is the same as none"},
		{"too many metrics", "api", at, many(sample.MaxMetrics + 1), "at most", "bounded so one sample cannot blow up a model"},
		{"empty metric name", "api", at, withMetric("", 1), "must be 1 to", "a metric needs a name"},
		{"metric name too long", "api", at, withMetric(strings.Repeat("n", sample.MaxNameLen+1), 1), "must be 1 to", "names are bounded"},
		{"metric name with space", "api", at, withMetric("error rate", 1), "may hold only", "spaces are not allowed in names"},
		{"metric name with slash", "api", at, withMetric("a/b", 1), "may hold only", "only letters, digits, '_', '.', '-'"},
		{"metric name not ASCII", "api", at, withMetric("latência", 1), "may hold only", "letters means ASCII letters"},
		{"NaN", "api", at, withMetric("cpu", math.NaN()), "not a finite number", "NaN cannot be scored"},
		{"+Inf", "api", at, withMetric("cpu", math.Inf(1)), "not a finite number", "infinity cannot be scored"},
		{"-Inf", "api", at, withMetric("cpu", math.Inf(-1)), "not a finite number", "negative infinity cannot be scored"},
		{"negative request_count", "api", at, withMetric(sample.RequestCount, -1), "request_count -1 is negative", "a count cannot be negative"},
		{"negative latency", "api", at, withMetric(sample.LatencyP95, -0.5), "latency_p95 -0.5 is negative", "a duration cannot be negative"},
		{"error_rate below 0", "api", at, withMetric(sample.ErrorRate, -0.01), "outside [0,1]", "a fraction cannot be negative"},
		{"error_rate above 1", "api", at, withMetric(sample.ErrorRate, 1.01), "outside [0,1]", "a fraction cannot exceed 1"},
		{"duplicate names", "api", at, []sample.Metric{{Name: "cpu", Value: 1}, {Name: "mem", Value: 2}, {Name: "cpu", Value: 3}}, `"cpu" appears twice`, "which of the two values is meant is unknowable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := sample.New(tc.service, tc.at, tc.metrics)
			if !errors.Is(err, sample.ErrInvalid) {
				t.Fatalf("New error = %v, want one wrapping ErrInvalid (%s)", err, tc.why)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("New error = %q, want it to mention %q (%s)", err, tc.msg, tc.why)
			}
			if s.Service != "" || !s.At.IsZero() || s.Metrics != nil {
				t.Errorf("New returned %+v with the error, want the zero Sample", s)
			}
		})
	}
}

func TestNewReportsEveryProblem(t *testing.T) {
	t.Parallel()
	_, err := sample.New(" ", time.Time{}, []sample.Metric{
		{Name: "cpu", Value: math.NaN()},
		{Name: sample.ErrorRate, Value: 2},
		{Name: "dup", Value: 1},
		{Name: "dup", Value: 1},
	})
	if !errors.Is(err, sample.ErrInvalid) {
		t.Fatalf("New error = %v, want one wrapping ErrInvalid", err)
	}
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("New error is %T, want a joined error listing each problem", err)
	}
	if n := len(joined.Unwrap()); n != 5 {
		t.Errorf("New reported %d problems, want 5:\n%v", n, err)
	}
	for _, e := range joined.Unwrap() {
		if !errors.Is(e, sample.ErrInvalid) {
			t.Errorf("problem %q does not wrap ErrInvalid; each must, so any one can be classified", e)
		}
	}
	for _, frag := range []string{"service is missing", "timestamp is missing", "cpu is not a finite number", "error_rate 2 is outside", `"dup" appears twice`} {
		if !strings.Contains(err.Error(), frag) {
			t.Errorf("New error does not mention %q:\n%v", frag, err)
		}
	}
}

func TestValue(t *testing.T) {
	t.Parallel()
	s, err := sample.New("api", at, append(seed(), sample.Metric{Name: "a", Value: 7}, sample.Metric{Name: "zz", Value: -3}))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	cases := []struct {
		name   string
		metric string
		want   float64
		wantOK bool
		why    string
	}{
		{"first", "a", 7, true, "binary search finds the lowest name"},
		{"middle", sample.LatencyP95, 120, true, "a seed metric"},
		{"last", "zz", -3, true, "binary search finds the highest name"},
		{"absent before all", "0", 0, false, "a name sorting before every metric"},
		{"absent between", "m", 0, false, "a name sorting between metrics"},
		{"absent after all", "zzz", 0, false, "a name sorting after every metric"},
		{"case matters", "A", 0, false, "names are case-sensitive"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, ok := s.Value(tc.metric)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("Value(%q) = %v, %v; want %v, %v (%s)", tc.metric, got, ok, tc.want, tc.wantOK, tc.why)
			}
		})
	}
}

func TestNames(t *testing.T) {
	t.Parallel()
	s, err := sample.New("api", at, seed())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	want := []string{sample.ErrorRate, sample.LatencyP95, sample.RequestCount}
	got := s.Names()
	if !slices.Equal(got, want) {
		t.Fatalf("Names() = %v, want %v", got, want)
	}
	got[0] = "changed"
	if again := s.Names(); !slices.Equal(again, want) {
		t.Errorf("Names() = %v after the caller changed the previous result, want a fresh %v", again, want)
	}
	if n := (sample.Sample{}).Names(); len(n) != 0 {
		t.Errorf("Names() of the zero Sample = %v, want empty", n)
	}
}
