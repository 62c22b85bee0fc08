package handlers_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/incident-engine/engine/domain/detect"
	"github.com/incident-engine/engine/handlers"
)

// memRegistry is a model registry in memory, every version kept.
type memRegistry struct {
	mu     sync.Mutex
	models map[string]map[int]detect.Model
}

func newMemRegistry() *memRegistry { return &memRegistry{models: map[string]map[int]detect.Model{}} }

func (r *memRegistry) Latest(_ context.Context, service string) (detect.Model, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	vs := r.models[service]
	if len(vs) == 0 {
		return detect.Model{}, false, nil
	}
	return vs[slices.Max(slices.Collect(maps.Keys(vs)))], true, nil
}

func (r *memRegistry) Version(_ context.Context, service string, version int) (detect.Model, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.models[service][version]
	return m, ok, nil
}

func (r *memRegistry) Save(_ context.Context, m detect.Model) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.models[m.Service] == nil {
		r.models[m.Service] = map[int]detect.Model{}
	}
	if _, ok := r.models[m.Service][m.Version]; !ok {
		r.models[m.Service][m.Version] = m
	}
	return nil
}

// memStates keeps detector states as infra/postgres.DetectorStates does: a later position on
// the same partition is never replaced by an earlier one.
type memStates struct {
	mu     sync.Mutex
	states map[string]handlers.DetectorState
	saves  int
}

func (s *memStates) Load(_ context.Context, service string) (handlers.DetectorState, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.states[service]
	return st, ok, nil
}

func (s *memStates) Save(_ context.Context, st handlers.DetectorState) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.states == nil {
		s.states = map[string]handlers.DetectorState{}
	}
	if old, ok := s.states[st.Service]; ok && old.At.Partition == st.At.Partition && old.At.Offset >= st.At.Offset {
		return nil
	}
	s.states[st.Service] = st
	s.saves++
	return nil
}

// memLog is the score stage's input topic: one partition, messages at their offsets.
type memLog struct{ msgs []*message.Message }

func (l *memLog) Read(_ context.Context, partition int32, from, to int64) ([]*message.Message, error) {
	if partition != 0 || from < 0 || to > int64(len(l.msgs)) {
		return nil, fmt.Errorf("no offsets %d..%d on partition %d", from, to, partition)
	}
	return l.msgs[from:to], nil
}

const offsetKey = "test_offset"

func testPosition(msg *message.Message) (handlers.Position, bool) {
	o, err := strconv.ParseInt(msg.Metadata.Get(offsetKey), 10, 64)
	return handlers.Position{Offset: o}, err == nil
}

// durableStream is three services' samples interleaved on one partition: a warm-up, healthy
// traffic, and a meltdown of one of them that ends.
func durableStream(t *testing.T) *memLog {
	t.Helper()
	rng := rand.New(rand.NewPCG(3, 3))
	var log memLog
	for i := range 300 {
		at := scoreStart.Add(time.Duration(i+1) * time.Minute)
		for _, svc := range []string{"api", "db", "auth"} {
			metrics := normalMetrics(rng)
			if svc == "db" && i >= 150 && i < 175 {
				metrics = meltdown
			}
			m := decodedMsg(t, svc, at, metrics)
			m.Metadata.Set(offsetKey, strconv.Itoa(len(log.msgs)))
			log.msgs = append(log.msgs, m)
		}
	}
	return &log
}

type durableWorker struct {
	h *handlers.ScoreHandler
}

func newDurableWorker(t *testing.T, reg handlers.ModelRegistry, states *memStates, log *memLog) durableWorker {
	t.Helper()
	h, err := handlers.NewScoreHandler(detect.Config{WarmUp: testWarmUp}, reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.SetDurability(handlers.Durability{States: states, Log: log, Position: testPosition, CheckpointEvery: 16}); err != nil {
		t.Fatal(err)
	}
	return durableWorker{h: h}
}

// run judges the log's messages from offset from up to to, adding every output to outs; an
// output published twice must be the same both times.
func (w durableWorker) run(t *testing.T, log *memLog, from, to int, outs map[string]string) {
	t.Helper()
	for _, in := range log.msgs[from:to] {
		// The handler sees a copy, as a consumer does.
		m := message.NewMessage(in.UUID, in.Payload)
		m.Metadata = maps.Clone(in.Metadata)
		out, err := w.h.Handle(m)
		if err != nil {
			t.Fatalf("offset %s: %v", in.Metadata.Get(offsetKey), err)
		}
		for _, o := range out {
			if prev, ok := outs[o.UUID]; ok && prev != string(o.Payload) {
				t.Fatalf("output %s published twice, differently:\n%s\n%s", o.UUID, prev, o.Payload)
			}
			outs[o.UUID] = string(o.Payload)
		}
	}
}

// TestScoreResumesExactlyAfterCrashes checks the score stage's durability with the fakes of
// a model registry, the detector states and the input topic: a worker killed again and again
// (once during the warm-up), each time restarted from an offset committed some way behind
// what it had judged, and two workers handing the partition back and forth, publish exactly
// the outputs of a worker that never stopped, and nothing else.
func TestScoreResumesExactlyAfterCrashes(t *testing.T) {
	t.Parallel()
	overBothStreams(t, resumesExactly)
}

// overBothStreams runs check, in parallel, over durableStream's samples sent singly and sent
// in batches (batchedStream).
func overBothStreams(t *testing.T, check func(*testing.T, *memLog)) {
	singles := durableStream(t)
	for name, log := range map[string]*memLog{"singly": singles, "in batches": batchedStream(t, singles)} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			check(t, log)
		})
	}
}

