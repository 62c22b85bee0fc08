package handlers_test

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/incident-engine/engine/domain/incident"
	"github.com/incident-engine/engine/domain/sample"
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
				store.FailNth("LockWatches", 1, errors.New("connection reset"))
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

// sampleGate is a sample store that holds its first save until released and refuses any
// batch holding a sample of service "bad".
type sampleGate struct {
	entered, release chan struct{}
	once             sync.Once
	mu               sync.Mutex
	saves            [][]string
	tried            []int
}

func (g *sampleGate) Save(_ context.Context, batch ...sample.Scored) error {
	first := false
	g.once.Do(func() { first = true })
	if first {
		close(g.entered)
		<-g.release
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.tried = append(g.tried, len(batch))
	var names []string
	for _, s := range batch {
		if s.Service == "bad" {
			return errors.New("refused")
		}
		names = append(names, s.Service)
	}
	g.saves = append(g.saves, names)
	return nil
}

func TestRecordBatchesAndKeepsEachOutcome(t *testing.T) {
	store := &sampleGate{entered: make(chan struct{}), release: make(chan struct{})}
	h := handlers.NewRecordHandler(store)
	services := []string{"s0", "s1", "bad", "s3"}
	errs := arriveTogether(len(services), store.entered, store.release, h.PendingInBatch, func(i int) error {
		return h.Handle(scoredMsg(t, services[i], minute(i), 'H'))
	})
	for i, err := range errs {
		if (err != nil) != (services[i] == "bad") {
			t.Errorf("sample of %s: %v", services[i], err)
		}
	}
	// s0 alone; s1, bad and s3 together, refused; then each alone.
	store.mu.Lock()
	defer store.mu.Unlock()
	if want := []int{1, 3, 1, 1, 1}; !slices.Equal(store.tried, want) {
		t.Errorf("saves of %v samples, want %v", store.tried, want)
	}
	var alone []string
	for _, names := range store.saves {
		if len(names) != 1 {
			t.Fatalf("saves %v: want each sample saved alone after the refused batch", store.saves)
		}
		alone = append(alone, names[0])
	}
	slices.Sort(alone)
	if want := []string{"s0", "s1", "s3"}; !slices.Equal(alone, want) {
		t.Errorf("saved %v, want %v", alone, want)
	}
}
