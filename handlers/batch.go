package handlers

import (
	"context"
	"fmt"
	"sync"
)

// DefaultMaxBatch is the most messages a stage that writes to PostgreSQL groups into one
// transaction.
const DefaultMaxBatch = 256

// batcher groups the calls that arrive while a batch is being written into the next batch, so
// a stage fed by many partitions at once writes many messages in one transaction, one round
// trip, instead of one each. It waits for nothing: a call that finds no batch running runs at
// once, alone, so a quiet stage adds no latency; under load the batch grows by itself to what
// came while the last one was written. Every call returns its own message's outcome.
//
// Batches run one at a time, in arrival order; the caller that starts one runs it and, when
// more are waiting, hands the next to the first of them.
type batcher[T any] struct {
	max int
	// run handles a batch and returns one error per item, in order.
	run func(ctx context.Context, items []T) []error

	mu      sync.Mutex
	running bool
	pending []*batchCall[T]
}

type batchCall[T any] struct {
	item T
	err  error
	done chan struct{}
	// lead tells the call that it starts the next batch.
	lead chan struct{}
}

func newBatcher[T any](max int, run func(ctx context.Context, items []T) []error) *batcher[T] {
	if max < 1 {
		max = DefaultMaxBatch
	}
	return &batcher[T]{max: max, run: run}
}

// do handles item in the next batch and returns its outcome. The batch a call starts runs
// with that call's ctx.
func (b *batcher[T]) do(ctx context.Context, item T) error {
	c := &batchCall[T]{item: item, done: make(chan struct{}), lead: make(chan struct{}, 1)}
	b.mu.Lock()
	b.pending = append(b.pending, c)
	if b.running {
		b.mu.Unlock()
		select {
		case <-c.done:
			return c.err
		case <-c.lead:
		}
		b.mu.Lock()
	}
	b.running = true
	// c is the first pending call: the first to arrive, or the one handed the lead.
	n := min(len(b.pending), b.max)
	batch := make([]*batchCall[T], n)
	copy(batch, b.pending)
	b.pending = b.pending[n:]
	b.mu.Unlock()

	items := make([]T, n)
	for i, bc := range batch {
		items[i] = bc.item
	}
	errs := b.runSafely(ctx, items)
	for i, bc := range batch {
		bc.err = errs[i]
		if bc != c {
			close(bc.done)
		}
	}

	b.mu.Lock()
	if len(b.pending) > 0 {
		b.pending[0].lead <- struct{}{}
	} else {
		b.running = false
		b.pending = nil
	}
	b.mu.Unlock()
	return c.err
}

// runSafely runs a batch; a panic becomes every item's error, as the router's recoverer would
// make it of one message, so the callers waiting for the batch are answered and the next
// batch can start.
func (b *batcher[T]) runSafely(ctx context.Context, items []T) (errs []error) {
	defer func() {
		if r := recover(); r != nil {
			err := fmt.Errorf("batch of %d panicked: %v", len(items), r)
			errs = make([]error, len(items))
			for i := range errs {
				errs[i] = err
			}
		}
	}()
	return b.run(ctx, items)
}
