package detect

import (
	"math"
	"testing"
	"time"

	"github.com/incident-engine/engine/domain/sample"
)

// TestExplainRanksTheMetricsThatDidNotMove checks the deviation explanation's rule on chosen
// surprises: the metrics beyond what one sample in ten shows share the explanation by their
// excess; those within it get next to nothing, yet rank by how surprising they are, so that
// the top of the ranking an operator (or HitRate) reads is never filled in metric order.
func TestExplainRanksTheMetricsThatDidNotMove(t *testing.T) {
	t.Parallel()
	d, err := New("api", Config{WarmUp: 64})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	s := sample.Sample{Service: "api", Metrics: []sample.Metric{{Name: "a"}, {Name: "b"}, {Name: "c"}, {Name: "d"}}}
	for i := range 80 {
		s.At = at.Add(time.Duration(i) * time.Minute)
		for j := range s.Metrics {
			s.Metrics[j].Value = float64(10*j + (i*(j+3))%7)
		}
		if _, err := d.Observe(s); err != nil {
			t.Fatal(err)
		}
	}
	if d.model == nil {
		t.Fatal("no model after the warm-up")
	}
	// Every feature quiet but these: metric c far out (10 nats), d a little odd (1.5 nats,
	// within one sample in ten), b at its median, a barely odd (0.5).
	clear(d.surprise)
	feature := func(metric int) int {
		for f, m := range d.owner {
			if m == metric {
				return f
			}
		}
		t.Fatalf("no feature of metric %d", metric)
		return 0
	}
	d.surprise[feature(0)], d.surprise[feature(2)], d.surprise[feature(3)] = 0.5, 10, 1.5
	out := make([]float64, 4)
	if !d.Explain(out) {
		t.Fatal("Explain of a trained detector reported false")
	}
	sum := out[0] + out[1] + out[2] + out[3]
	if math.Abs(sum-1) > 1e-12 || out[2] < 1-1e-5 {
		t.Fatalf("shares %v: want c to take all but a millionth or so, summing to 1", out)
	}
	if !(out[3] > out[0] && out[0] > out[1] && out[1] == 0 && out[3] < 1e-5) {
		t.Errorf("shares %v: want d > a > b = 0, each next to nothing", out)
	}
}
