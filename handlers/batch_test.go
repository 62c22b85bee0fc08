package handlers_test

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/incident-engine/engine/domain/incident"
	"github.com/incident-engine/engine/handlers"
)

// gateStore holds its first transaction until released, so that the samples that arrive
// meanwhile queue for the next batch, and counts transactions.
type gateStore struct {
	*fakeStore
	entered, release chan struct{}
	once             sync.Once
	txs              atomic.Int32
}

func (g *gateStore) InTx(ctx context.Context, fn func(*fakeTx) error) error {
	g.txs.Add(1)
	first := false
	g.once.Do(func() { first = true })
	if first {
		close(g.entered)
		<-g.release
	}
	return g.fakeStore.InTx(ctx, fn)
}

// arriveTogether handles message 0 and, once the store holds it (entered), messages 1 to n-1;
// when all of those wait for the stage's next batch (pending), it lets the store go on
// (release), and returns each message's outcome.
func arriveTogether(n int, entered, release chan struct{}, pending func() int, handle func(i int) error) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	run := func(i int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = handle(i)
		}()
	}
	run(0)
	<-entered
	for i := 1; i < n; i++ {
		run(i)
	}
	for pending() < n-1 {
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	return errs
}

func TestCorrelateBatchesSamplesThatArriveTogether(t *testing.T) {
	for _, tc := range []struct {
		name    string
		fault   bool
		wantTxs int32
	}{
		{"in one transaction", false, 2},                     // the first alone, then the four together
		{"one by one when the batch fails", true, 1 + 1 + 4}, // the first, the failed batch, each alone
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := incident.NewCorrelator(incident.CorrelationConfig{})
			if err != nil {
				t.Fatal(err)
			}
			store := &gateStore{fakeStore: newFakeStore(), entered: make(chan struct{}), release: make(chan struct{})}
			if tc.fault {
				store.FailNth("LockWatches", 2, errors.New("connection reset")) // the batch: the first message locked its own
			}
			h := handlers.NewCorrelateHandler[*fakeTx](store, c, slog.New(slog.DiscardHandler))
			correlate := h.To(topicCorrelated)

			services := []string{"s0", "s1", "s2", "s3", "s4"}
			errs := arriveTogether(len(services), store.entered, store.release, h.PendingInBatch, func(i int) error {
				return correlate(scoredMsg(t, services[i], minute(i), 'H'))
			})
			for i, err := range errs {
				if err != nil {
					t.Errorf("sample of %s: %v", services[i], err)
				}
			}
			if got := store.txs.Load(); got != tc.wantTxs {
				t.Errorf("%d transactions, want %d", got, tc.wantTxs)
			}
			store.mu.Lock()
			defer store.mu.Unlock()
			for i, s := range services {
				w, ok := store.state.watches[s]
				if st := w.State(); !ok || !st.LastSampleAt.Equal(minute(i)) {
					t.Errorf("watch of %s: %+v, want its sample at %s committed", s, st, minute(i))
				}
			}
		})
	}
}

// Correlate keeps every sample it correlates, with its score, in the transaction of its
// batch: a batch refused by the database keeps none of its samples, and each good one is
// kept when it is correlated alone; a redelivered sample is kept once, as it first was.
func TestCorrelateKeepsTheSamplesItCorrelates(t *testing.T) {
	c, err := incident.NewCorrelator(incident.CorrelationConfig{})
	if err != nil {
		t.Fatal(err)
	}
	store := &gateStore{fakeStore: newFakeStore(), entered: make(chan struct{}), release: make(chan struct{})}
	store.FailNth("SaveSamples", 2, errors.New("connection reset")) // the batch of s1, s2, s3
	h := handlers.NewCorrelateHandler[*fakeTx](store, c, slog.New(slog.DiscardHandler))
	correlate := h.To(topicCorrelated)
	services := []string{"s0", "s1", "s2", "s3"}
	errs := arriveTogether(len(services), store.entered, store.release, h.PendingInBatch, func(i int) error {
		return correlate(scoredMsg(t, services[i], minute(i), 'H'))
	})
	for i, err := range errs {
		if err != nil {
			t.Errorf("sample of %s: %v", services[i], err)
		}
	}
	if got := store.txs.Load(); got != 1+1+3 {
		t.Errorf("%d transactions, want 5: s0 alone, the refused batch, then each alone", got)
	}
	again := scoredMsg(t, "s1", minute(1), 'A') // the same sample, redelivered with another judgement
	if err := correlate(again); err != nil {
		t.Fatal(err)
	}
	for i, s := range services {
		kept := store.Samples(s)
		if len(kept) != 1 || !kept[0].At.Equal(minute(i)) || kept[0].Service != s {
			t.Errorf("samples of %s: %+v, want its one sample at %s", s, kept, minute(i))
			continue
		}
		if kept[0].Anomalous || kept[0].ModelVersion == 0 {
			t.Errorf("sample of %s kept as %+v, want the healthy judgement it first came with", s, kept[0])
		}
	}
}

