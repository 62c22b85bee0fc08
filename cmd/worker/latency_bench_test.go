package main

import (
	"context"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// BenchmarkPipelineLatency offers live traffic at a steady rate (PIPELINE_RATE samples a
// second, default 1,000) from 1,000 warmed-up services and reports how long a sample takes
// from its arrival at the broker to the transaction that correlates it (the service's watch
// row: its updated_at less the record's broker timestamp), as percentiles over the samples a
// poll of the watches saw, with the rate the pipeline kept up with. Run it with a count of at
// least 10,000: go test -run '^$' -bench 'PipelineLatency$' -benchtime 20000x ./cmd/worker/
func BenchmarkPipelineLatency(b *testing.B) {
	rate := 1000.0
	if v := os.Getenv("PIPELINE_RATE"); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r <= 0 {
			b.Fatalf("PIPELINE_RATE=%q: want a positive number of samples a second", v)
		}
		rate = r
	}
	const warmUp = 256
	services := fleet("live", 1000)
	e := warmedUp(b, services, warmUp)

	producer := e.producer(b, sarama.NewHashPartitioner)
	defer producer.Close()

	per := max(1, b.N/len(services))
	total := per * len(services)
	from := simStart.Add(time.Duration(warmUp) * time.Minute)
	// The sample of round r of service s, its event time a minute a round.
	payload := func(k int) (string, string) {
		s := services[k%len(services)]
		return s, samplesJSON(s, from.Add(time.Duration(k/len(services))*time.Minute), 1, normalLatency)[0]
	}

	// Poll the watches: each time a service's latest sample changed, its latency is one
	// observation.
	ctx, cancel := context.WithCancel(context.Background())
	var latencies []float64
	var polled sync.WaitGroup
	polled.Add(1)
	go func() {
		defer polled.Done()
		seen := map[string]time.Time{}
		since := time.Time{}
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			// Only the watches written lately: updated_at is the writing transaction's
			// start (now()), so a margin keeps those that committed after a poll began.
			rows, err := e.pool.Query(ctx, `SELECT service, last_sample_at, updated_at, extract(epoch FROM updated_at - last_received_at)
				FROM service_watch WHERE last_sample_at >= $1 AND updated_at >= $2`, from, since.Add(-10*time.Second))
			if err == nil {
				for rows.Next() {
					var s string
					var at, updated time.Time
					var secs float64
					if rows.Scan(&s, &at, &updated, &secs) == nil && !seen[s].Equal(at) {
						seen[s] = at
						latencies = append(latencies, secs*1000)
						if updated.After(since) {
							since = updated
						}
					}
				}
				rows.Close()
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()

	b.ResetTimer()
	start := time.Now()
	pace := time.NewTicker(5 * time.Millisecond)
	for sent := 0; sent < total; {
		<-pace.C
		due := min(total, int(rate*time.Since(start).Seconds()))
		batch := make([]*sarama.ProducerMessage, 0, due-sent)
		for ; sent < due; sent++ {
			key, value := payload(sent)
			batch = append(batch, &sarama.ProducerMessage{Topic: "metrics", Key: sarama.StringEncoder(key), Value: sarama.StringEncoder(value)})
		}
		if err := producer.SendMessages(batch); err != nil {
			b.Fatal(err)
		}
	}
	pace.Stop()
	offered := float64(total) / time.Since(start).Seconds()
	e.waitProcessedWithin(b, 10*time.Minute, from.Add(time.Duration(per-1)*time.Minute), services...)
	b.StopTimer()
	cancel()
	polled.Wait()
	if len(latencies) < total/2 {
		b.Fatalf("the polls saw %d of %d samples: too few to tell a latency", len(latencies), total)
	}
	slices.Sort(latencies)
	q := func(p float64) float64 { return latencies[int(p*float64(len(latencies)-1))] }
	b.ReportMetric(offered, "offered-samples/s")
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "samples/s")
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(latencies[len(latencies)-1], "max-ms")
}
