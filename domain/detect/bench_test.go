package detect_test

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/incident-engine/engine/domain/detect"
	"github.com/incident-engine/engine/domain/sample"
)

// BenchmarkObserve measures the score stage's per-sample work once a model is trained:
// feature extraction, the forest's score and the threshold test. It must not allocate.
// Retraining is pushed out of the way here; BenchmarkObserveWithRetraining includes it.
func BenchmarkObserve(b *testing.B) { benchObserve(b, detect.Config{RetrainEvery: 1 << 62}) }

// BenchmarkObserveWithRetraining is BenchmarkObserve with the default daily retraining, one
// sample a minute, so the cost of retraining is spread over the samples as in the worker.
func BenchmarkObserveWithRetraining(b *testing.B) { benchObserve(b, detect.Config{}) }

func benchObserve(b *testing.B, cfg detect.Config) {
	d, err := detect.New("api", cfg)
	if err != nil {
		b.Fatal(err)
	}
	at := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	s := sample.Sample{Service: "api", Metrics: []sample.Metric{
		{Name: sample.ErrorRate}, {Name: sample.LatencyP95}, {Name: sample.RequestCount},
	}}
	fill := func(i int) {
		s.At = at.Add(time.Duration(i) * time.Minute)
		s.Metrics[0].Value = 0.01 + 0.001*float64(i%7)
		s.Metrics[1].Value = 170 + float64(i%23)
		s.Metrics[2].Value = 1000 + float64(i%41)
	}
	for i := range 256 {
		fill(i)
		if _, err := d.Observe(s); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	i := 256
	for b.Loop() {
		fill(i)
		i++
		if _, err := d.Observe(s); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "samples/s")
}

// BenchmarkActiveServiceBytes measures what one active service costs in memory: the heap a
// trained detector of the producer's three metrics holds, past its retraining window's
// filling, and the size of its saved state; and the heap of a service that has sent ten
// samples. It reports bytes per service.
func BenchmarkActiveServiceBytes(b *testing.B) {
	var heap, state, fresh float64
	for b.Loop() {
		heap, state = serviceBytes(b, 1500)
		fresh, _ = serviceBytes(b, 10)
	}
	b.ReportMetric(heap, "heap-bytes/service")
	b.ReportMetric(state, "state-bytes/service")
	b.ReportMetric(fresh, "heap-bytes/new-service")
}

// serviceBytes returns the heap a detector holds after samples samples of three metrics, and
// its saved state's size, averaged over 100 services.
func serviceBytes(b *testing.B, samples int) (heap, state float64) {
	const services = 100
	at := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	s := sample.Sample{Metrics: []sample.Metric{{Name: sample.ErrorRate}, {Name: sample.LatencyP95}, {Name: sample.RequestCount}}}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	ds := make([]*detect.Detector, services)
	for k := range ds {
		d, err := detect.New(fmt.Sprintf("svc-%d", k), detect.Config{})
		if err != nil {
			b.Fatal(err)
		}
		s.Service = fmt.Sprintf("svc-%d", k)
		for i := range samples {
			s.At = at.Add(time.Duration(i) * time.Minute)
			s.Metrics[0].Value = 0.01 + 0.001*float64((i*7)%11)
			s.Metrics[1].Value = 170 + float64((i*13)%23)
			s.Metrics[2].Value = 1000 + float64((i*17)%41)
			if _, err := d.Observe(s); err != nil {
				b.Fatal(err)
			}
		}
		ds[k] = d
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	heap = float64(after.HeapAlloc-before.HeapAlloc) / services
	state = float64(len(ds[0].MarshalState()))
	runtime.KeepAlive(ds)
	return heap, state
}