// uninterrupted returns the outputs of a worker that judges all of log without stopping.
func uninterrupted(t *testing.T, log *memLog) map[string]string {
	t.Helper()
	outs := map[string]string{}
	newDurableWorker(t, newMemRegistry(), &memStates{}, log).run(t, log, 0, len(log.msgs), outs)
	return outs
}

// resumesExactly is TestScoreResumesExactlyAfterCrashes over one stream.
func resumesExactly(t *testing.T, log *memLog) {
	n := len(log.msgs)
	want := uninterrupted(t, log)
	anomalous := 0
	for _, p := range perSample(t, want) {
		if decodeBody[handlers.ScoredSample](t, []byte(p)).Anomalous {
			anomalous++
		}
	}
	if len(want) != n || anomalous == 0 {
		t.Fatalf("the uninterrupted worker published %d outputs (%d anomalous) for %d samples", len(want), anomalous, n)
	}

	t.Run("killed and restarted", func(t *testing.T) {
		t.Parallel()
		reg, states := newMemRegistry(), &memStates{}
		got := map[string]string{}
		// Each kill loses the in-memory detectors; the restart begins at the last committed
		// offset, up to 40 messages behind the last judged one.
		// (Of 900 messages; as many of each 900 of a shorter stream.)
		kills := []int{40, 41, 100, 260, 455, 470, 520, 700, 899}
		committed := 0
		for i, kill := range append(kills, 900) {
			kill = kill * n / 900
			w := newDurableWorker(t, reg, states, log)
			w.run(t, log, min(committed, kill), kill, got)
			committed = max(committed, kill-(i*13)%41*n/900)
		}
		compareOutputs(t, got, want)
		if states.saves < 3*300/16/4 {
			t.Errorf("%d states saved, want about one per 16 samples of each service", states.saves)
		}
	})

	t.Run("partition handed between two workers", func(t *testing.T) {
		t.Parallel()
		reg, states := newMemRegistry(), &memStates{}
		a, b := newDurableWorker(t, reg, states, log), newDurableWorker(t, reg, states, log)
		got := map[string]string{}
		// a keeps its detectors in memory while b judges; handed back, it must not trust them.
		a.run(t, log, 0, 200*n/900, got)
		b.run(t, log, 190*n/900, 480*n/900, got)
		a.run(t, log, 475*n/900, 700*n/900, got)
		b.run(t, log, 700*n/900, n, got)
		compareOutputs(t, got, want)
	})
}

