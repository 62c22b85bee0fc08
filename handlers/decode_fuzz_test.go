package handlers_test

import (
	"errors"
	"math"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/incident-engine/engine/handlers"
)

// FuzzDecode feeds the decode stage arbitrary payloads: it never panics; it either rejects
// the payload with a permanent error (the dead-letter topic's) or passes on one message of
// decoded samples, one per sample of the input (up to MaxBatch of one service, in time order),
// keyed by its service, whose metrics are all finite and which the score stage reads back as
// valid samples.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		`{"service":"api","timestamp":"2026-11-26T17:00:00Z","error_rate":0.01,"latency_p95":120,"request_count":1000}`,
		`{"service":"db","timestamp":1764176400,"metrics":{"queue_depth":3,"cpu":0.5}}`,
		`{"service":"api","timestamp":"2026-11-26T17:00:00Z","error_rate":1.5}`,
		`{"service":"api","service":"db","timestamp":"2026-11-26T17:00:00Z","request_count":1}`,
		`{"service":"","timestamp":"x"}`,
		`not json`, `{}`, `[]`, `null`, `{"metrics":{"a":1e400}}`,
		`[{"service":"api","timestamp":1764176400,"error_rate":0.1},{"service":"api","timestamp":1764176460,"error_rate":0.2}]`,
		`[{"service":"api","timestamp":1764176460,"error_rate":0.1},{"service":"api","timestamp":1764176400,"error_rate":0.2}]`,
	} {
		f.Add([]byte(seed))
	}
	h := handlers.NewDecodeHandler(nil)
	f.Fuzz(func(t *testing.T, payload []byte) {
		out, err := h.Handle(message.NewMessage("m", payload))
		if err != nil {
			if !errors.Is(err, handlers.ErrPermanent) {
				t.Fatalf("rejected with a non-permanent error (it would be retried forever): %v", err)
			}
			return
		}
		if len(out) != 1 {
			t.Fatalf("%d messages out, want 1", len(out))
		}
		m := out[0]
		ds, err := handlers.DecodedBatch(m.Payload)
		if err != nil {
			t.Fatalf("output is not a decoded sample or batch: %v", err)
		}
		if len(ds) > handlers.MaxBatch {
			t.Fatalf("%d samples out, want at most %d", len(ds), handlers.MaxBatch)
		}
		var prev handlers.DecodedSample
		for i, d := range ds {
			if d.Service == "" || m.Metadata.Get(handlers.MetadataService) != d.Service {
				t.Fatalf("service %q keyed %q", d.Service, m.Metadata.Get(handlers.MetadataService))
			}
			if i > 0 && (d.Service != prev.Service || !d.Timestamp.After(prev.Timestamp)) {
				t.Fatalf("sample %d (%s at %s) after %s at %s: a batch is one service's, in time order", i+1, d.Service, d.Timestamp, prev.Service, prev.Timestamp)
			}
			for name, v := range d.Metrics {
				if math.IsNaN(v) || math.IsInf(v, 0) {
					t.Fatalf("metric %s = %v passed on", name, v)
				}
			}
			if _, err := d.Sample(); err != nil {
				t.Fatalf("the score stage rejects what decode passed on: %v", err)
			}
			prev = d
		}
	})
}
