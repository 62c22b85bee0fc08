package detect

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/incident-engine/engine/domain/sample"
)

// TestStateVersion1IsRead checks that a state saved before windows kept float32 offsets
// (format version 1, float64 rows) is restored, so that an upgraded worker continues its
// services where they were instead of warming them up again: it judges the samples that
// follow as the detector that saved it, through a failure and a retraining, flags and models
// alike and scores within 1e-6, and it
// saves itself in the current format.
func TestStateVersion1IsRead(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 7))
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	next := func(i int) sample.Sample {
		lat := 120 + 10*rng.NormFloat64()
		if i >= 1700 && i < 1760 {
			lat *= 10 // a failure after the restore
		}
		return sample.Sample{Service: "api", At: at.Add(time.Duration(i) * time.Minute), Metrics: []sample.Metric{
			{Name: sample.ErrorRate, Value: max(0, 0.01+0.002*rng.NormFloat64())},
			{Name: sample.LatencyP95, Value: lat},
			{Name: "disk_bytes", Value: 4e9 + 1000*math.Sin(float64(i)/200) + 50*rng.NormFloat64()}, // a plain metric: its value is a feature
		}}
	}
	stream := make([]sample.Sample, 3000)
	for i := range stream {
		stream[i] = next(i)
	}
	models := map[int]Model{}
	run := func(d *Detector, s sample.Sample) Result {
		t.Helper()
		res, err := d.Observe(s)
		if err != nil {
			t.Fatal(err)
		}
		if res.Trained {
			m, err := d.Model()
			if err != nil {
				t.Fatal(err)
			}
			models[m.Version] = m
		}
		return res
	}
	whole, err := New("api", Config{})
	if err != nil {
		t.Fatal(err)
	}
	const cut = 1600
	for _, s := range stream[:cut] {
		run(whole, s)
	}
	old := whole.marshalState(1)
	restored, err := New("api", Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := restored.RestoreState(old, func(v int) (Model, error) {
		if m, ok := models[v]; ok {
			return m, nil
		}
		return Model{}, fmt.Errorf("no model v%d", v)
	}); err != nil {
		t.Fatalf("RestoreState of a version-1 state: %v", err)
	}
	anomalies, trainings := 0, 0
	for _, s := range stream[cut:] {
		want, got := run(whole, s), run(restored, s)
		if got.Anomalous != want.Anomalous || got.ModelVersion != want.ModelVersion || got.Trained != want.Trained || math.Abs(got.Score-want.Score) > 1e-6 {
			t.Fatalf("at %s the restored detector judged %+v, the one that saved it %+v", s.At.Format(time.RFC3339), got, want)
		}
		if want.Anomalous {
			anomalies++
		}
		if want.Trained {
			trainings++
		}
	}
	if anomalies == 0 || trainings == 0 {
		t.Fatalf("after the restore the stream raised %d anomalies and %d trainings; it is meant to check both", anomalies, trainings)
	}
	if st := restored.MarshalState(); string(st[4:12]) != string([]byte{stateVersion, 0, 0, 0, 0, 0, 0, 0}) {
		t.Errorf("the restored detector saves format version %v, want %d", st[4:12], stateVersion)
	}
}