func compareOutputs(t *testing.T, got, want map[string]string) {
	t.Helper()
	for id, p := range want {
		g, ok := got[id]
		switch {
		case !ok:
			t.Errorf("output %s never published", id)
		case g != p:
			t.Errorf("output %s differs from the uninterrupted worker's:\n got %s\nwant %s", id, g, p)
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok {
			t.Errorf("output %s published, the uninterrupted worker has none such", id)
		}
	}
}

// TestScoreDeadLettersALateSample checks that, with positions known, a sample older than its
// service's last one at a new offset (not a redelivery) is a permanent error, bound for the
// dead letters with its reason, and changes nothing; a redelivery of an earlier offset is
// passed over silently.
func TestScoreDeadLettersALateSample(t *testing.T) {
	t.Parallel()
	log := durableStream(t)
	w := newDurableWorker(t, newMemRegistry(), &memStates{}, log)
	outs := map[string]string{}
	w.run(t, log, 0, 30, outs)
	// Redelivered: offset 24, api's sample before its latest (27), passed over; its latest
	// again gets the same output again (it may not have been published).
	again := message.NewMessage(log.msgs[24].UUID, log.msgs[24].Payload)
	again.Metadata = maps.Clone(log.msgs[24].Metadata)
	if out, err := w.h.Handle(again); err != nil || len(out) != 0 {
		t.Errorf("a redelivered earlier offset: %d outputs, %v; want it passed over", len(out), err)
	}
	latest := message.NewMessage(log.msgs[27].UUID, log.msgs[27].Payload)
	latest.Metadata = maps.Clone(log.msgs[27].Metadata)
	if out, err := w.h.Handle(latest); err != nil || len(out) != 1 || string(out[0].Payload) != outs[out[0].UUID] {
		t.Errorf("the latest offset redelivered: %d outputs, %v; want its output again", len(out), err)
	}
	// A late sample at a new offset: api's sample of the first minute again.
	late := message.NewMessage("late", log.msgs[0].Payload)
	late.Metadata = maps.Clone(log.msgs[0].Metadata)
	late.Metadata.Set(offsetKey, "30")
	if _, err := w.h.Handle(late); !errors.Is(err, handlers.ErrPermanent) || !strings.Contains(err.Error(), "older") {
		t.Errorf("a late sample at a new offset: %v, want a permanent error saying it is older", err)
	}
	// The stream goes on as if the late sample had never come.
	want := map[string]string{}
	newDurableWorker(t, newMemRegistry(), &memStates{}, log).run(t, log, 0, 60, want)
	rest := &memLog{msgs: log.msgs[:60]}
	for i := 30; i < 60; i++ {
		m := message.NewMessage(rest.msgs[i].UUID, rest.msgs[i].Payload)
		m.Metadata = maps.Clone(rest.msgs[i].Metadata)
		m.Metadata.Set(offsetKey, strconv.Itoa(i+1)) // one further along: the late one took 30
		out, err := w.h.Handle(m)
		if err != nil || len(out) != 1 || string(out[0].Payload) != want[out[0].UUID] {
			t.Fatalf("offset %d after the late sample: %v, output differs from a run without it", i+1, err)
		}
	}
}

// TestScoreEvictsAndRestoresExactly checks that memory follows the services sending: with
// room for two detectors among three services, or with detectors dropped once idle, every
// service is saved, dropped and restored again and again, and the outputs are exactly those
// of a worker that kept them all.
func TestScoreEvictsAndRestoresExactly(t *testing.T) {
	t.Parallel()
	overBothStreams(t, evictsExactly)
}

// evictsExactly is TestScoreEvictsAndRestoresExactly over one stream.
func evictsExactly(t *testing.T, log *memLog) {
	n := len(log.msgs)
	want := uninterrupted(t, log)

	t.Run("capped at two", func(t *testing.T) {
		t.Parallel()
		h, err := handlers.NewScoreHandler(detect.Config{WarmUp: testWarmUp}, newMemRegistry(), slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		if err := h.SetDurability(handlers.Durability{States: &memStates{}, Log: log, Position: testPosition, CheckpointEvery: 16, MaxServices: 2}); err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		durableWorker{h: h}.run(t, log, 0, n, got)
		compareOutputs(t, got, want)
		if a := h.Active(); a > 2 {
			t.Errorf("%d detectors held, want at most 2", a)
		}
	})
	t.Run("idle ones dropped", func(t *testing.T) {
		t.Parallel()
		// A clock that moves an hour with every message: each detector is idle by the next sweep.
		var ticks atomic.Int64
		clock := func() time.Time { return time.Unix(ticks.Add(1)*3600, 0) }
		var logs syncBuf
		h, err := handlers.NewScoreHandler(detect.Config{WarmUp: testWarmUp}, newMemRegistry(), slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		if err := h.SetDurability(handlers.Durability{States: &memStates{}, Log: log, Position: testPosition, CheckpointEvery: 16, IdleAfter: time.Minute, Now: clock}); err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		durableWorker{h: h}.run(t, log, 0, n, got)
		compareOutputs(t, got, want)
		if restores := strings.Count(logs.String(), "detector state restored"); restores < 3 {
			t.Errorf("%d restores after %d messages with an idle limit of a minute, want every detector dropped and restored at each sweep", restores, n)
		}
	})
}

// syncBuf is a log buffer safe for concurrent writes.
type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestScoreRestoresWithoutAPrunedModel checks that a saved state whose model version the
// registry no longer has (pruned) does not stall its service: the stage says so and starts it
// from the latest model it has, and judges on.
func TestScoreRestoresWithoutAPrunedModel(t *testing.T) {
	t.Parallel()
	log := durableStream(t)
	reg, states := newMemRegistry(), &memStates{}
	newDurableWorker(t, reg, states, log).run(t, log, 0, 600, map[string]string{})
	// Take the newest model of every service away: the states name them.
	reg.mu.Lock()
	for _, vs := range reg.models {
		delete(vs, slices.Max(slices.Collect(maps.Keys(vs))))
	}
	reg.mu.Unlock()
	var logs syncBuf
	h, err := handlers.NewScoreHandler(detect.Config{WarmUp: testWarmUp}, reg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.SetDurability(handlers.Durability{States: states, Log: log, Position: testPosition, CheckpointEvery: 16}); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	durableWorker{h: h}.run(t, log, 600, 630, got)
	if len(got) != 30 || !strings.Contains(logs.String(), "no longer stored") {
		t.Errorf("%d outputs for 30 samples after losing the states' models (log: %q), want every sample judged and the loss said", len(got), logs.String())
	}
}
