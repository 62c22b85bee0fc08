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
// go test -run '^$' -bench 'Pipeline$' -benchtime 3000x ./cmd/worker/
func BenchmarkPipeline(b *testing.B) {
	benchPipeline(b, []string{"bench-api", "bench-db", "bench-auth"}, 64)
}

// BenchmarkPipelineFleet is BenchmarkPipeline with 1,000 services, each warmed up first, so
// that every partition is busy and each service's samples are few and far between, as in a
// fleet. Run it with a count of at least 10,000:
// go test -run '^$' -bench 'PipelineFleet$' -benchtime 20000x -timeout 30m ./cmd/worker/ (make bench does)
func BenchmarkPipelineFleet(b *testing.B) {
	services := make([]string, 1000)
	for i := range services {
		services[i] = fmt.Sprintf("fleet-%04d", i)
	}
	benchPipeline(b, services, 32)
}

// benchPipeline warms up each service's model with warmUp samples, then times b.N samples
// spread over the services until every one is correlated.
func benchPipeline(b *testing.B, services []string, warmUp int) {
	e := startEngine(b, func(c *wire.Config) { c.Detect.WarmUp = warmUp })
	for _, s := range services {
		e.publishRaw(b, s, samplesJSON(s, simStart, warmUp, normalLatency)...)
	}
	e.waitProcessed(b, simStart.Add(time.Duration(warmUp-1)*time.Minute), services...)

	per := max(1, b.N/len(services))
	from := simStart.Add(time.Duration(warmUp) * time.Minute)
	b.ResetTimer()
	for _, s := range services {
		e.publishRaw(b, s, samplesJSON(s, from, per, normalLatency)...)
	}
	e.waitProcessed(b, from.Add(time.Duration(per-1)*time.Minute), services...)
	b.StopTimer()
	b.ReportMetric(float64(per*len(services))/b.Elapsed().Seconds(), "samples/s")
}
