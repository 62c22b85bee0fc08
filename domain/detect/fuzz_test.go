package detect_test

import (
	"bytes"
	"math"
	"testing"

	"github.com/incident-engine/engine/domain/detect"
	"github.com/incident-engine/engine/domain/forest"
)

// fuzzSeeds returns a trained detector's model and state, the bytes the fuzzers start from.
func fuzzSeeds(f *testing.F) (detect.Model, []byte, registry) {
	f.Helper()
	d := newDetector(f, detect.Config{WarmUp: 32, Forest: forest.Config{Trees: 10}})
	reg := registry{}
	for _, s := range stateStream(f)[:80] {
		judge(f, d, reg, s)
	}
	m, err := d.Model()
	if err != nil {
		f.Fatal(err)
	}
	return m, d.MarshalState(), reg
}

// FuzzRestoreModel feeds the model registry's bytes, damaged any way, to a detector: a
// forest or calibration that cannot be read is an error, never a panic, and a model that is
// restored scores every later sample finitely.
func FuzzRestoreModel(f *testing.F) {
	m, _, _ := fuzzSeeds(f)
	f.Add(m.Forest, m.Calibration)
	f.Add(m.Forest[:len(m.Forest)/2], m.Calibration)
	f.Add([]byte("IFOR"), []byte("DCAL"))
	stream := stateStream(f)[80:120]
	f.Fuzz(func(t *testing.T, forestBytes, calibration []byte) {
		mm := m
		mm.Forest, mm.Calibration = forestBytes, calibration
		d := newDetector(t, detect.Config{WarmUp: 32, Forest: forest.Config{Trees: 10}})
		if err := d.Restore(mm); err != nil {
			return
		}
		for _, s := range stream {
			r, err := d.Observe(s)
			if err != nil {
				return
			}
			if math.IsNaN(r.Score) || math.IsInf(r.Score, 0) {
				t.Fatalf("a restored model scored %v", r.Score)
			}
		}
	})
}

// FuzzRestoreState feeds a saved detector state, damaged any way, to RestoreState: it is an
// error or a detector that encodes back to the same bytes, never a panic.
func FuzzRestoreState(f *testing.F) {
	_, state, reg := fuzzSeeds(f)
	f.Add(state)
	f.Add(state[:len(state)/3])
	f.Add([]byte("DSTA"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d := newDetector(t, detect.Config{WarmUp: 32, Forest: forest.Config{Trees: 10}})
		if err := d.RestoreState(b, reg.model); err != nil {
			return
		}
		if got := d.MarshalState(); !bytes.Equal(got, b) {
			at := 0
			for at < len(got) && at < len(b) && got[at] == b[at] {
				at++
			}
			t.Fatalf("a restored state encodes to other bytes (%d, read %d), first at offset %d", len(got), len(b), at)
		}
	})
}
