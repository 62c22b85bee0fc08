package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/incident-engine/engine/wire"
)

// BenchmarkPipeline measures end-to-end throughput: raw samples published to Kafka, through
// decode, score (trained models), correlate (one PostgreSQL transaction per sample) and on,
// until every sample is correlated and the outbox is drained. Run it with a fixed count, e.g.
// go test -run '^$' -bench Pipeline -benchtime 3000x ./cmd/worker/
func BenchmarkPipeline(b *testing.B) {
	e := startEngine(b, func(c *wire.Config) { c.Detect.WarmUp = 64 })
	services := []string{"bench-api", "bench-db", "bench-auth"}
	for _, s := range services {
		e.publishRaw(b, s, samplesJSON(s, simStart, 64, normalLatency)...)
	}
	e.waitProcessed(b, simStart.Add(63*time.Minute), services...)

	per := max(1, b.N/len(services))
	from := simStart.Add(64 * time.Minute)
	b.ResetTimer()
	for _, s := range services {
		e.publishRaw(b, s, samplesJSON(s, from, per, normalLatency)...)
	}
	e.waitProcessed(b, from.Add(time.Duration(per-1)*time.Minute), services...)
	b.StopTimer()
	b.ReportMetric(float64(per*len(services))/b.Elapsed().Seconds(), "samples/s")
}

// BenchmarkPipelineFleet is BenchmarkPipeline with 1,000 services, each warmed up first, so
// that every partition is busy and each service's samples are few and far between, as in a
// fleet. Run it with a count of at least 10,000:
// go test -run '^$' -bench PipelineFleet -benchtime 20000x -timeout 30m ./cmd/worker/
func BenchmarkPipelineFleet(b *testing.B) {
	e := startEngine(b, func(c *wire.Config) { c.Detect.WarmUp = 32 })
	services := make([]string, 1000)
	for i := range services {
		services[i] = fmt.Sprintf("fleet-%04d", i)
		e.publishRaw(b, services[i], samplesJSON(services[i], simStart, 32, normalLatency)...)
	}
	e.waitProcessed(b, simStart.Add(31*time.Minute), services...)
	per := max(1, b.N/len(services))
	from := simStart.Add(32 * time.Minute)
	b.ResetTimer()
	for _, s := range services {
		e.publishRaw(b, s, samplesJSON(s, from, per, normalLatency)...)
	}
	e.waitProcessed(b, from.Add(time.Duration(per-1)*time.Minute), services...)
	b.StopTimer()
	b.ReportMetric(float64(per*len(services))/b.Elapsed().Seconds(), "samples/s")
}
