package handlers_test

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/incident-engine/engine/domain/detect"
	"github.com/incident-engine/engine/handlers"
)

// batchedStream is the samples of singles sent as a shipper that buffers sends them: each
// service's next 1 to 7 samples to a message (a JSON array, a lone one as an object), the
// services taking turns, on one partition.
func batchedStream(t *testing.T, singles *memLog) *memLog {
	t.Helper()
	per := map[string][]handlers.DecodedSample{}
	var order []string
	for _, m := range singles.msgs {
		d := decodeBody[handlers.DecodedSample](t, m.Payload)
		if _, ok := per[d.Service]; !ok {
			order = append(order, d.Service)
		}
		per[d.Service] = append(per[d.Service], d)
	}
	var log memLog
	for round := 0; len(log.msgs) == 0 || len(per) > 0; round++ {
		for i, svc := range order {
			left := per[svc]
			if len(left) == 0 {
				delete(per, svc)
				continue
			}
			n := min(len(left), 1+(round*3+i)%7)
			var payload []byte
			var err error
			if n == 1 {
				payload, err = json.Marshal(left[0])
			} else {
				payload, err = json.Marshal(left[:n])
			}
			if err != nil {
				t.Fatal(err)
			}
			m := message.NewMessage("decoded-"+svc+"-"+left[0].Timestamp.Format(time.RFC3339), payload)
			m.Metadata.Set(handlers.MetadataService, svc)
			m.Metadata.Set(offsetKey, strconv.Itoa(len(log.msgs)))
			log.msgs = append(log.msgs, m)
			per[svc] = left[n:]
		}
	}
	return &log
}

// perSample splits outputs (messages of one scored sample or a batch) into each sample's
// output, by service and time.
func perSample(t *testing.T, outs map[string]string) map[string]string {
	t.Helper()
	got := map[string]string{}
	for _, p := range outs {
		var batch []json.RawMessage
		if p[0] != '[' {
			batch = []json.RawMessage{json.RawMessage(p)}
		} else if err := json.Unmarshal([]byte(p), &batch); err != nil {
			t.Fatal(err)
		}
		for _, raw := range batch {
			s := decodeBody[handlers.ScoredSample](t, raw)
			key := s.Service + "@" + s.Timestamp.Format(time.RFC3339)
			if _, ok := got[key]; ok {
				t.Fatalf("sample %s scored in two messages", key)
			}
			got[key] = string(raw)
		}
	}
	return got
}

// TestScoreJudgesABatchAsItsSamplesAlone checks that a batch of a service's samples is judged
// exactly as its samples are one by one: the stream sent in batches of 1 to 7 gives, sample
// for sample, the outputs of the stream sent singly (anomalies, explanations, model versions
// included), one output message for each input message.
func TestScoreJudgesABatchAsItsSamplesAlone(t *testing.T) {
	t.Parallel()
	singles := durableStream(t)
	batched := batchedStream(t, singles)
	one, many := uninterrupted(t, singles), uninterrupted(t, batched)
	if len(many) != len(batched.msgs) || len(batched.msgs) >= len(singles.msgs)/3 {
		t.Fatalf("%d outputs for %d batched messages of %d samples", len(many), len(batched.msgs), len(singles.msgs))
	}
	want, got := perSample(t, one), perSample(t, many)
	compareOutputs(t, got, want)
	anomalous := 0
	for _, p := range got {
		if decodeBody[handlers.ScoredSample](t, []byte(p)).Anomalous {
			anomalous++
		}
	}
	if anomalous == 0 {
		t.Error("no anomaly in the batched stream's outputs: the meltdown went unseen")
	}
}

// failingRegistry refuses the first save of each service's models, as a database away for a
// moment does, and remembers the last sample each refused model was trained on.
type failingRegistry struct {
	*memRegistry
	mu      sync.Mutex
	refused map[string]time.Time
}

func (r *failingRegistry) Save(ctx context.Context, m detect.Model) error {
	r.mu.Lock()
	if _, ok := r.refused[m.Service]; !ok {
		r.refused[m.Service] = m.WindowTo
		r.mu.Unlock()
		return errors.New("connection refused")
	}
	r.mu.Unlock()
	return r.memRegistry.Save(ctx, m)
}