// batchMsg joins scored-sample messages of one service into one message of a batch, as the
// score stage sends a batch it judged.
func batchMsg(t *testing.T, msgs ...*message.Message) *message.Message {
	t.Helper()
	parts := make([]string, len(msgs))
	for i, m := range msgs {
		parts[i] = string(m.Payload)
	}
	b := message.NewMessage("batch-"+msgs[0].UUID, []byte("["+strings.Join(parts, ",")+"]"))
	b.Metadata.Set(handlers.MetadataService, msgs[0].Metadata.Get(handlers.MetadataService))
	return b
}

// TestCorrelateBatchIsItsSamplesInOrder checks that a message of a batch of a service's
// scored samples gives exactly what its samples give one by one: the same incident, timeline,
// outbox events and kept samples; and that a batch with one sample out of order is refused
// whole (for the dead letters, as it came) and commits nothing.
func TestCorrelateBatchIsItsSamplesInOrder(t *testing.T) {
	c, err := incident.NewCorrelator(incident.CorrelationConfig{})
	if err != nil {
		t.Fatal(err)
	}
	kinds := "HHAAXAAHHHHHHHHA"
	msgs := func() []*message.Message {
		out := make([]*message.Message, len(kinds))
		for i := range kinds {
			out[i] = scoredMsg(t, "api", minute(i), kinds[i])
		}
		return out
	}
	run := func(send func(correlate func(*message.Message) error)) *fakeStore {
		store := newFakeStore()
		send(handlers.NewCorrelateHandler[*fakeTx](store, c, slog.New(slog.DiscardHandler)).To(topicCorrelated))
		return store
	}
	singly := run(func(correlate func(*message.Message) error) {
		for _, m := range msgs() {
			if err := correlate(m); err != nil {
				t.Fatal(err)
			}
		}
	})
	batched := run(func(correlate func(*message.Message) error) {
		ms := msgs()
		for _, part := range [][]*message.Message{ms[:5], ms[5:6], ms[6:]} {
			if err := correlate(batchMsg(t, part...)); err != nil {
				t.Fatal(err)
			}
		}
	})
	incs := singly.Incidents()
	if len(incs) != 1 {
		t.Fatalf("%d incidents from the samples sent singly, want 1", len(incs))
	}
	if got := batched.Incidents(); !reflect.DeepEqual(got, incs) {
		t.Errorf("incidents in batches:\n%+v\nsingly:\n%+v", got, incs)
	}
	if got, want := batched.Timeline(incs[0].ID), singly.Timeline(incs[0].ID); !reflect.DeepEqual(got, want) {
		t.Errorf("timeline in batches:\n%+v\nsingly:\n%+v", got, want)
	}
	events := func(s *fakeStore) (ids []string) {
		for _, m := range s.Published(topicCorrelated) {
			ids = append(ids, m.UUID+" "+string(m.Payload))
		}
		return ids
	}
	if got, want := events(batched), events(singly); len(want) == 0 || !reflect.DeepEqual(got, want) {
		t.Errorf("events in batches:\n%v\nsingly:\n%v", got, want)
	}
	if got, want := batched.Samples("api"), singly.Samples("api"); len(want) != len(kinds) || !reflect.DeepEqual(got, want) {
		t.Errorf("kept samples in batches: %d, singly: %d (want %d, the same)", len(got), len(want), len(kinds))
	}

	ms := msgs()
	poisoned := run(func(correlate func(*message.Message) error) {
		err := correlate(batchMsg(t, ms[0], ms[2], ms[1]))
		if !errors.Is(err, handlers.ErrPermanent) || !strings.Contains(err.Error(), "sample 3 of 3") {
			t.Errorf("a batch with a sample out of order: %v, want a permanent error naming sample 3 of 3", err)
		}
	})
	if _, ok := poisoned.Watch("api"); ok || len(poisoned.Samples("api")) != 0 {
		t.Error("a refused batch committed its service's watch or samples")
	}
}
