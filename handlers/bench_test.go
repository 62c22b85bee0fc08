package handlers_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/incident-engine/engine/handlers"
)

// BenchmarkStagesPerSample measures decode and score alone, without the broker, on one
// warmed-up service's samples sent singly and 20 to a message: the handlers' own cost a sample
// (JSON in and out, validation, the detector), the part of the pipeline's CPU that is not
// Kafka's, Watermill's or PostgreSQL's. go test -run '^$' -bench StagesPerSample ./handlers/
func BenchmarkStagesPerSample(b *testing.B) {
	for _, batch := range []int{1, 20} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			score := newBenchScore(b)
			decode := handlers.NewDecodeHandler(nil)
			rng := rand.New(rand.NewPCG(1, 1))
			at := scoreStart.Add(time.Hour)
			payload := func() []byte {
				parts := make([]string, batch)
				for i := range parts {
					at = at.Add(time.Minute)
					parts[i] = fmt.Sprintf(`{"service":"api","timestamp":%q,"error_rate":%g,"latency_p95":%g,"request_count":%d}`,
						at.Format(time.RFC3339), 0.01+0.004*rng.Float64(), 175+15*rng.Float64(), 1000+rng.IntN(80))
				}
				if batch == 1 {
					return []byte(parts[0])
				}
				return []byte("[" + strings.Join(parts, ",") + "]")
			}
			msgs := make([][]byte, b.N/batch+1)
			for i := range msgs {
				msgs[i] = payload()
			}
			b.ReportAllocs()
			b.ResetTimer()
			var decoding time.Duration
			for _, p := range msgs {
				start := time.Now()
				decoded, err := decode.Handle(message.NewMessage("in", p))
				decoding += time.Since(start)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := score.Handle(decoded[0]); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			n := float64(len(msgs) * batch)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/sample")
			b.ReportMetric(float64(decoding.Nanoseconds())/n, "decode-ns/sample")
		})
	}
}

// newBenchScore returns a score stage whose service api has a trained model.
func newBenchScore(b *testing.B) *handlers.ScoreHandler {
	b.Helper()
	h := newScoreHandler(b)
	rng := rand.New(rand.NewPCG(2, 2))
	for i := 1; i <= testWarmUp; i++ {
		if _, err := h.Handle(decodedMsg(b, "api", scoreStart.Add(time.Duration(i)*time.Minute), normalMetrics(rng))); err != nil {
			b.Fatal(err)
		}
	}
	return h
}
