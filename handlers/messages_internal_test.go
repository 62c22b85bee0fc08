package handlers

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/incident-engine/engine/domain/incident"
)

// TestStageJSONIsTheStandardLibrarys checks that the messages between stages, written with
// segmentio's encoding/json for speed, are byte for byte what the standard library writes
// (floats of every size, escapes in names, a lone sample and a batch), and read back the same,
// so a dead letter or a replayed topic reads as before.
func TestStageJSONIsTheStandardLibrarys(t *testing.T) {
	at := time.Date(2026, 11, 26, 17, 0, 0, 123456789, time.UTC)
	var batch []ScoredSample
	for i, v := range []float64{0, 1e-7, 0.1 + 0.2, 1043, 1 << 53, 1e21, 1.7976931348623157e308, math.SmallestNonzeroFloat64, -2.5e-300} {
		batch = append(batch, ScoredSample{
			DecodedSample: DecodedSample{
				Service: "api", Timestamp: at.Add(time.Duration(i) * time.Minute), ReceivedAt: at,
				Metrics: map[string]float64{"error_rate": v, "q<&>\u2028\u2029\"\\": -v, "z": float64(i)},
			},
			Score: v / 3, Threshold: 0.6, Judged: i%2 == 0, Anomalous: i%3 == 0, ModelVersion: i, WarmUpLeft: i % 2,
			Relearned: i == 4, Explanation: []incident.Contribution{{Metric: "latency\tp95", Share: v / (1 + v)}},
		})
	}
	for _, items := range [][]ScoredSample{batch[:1], batch} {
		got, err := encodeBatch(items)
		if err != nil {
			t.Fatal(err)
		}
		var want []byte
		if len(items) == 1 {
			want, err = json.Marshal(items[0])
		} else {
			want, err = json.Marshal(items)
		}
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Fatalf("stage JSON differs from the standard library's:\n got %s\nwant %s", got, want)
		}
		back, err := decodeBatch[ScoredSample](got, "scored sample")
		if err != nil {
			t.Fatal(err)
		}
		again, err := encodeBatch(back)
		if err != nil || string(again) != string(got) {
			t.Fatalf("read back and written again: %s (%v), want %s", again, err, got)
		}
	}
}

// TestReceivedAtOfABatch checks that the broker's receipt time, which the resolution ticker
// reads from the oldest pending message of the score and correlate stages, is found in a
// batch as in a lone sample, and that a payload without one says so.
func TestReceivedAtOfABatch(t *testing.T) {
	received := time.Date(2026, 11, 26, 17, 5, 0, 0, time.UTC)
	samples := []DecodedSample{
		{Service: "api", Timestamp: received.Add(-2 * time.Minute), ReceivedAt: received},
		{Service: "api", Timestamp: received.Add(-time.Minute), ReceivedAt: received},
	}
	for _, items := range [][]DecodedSample{samples[:1], samples} {
		payload, err := encodeBatch(items)
		if err != nil {
			t.Fatal(err)
		}
		if at, ok := ReceivedAt(payload); !ok || !at.Equal(received) {
			t.Errorf("receipt of %s: %s %v, want %s", payload, at, ok, received)
		}
	}
	for _, payload := range []string{`[]`, `not json`, `{"service":"api"}`} {
		if at, ok := ReceivedAt([]byte(payload)); ok {
			t.Errorf("receipt of %s: %s, want none", payload, at)
		}
	}
}
