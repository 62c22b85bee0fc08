package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/incident-engine/engine/handlers"
	"github.com/incident-engine/engine/wire"
)

// BenchmarkPipeline measures end-to-end throughput: raw samples published to Kafka, through
// decode, score (trained models), correlate (one PostgreSQL transaction per sample) and on,
// until every sample is correlated and the outbox is drained. Run it with a fixed count, e.g.
// go test -run '^$' -bench 'Pipeline$' -benchtime 3000x ./cmd/worker/
func BenchmarkPipeline(b *testing.B) {
	benchPipeline(b, []string{"bench-api", "bench-db", "bench-auth"}, 64, 1)
}

// BenchmarkPipelineFleet is BenchmarkPipeline with 1,000 services, each warmed up first, so
// that every partition is busy and each service's samples are few and far between, as in a
// fleet. Run it with a count of at least 10,000:
// go test -run '^$' -bench 'PipelineFleet$' -benchtime 20000x -timeout 30m ./cmd/worker/ (make bench does)
func BenchmarkPipelineFleet(b *testing.B) { benchPipeline(b, fleet("fleet", 1000), 256, 1) }

// BenchmarkPipelineFleetBatched is BenchmarkPipelineFleet with each service's samples sent 20
// to a message (a JSON array), as a shipper that buffers, or one catching up, sends them. With
// a count of a million it is the backlog after an outage (make bench runs it so):
// go test -run '^$' -bench 'PipelineFleetBatched$' -benchtime 1000000x -timeout 30m ./cmd/worker/
func BenchmarkPipelineFleetBatched(b *testing.B) { benchPipeline(b, fleet("fleet", 1000), 256, 20) }

// fleet names n services.
func fleet(prefix string, n int) []string {
	services := make([]string, n)
	for i := range services {
		services[i] = fmt.Sprintf("%s-%04d", prefix, i)
	}
	return services
}

// warmedUp starts an engine and brings each service to a steady state: its model trained on
// warmUp samples, a minute apart and sent in batches, the last of them a minute before
// simStart plus warmUp minutes, where the timed samples begin.
//
// It stands for a fleet that has run for a while. The retraining window is as long as the
// warm-up, so that no service retrains in the timed part: a service retrains as its window
// grows only twice in its life (at 512 and 1,024 samples with the defaults), then once a day,
// which at a sample every 10 seconds is one training for 8,640 samples. The trees are those of
// the worker's default warm-up of 256: as deep, so as costly to walk. And the services are
// out of step, as in a fleet: service i of n starts i·c/n samples earlier, where c is the
// checkpoint period (a saved state every handlers.DefaultCheckpointEvery samples of a
// service), so that their checkpoints fall evenly over the timed samples instead of all at
// once.
func warmedUp(b *testing.B, services []string, warmUp int) *engine {
	e := startEngine(b, func(c *wire.Config) { c.Detect.WarmUp, c.Detect.RetrainWindow = warmUp, warmUp })
	for i, s := range services {
		early := i * handlers.DefaultCheckpointEvery / len(services)
		e.publishRaw(b, s, batches(samplesJSON(s, simStart.Add(-time.Duration(early)*time.Minute), warmUp+early, normalLatency), 64)...)
	}
	e.waitProcessed(b, simStart.Add(time.Duration(warmUp-1)*time.Minute), services...)
	return e
}

// benchPipeline warms up each service's model with warmUp samples, then times b.N samples
// spread over the services, batch of a service's samples to a message, until every one is
// correlated.
func benchPipeline(b *testing.B, services []string, warmUp, batch int) {
	e := warmedUp(b, services, warmUp)

	per := max(1, b.N/len(services))
	from := simStart.Add(time.Duration(warmUp) * time.Minute)
	b.ResetTimer()
	self, pg := ownCPU(b), postgresCPU(b)
	for _, s := range services {
		e.publishRaw(b, s, batches(samplesJSON(s, from, per, normalLatency), batch)...)
	}
	// A backlog of a million samples takes minutes: bound the wait by the count, not by the
	// tests' four minutes.
	e.waitProcessedWithin(b, max(4*time.Minute, time.Duration(per*len(services))*time.Second/200), from.Add(time.Duration(per-1)*time.Minute), services...)
	b.StopTimer()
	n := float64(per * len(services))
	b.ReportMetric(n/b.Elapsed().Seconds(), "samples/s")
	// CPU per sample, steadier than the rate on a shared machine: this process (the worker,
	// the in-process broker and the publishing) and PostgreSQL's.
	b.ReportMetric(float64((ownCPU(b)-self).Microseconds())/n, "go-cpu-µs/sample")
	b.ReportMetric(float64((postgresCPU(b)-pg).Microseconds())/n, "pg-cpu-µs/sample")
}

// ownCPU is the CPU time this process has used.
func ownCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// postgresCPU is the CPU time the running postgres processes have used (Linux /proc).
func postgresCPU(b *testing.B) time.Duration {
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		b.Fatal(err)
	}
	var ticks int64
	for _, path := range stats {
		raw, err := os.ReadFile(path)
		if err != nil || !bytes.Contains(raw, []byte("(postgres)")) {
			continue // gone, or not PostgreSQL
		}
		// Fields after the command's closing parenthesis: state is the 3rd field of the
		// line, utime the 14th and stime the 15th.
		f := bytes.Fields(raw[bytes.LastIndexByte(raw, ')')+1:])
		for _, i := range []int{11, 12} {
			v, err := strconv.ParseInt(string(f[i]), 10, 64)
			if err == nil {
				ticks += v
			}
		}
	}
	return time.Duration(ticks) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

// batches joins samples into JSON arrays of up to n each; n of 1 keeps them as they are.
func batches(samples []string, n int) []string {
	if n <= 1 {
		return samples
	}
	var out []string
	for i := 0; i < len(samples); i += n {
		out = append(out, "["+strings.Join(samples[i:min(i+n, len(samples))], ",")+"]")
	}
	return out
}
