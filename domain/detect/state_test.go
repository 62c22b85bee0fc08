package detect_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/incident-engine/engine/domain/detect"
	"github.com/incident-engine/engine/domain/sample"
)

// stateStream is two days of one-minute samples that take a detector through everything its
// state holds: the warm-up, the young model's retrainings, a daily retraining, a latency
// failure, and a plain metric's lasting step that is relearned as the new normal.
func stateStream(t testing.TB) []sample.Sample {
	t.Helper()
	rng := rand.New(rand.NewPCG(5, 5))
	out := make([]sample.Sample, 0, 2*1440)
	for m := range 2 * 1440 {
		day := 2 * math.Pi * float64(m) / 1440
		vals := map[string]float64{
			sample.LatencyP95:   max(1, 120+10*rng.NormFloat64()),
			sample.ErrorRate:    min(1, max(0, 0.01+0.003*rng.NormFloat64())),
			sample.RequestCount: 1000 * (1 + 0.4*math.Sin(day)) * math.Exp(0.05*rng.NormFloat64()),
			"queue_depth":       50 + 2*rng.NormFloat64(),
		}
		if m >= 800 && m < 840 {
			vals[sample.LatencyP95] *= 5
		}
		if m >= 2000 {
			vals["queue_depth"] += 30
		}
		out = append(out, mustSample(t, start.Add(time.Duration(m)*time.Minute), vals))
	}
	return out
}

// registry keeps every model a detector trained, by version, as the model registry does.
type registry map[int]detect.Model

func (r registry) keep(t testing.TB, d *detect.Detector, res detect.Result) {
	t.Helper()
	if !res.Trained {
		return
	}
	m, err := d.Model()
	if err != nil {
		t.Fatalf("Model after training: %v", err)
	}
	r[m.Version] = m
}

func (r registry) model(version int) (detect.Model, error) {
	m, ok := r[version]
	if !ok {
		return detect.Model{}, fmt.Errorf("no model v%d", version)
	}
	return m, nil
}

type judgement struct {
	Result detect.Result
	Shares []float64
}

func judge(t testing.TB, d *detect.Detector, reg registry, s sample.Sample) judgement {
	t.Helper()
	res := observe(t, d, s)
	reg.keep(t, d, res)
	j := judgement{Result: res}
	if res.Anomalous {
		j.Shares = make([]float64, len(d.Features()))
		d.Explain(j.Shares)
	}
	return j
}

// TestRestoredStateJudgesAlike checks that a detector restored from a saved state, at any
// point of a stream (warming up, just trained, in a failure, in a run of alarms about to be
// relearned), judges every later sample exactly as the detector that never stopped: same
// scores, flags, model versions, trainings and explanations, and ends in the same state.
func TestRestoredStateJudgesAlike(t *testing.T) {
	t.Parallel()
	stream := stateStream(t)
	cfg := detect.Config{}
	whole := newDetector(t, cfg)
	reg := registry{}
	var want []judgement
	relearned := false
	for _, s := range stream {
		j := judge(t, whole, reg, s)
		want = append(want, j)
		relearned = relearned || j.Result.Relearned
	}
	if !relearned || len(reg) < 4 {
		t.Fatalf("the stream relearned %v and trained %d models; it is meant to take the detector through both", relearned, len(reg))
	}
	end := whole.MarshalState()

	for _, cut := range []int{0, 1, 100, 256, 257, 700, 815, 1500, 2100, 2170, len(stream) - 1} {
		t.Run(fmt.Sprint(cut), func(t *testing.T) {
			t.Parallel()
			first := newDetector(t, cfg)
			reg := registry{}
			for _, s := range stream[:cut] {
				judge(t, first, reg, s)
			}
			saved := first.MarshalState()
			restored := newDetector(t, cfg)
			if err := restored.RestoreState(saved, reg.model); err != nil {
				t.Fatalf("RestoreState after %d samples: %v", cut, err)
			}
			if again := restored.MarshalState(); !bytes.Equal(again, saved) {
				t.Fatalf("the restored state encodes differently (%d bytes, saved %d)", len(again), len(saved))
			}
			for i, s := range stream[cut:] {
				if got := judge(t, restored, reg, s); !reflect.DeepEqual(got, want[cut+i]) {
					t.Fatalf("sample %d after a restore at %d: %+v, the uninterrupted detector %+v", cut+i, cut, got, want[cut+i])
				}
			}
			if !bytes.Equal(restored.MarshalState(), end) {
				t.Errorf("restored at %d, the detector ends in another state than the uninterrupted one", cut)
			}
		})
	}
}

// TestRestoreStateRejectsWhatDoesNotFit checks that a state is restored only into the
// detector of its own service and configuration, with its own model, and that damaged bytes
// are an error, never a detector that judges differently.
func TestRestoreStateRejectsWhatDoesNotFit(t *testing.T) {
	t.Parallel()
	stream := stateStream(t)
	d := newDetector(t, detect.Config{})
	reg := registry{}
	for _, s := range stream[:600] {
		judge(t, d, reg, s)
	}
	saved := d.MarshalState()

	other, err := detect.New("db", detect.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.RestoreState(saved, reg.model); !errors.Is(err, detect.ErrStateMismatch) {
		t.Errorf("restore into another service: %v, want ErrStateMismatch", err)
	}
	if err := newDetector(t, detect.Config{Context: 5}).RestoreState(saved, reg.model); !errors.Is(err, detect.ErrStateMismatch) {
		t.Errorf("restore under another context: %v, want ErrStateMismatch", err)
	}
	if err := newDetector(t, detect.Config{}).RestoreState(saved, registry{}.model); err == nil {
		t.Errorf("restore without its model: no error")
	}
	// A stored model that cannot be read (damaged, or of a format this version rejects) is a
	// mismatch: the score stage then starts from what it can read instead of retrying a
	// message forever.
	damaged := registry{}
	for v, m := range reg {
		m.Forest = bytes.Clone(m.Forest)
		m.Forest[len(m.Forest)/2] ^= 0xff
		damaged[v] = m
	}
	if err := newDetector(t, detect.Config{}).RestoreState(saved, damaged.model); !errors.Is(err, detect.ErrStateMismatch) {
		t.Errorf("restore with an unreadable model: %v, want ErrStateMismatch", err)
	}
	for _, n := range []int{0, 3, 20, len(saved) / 2, len(saved) - 1} {
		if err := newDetector(t, detect.Config{}).RestoreState(saved[:n], reg.model); err == nil {
			t.Errorf("restore of the first %d of %d bytes: no error", n, len(saved))
		}
	}
	if err := newDetector(t, detect.Config{}).RestoreState(append(bytes.Clone(saved), 0), reg.model); err == nil {
		t.Errorf("restore with a trailing byte: no error")
	}
	// A failed restore leaves the detector as it was.
	fresh := newDetector(t, detect.Config{})
	before := fresh.MarshalState()
	_ = fresh.RestoreState(saved[:len(saved)/2], reg.model)
	if !bytes.Equal(fresh.MarshalState(), before) {
		t.Errorf("a failed restore changed the detector")
	}
}
