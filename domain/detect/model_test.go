package detect_test

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/incident-engine/engine/domain/detect"
)

// TestModelRoundTrip stores a trained model and restores it into a fresh detector, as a
// restarted worker does: without a warm-up, the restored detector judges like the original.
// Only the recent level of request_count is not part of the model, so scores differ a little
// while the flags agree.
func TestModelRoundTrip(t *testing.T) {
	t.Parallel()
	src := newSource(21)
	d := trained(t, src)
	if _, err := newDetector(t, detect.Config{}).Model(); !errors.Is(err, detect.ErrNoModel) {
		t.Fatalf("Model of an untrained detector: %v, want ErrNoModel", err)
	}
	m, err := d.Model()
	if err != nil {
		t.Fatal(err)
	}
	if m.Version != 1 || m.Rows != 256 || len(m.Features) != 3 || m.WindowTo.Sub(m.WindowFrom) != 255*time.Minute || len(m.Forest) == 0 {
		t.Fatalf("model %+v: want version 1 trained on the 256 warm-up rows", m)
	}
	restored := newDetector(t, detect.Config{})
	if err := restored.Restore(m); err != nil {
		t.Fatal(err)
	}
	for range 40 {
		s := src.next(t, nil)
		if r := observe(t, restored, s); !r.Judged || r.ModelVersion != 1 {
			t.Fatalf("restored detector: %+v, want judged by model 1 at once", r)
		}
		observe(t, d, s)
	}
	for i := range 50 {
		s := src.next(t, nil)
		if i%10 == 0 {
			s = src.next(t, func(l, _, _ *float64) { *l *= 5 })
		}
		a, b := observe(t, d, s), observe(t, restored, s)
		if math.Abs(a.Score-b.Score) > 0.05 || a.Threshold != b.Threshold || a.Anomalous != b.Anomalous || a.ModelVersion != b.ModelVersion {
			t.Fatalf("sample %d: original %+v, restored %+v; want the same judgement", i, a, b)
		}
	}

	bad := m
	bad.Forest = bad.Forest[:10]
	if err := newDetector(t, detect.Config{}).Restore(bad); err == nil {
		t.Error("a truncated forest was restored")
	}
	other := m
	other.Service = "db"
	if err := newDetector(t, detect.Config{}).Restore(other); err == nil {
		t.Error("a model of another service was restored")
	}
}