// TestScoreBatchThatFailsPartWayIsJudgedOnce checks a batch whose judging fails part way
// through: a model trained at one of its samples cannot be saved. Retried at once (the
// router's retry) or after the worker is killed (redelivered to a new one), every sample of it
// is judged once, and the outputs are exactly those of a worker that never failed.
func TestScoreBatchThatFailsPartWayIsJudgedOnce(t *testing.T) {
	t.Parallel()
	log := batchedStream(t, durableStream(t))
	n := len(log.msgs)
	want := uninterrupted(t, log)

	for _, kill := range []bool{false, true} {
		t.Run(map[bool]string{false: "retried", true: "killed and redelivered"}[kill], func(t *testing.T) {
			t.Parallel()
			reg := &failingRegistry{memRegistry: newMemRegistry(), refused: map[string]time.Time{}}
			states := &memStates{}
			w := newDurableWorker(t, reg, states, log)
			got := map[string]string{}
			failures, partWay := 0, 0
			for i := 0; i < n; i++ {
				in := log.msgs[i]
				m := message.NewMessage(in.UUID, in.Payload)
				m.Metadata = maps.Clone(in.Metadata)
				out, err := w.h.Handle(m)
				if err != nil {
					if failures++; failures > 3 {
						t.Fatalf("message %d: %v, after %d failed attempts", i, err, failures-1)
					}
					ds, derr := handlers.DecodedBatch(in.Payload)
					if derr != nil {
						t.Fatal(derr)
					}
					if reg.refused[ds[0].Service].Before(ds[len(ds)-1].Timestamp) {
						partWay++ // the refused model was trained before the batch's last sample
					}
					if kill {
						w = newDurableWorker(t, reg, states, log)
					}
					i-- // the same message again
					continue
				}
				for _, o := range out {
					if prev, ok := got[o.UUID]; ok && prev != string(o.Payload) {
						t.Fatalf("output %s published twice, differently", o.UUID)
					}
					got[o.UUID] = string(o.Payload)
				}
			}
			if failures != 3 || partWay == 0 {
				t.Fatalf("%d failed attempts, %d part way through a batch; want one a service, at least one part way", failures, partWay)
			}
			compareOutputs(t, got, want)
		})
	}
}

// TestScoreLateBatchIsDeadLetteredWhole checks a batch whose first sample is not after its
// service's last one although a later one is: it goes to the dead letters whole, as it came,
// and a worker that restores the service and replays the input past it skips it whole too, so
// the outputs before and after it are those of a stream without it.
func TestScoreLateBatchIsDeadLetteredWhole(t *testing.T) {
	t.Parallel()
	clean := batchedStream(t, durableStream(t))
	want := uninterrupted(t, clean)

	const k = 60
	var first, last handlers.DecodedSample
	for _, m := range clean.msgs[:k] {
		ds, err := handlers.DecodedBatch(m.Payload)
		if err != nil {
			t.Fatal(err)
		}
		if ds[0].Service == "api" {
			if first.Service == "" {
				first = ds[0]
			}
			last = ds[len(ds)-1]
		}
	}
	after := first
	after.Timestamp = last.Timestamp.Add(30 * time.Second) // between api's last sample and its next
	payload, err := json.Marshal([]handlers.DecodedSample{first, after})
	if err != nil {
		t.Fatal(err)
	}
	late := message.NewMessage("late", payload)
	late.Metadata.Set(handlers.MetadataService, "api")
	withLate := &memLog{}
	for _, m := range append(append(clean.msgs[:k:k], late), clean.msgs[k:]...) {
		c := message.NewMessage(m.UUID, m.Payload)
		c.Metadata = maps.Clone(m.Metadata)
		c.Metadata.Set(offsetKey, strconv.Itoa(len(withLate.msgs)))
		withLate.msgs = append(withLate.msgs, c)
	}

	reg, states := newMemRegistry(), &memStates{}
	got := map[string]string{}
	newDurableWorker(t, reg, states, withLate).run(t, withLate, 0, k, got)
	if _, err := newDurableWorker(t, reg, states, withLate).h.Handle(withLate.msgs[k]); !errors.Is(err, handlers.ErrPermanent) || !strings.Contains(err.Error(), "older") {
		t.Fatalf("a batch beginning before its service's last sample: %v, want a permanent error saying it is older", err)
	}
	// A new worker again: it restores api from a state before the late batch and replays past it.
	newDurableWorker(t, reg, states, withLate).run(t, withLate, k+1, len(withLate.msgs), got)
	compareOutputs(t, got, want)
}
