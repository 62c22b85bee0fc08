package detect

import (
	"math"
	"testing"
	"time"

	"github.com/incident-engine/engine/domain/sample"
)

// TestWindowGrowsWithWhatItHolds checks that a window holds storage for the rows it has been
// given, not its whole capacity up front (a service that sent ten samples must not cost a
// day's window), and that it keeps the same rows in the same order as it grows and once it
// wraps.
func TestWindowGrowsWithWhatItHolds(t *testing.T) {
	t.Parallel()
	const capacity, dims = 1440, 4
	w := newWindow(capacity, dims)
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	push := func(i int) {
		w.push([]float64{float64(i), 0, 0, 0}, at.Add(time.Duration(i)*time.Minute), i%10 == 0, 0)
	}
	for i := range 10 {
		push(i)
	}
	if got := cap(w.ats); got > 64 {
		t.Errorf("after 10 rows the window holds room for %d, want at most 64", got)
	}
	for i := 10; i < capacity+100; i++ {
		push(i)
		if cap(w.ats) > capacity {
			t.Fatalf("after %d rows the window holds room for %d, beyond its capacity %d", i+1, cap(w.ats), capacity)
		}
	}
	if w.len() != capacity {
		t.Fatalf("%d rows held, want %d", w.len(), capacity)
	}
	for k := range w.len() {
		if want := float64(100 + k); w.value(k, 0) != want || !w.at(k).Equal(at.Add(time.Duration(100+k)*time.Minute)) {
			t.Fatalf("row %d holds sample %v at %v, want sample %v", k, w.value(k, 0), w.at(k), want)
		}
	}
	if want := capacity - capacity/10; w.clean != want {
		t.Errorf("%d rows for training, want %d (every tenth left out)", w.clean, want)
	}
}

// TestWarmUpHoldsLittle checks that a service that has sent ten samples holds storage for
// ten samples: its windows hold no more than their first growth, its calibration nothing,
// since it has no model to calibrate yet (`BenchmarkActiveServiceBytes` measures the bytes).
func TestWarmUpHoldsLittle(t *testing.T) {
	t.Parallel()
	d, err := New("api", Config{})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	s := sample.Sample{Service: "api", Metrics: []sample.Metric{{Name: sample.ErrorRate, Value: 0.01}, {Name: sample.LatencyP95, Value: 170}, {Name: sample.RequestCount, Value: 1000}}}
	for i := range 10 {
		s.At = at.Add(time.Duration(i) * time.Minute)
		if _, err := d.Observe(s); err != nil {
			t.Fatal(err)
		}
	}
	if w, r := cap(d.win.ats), cap(d.recent.ats); w > 64 || r > 64 {
		t.Errorf("windows hold room for %d and %d rows after 10 samples, want at most 64", w, r)
	}
	for name, e := range map[string]*empirical{"scores": &d.cal.scores, "single": &d.cal.single, "means": &d.cal.means} {
		if e.ring != nil {
			t.Errorf("calibration %s holds %d values' room before any model", name, len(e.ring))
		}
	}
}

// TestWindowKeepsSmallVariationsOfLargeValues checks that the float32 offsets a window keeps
// lose nothing a float64 would keep of a large counter's variation, before and after the
// rows are rebased on other medians, and that an absurd value is kept at float32's range
// rather than as an infinity.
func TestWindowKeepsSmallVariationsOfLargeValues(t *testing.T) {
	t.Parallel()
	w := newWindow(8, 2)
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for i := range 6 {
		w.push([]float64{4e9 + float64(i), 0.25 * float64(i)}, at.Add(time.Duration(i)*time.Minute), false, 0)
	}
	check := func(when string) {
		t.Helper()
		for k := range w.len() {
			if got, want := w.value(k, 0), 4e9+float64(k); got != want {
				t.Errorf("%s: row %d holds %.1f, want %.1f", when, k, got, want)
			}
			if got, want := w.value(k, 1), 0.25*float64(k); got != want {
				t.Errorf("%s: row %d holds %g in its second dimension, want %g", when, k, got, want)
			}
		}
	}
	check("as pushed")
	w.rebase([]float64{4e9 + 3, 0.5})
	check("rebased")
	w.push([]float64{1e300, 0}, at.Add(time.Hour), false, 0)
	if got := w.value(w.len()-1, 0); math.IsInf(got, 0) || got < 3e38 {
		t.Errorf("a value of 1e300 is kept as %g, want a finite value at float32's range", got)
	}
}
