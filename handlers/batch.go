package handlers

import (
	"context"
	"fmt"
	"sync"
)

// DefaultMaxBatch is the most samples a stage that writes to PostgreSQL groups into one
// transaction (a message of more goes alone).
const DefaultMaxBatch = 1_000

// batcher groups the calls that arrive while a batch is being written into the next batch, so
// a stage fed by many partitions at once writes many messages in one transaction, one round
// trip, instead of one each. It waits for nothing: a call that finds no batch running runs at
// once, alone, so a quiet stage adds no latency; under load the batch grows by itself to what
// came while the last one was written.
//
// Every call returns its own message's outcome: a batch of several items goes to all; when
// that fails, each item goes to one, alone, so one bad item holds up none of the others and
// each error reaches its own message. A lone item goes to one directly.
//
// Batches run one at a time, in arrival order; the caller that starts one runs it and, when
// more are waiting, hands the next to the first of them.
type batcher[T any] struct {
	// max bounds a batch's total size: the items' sizes added up, but a batch takes at
	// least one item, however large.
	max  int
	size func(T) int
	all  func(ctx context.Context, items []T) error
	one  func(ctx context.Context, item T) error

	mu      sync.Mutex
	running bool
	pending []*batchCall[T]
}

type batchCall[T any] struct {
	item T
	// wake is signalled once: when the call's batch is done (done set, err its outcome), or
	// when the call is to start the next batch.
	wake chan struct{}
	done bool
	err  error
}

func newBatcher[T any](max int, size func(T) int, all func(ctx context.Context, items []T) error, one func(ctx context.Context, item T) error) *batcher[T] {
	if max < 1 {
		max = DefaultMaxBatch
	}
	return &batcher[T]{max: max, size: size, all: all, one: one}
}

// do handles item in the next batch and returns its outcome. The batch a call starts runs
// with that call's ctx.
func (b *batcher[T]) do(ctx context.Context, item T) error {
	c := &batchCall[T]{item: item, wake: make(chan struct{}, 1)}
	b.mu.Lock()
	b.pending = append(b.pending, c)
	if b.running {
		b.mu.Unlock()
		if <-c.wake; c.done {
			return c.err
		}
		b.mu.Lock()
	}
	b.running = true
	// c is the first pending call: the first to arrive, or the one handed the lead.
	n, total := 1, b.size(c.item)
	for ; n < len(b.pending); n++ {
		if total += b.size(b.pending[n].item); total > b.max {
			break
		}
	}
	batch := make([]*batchCall[T], n)
	copy(batch, b.pending)
	b.pending = b.pending[n:]
	b.mu.Unlock()

	b.run(ctx, batch)
	for _, bc := range batch[1:] {
		bc.done = true
		bc.wake <- struct{}{}
	}

	b.mu.Lock()
	if len(b.pending) > 0 {
		b.pending[0].wake <- struct{}{}
	} else {
		b.running = false
		b.pending = nil
	}
	b.mu.Unlock()
	return c.err
}

// run sets each call's outcome: all of them at once, or one by one when that fails.
func (b *batcher[T]) run(ctx context.Context, batch []*batchCall[T]) {
	if len(batch) > 1 {
		items := make([]T, len(batch))
		for i, bc := range batch {
			items[i] = bc.item
		}
		if b.safely(func() error { return b.all(ctx, items) }) == nil {
			return
		}
	}
	for _, bc := range batch {
		bc.err = b.safely(func() error { return b.one(ctx, bc.item) })
	}
}

// safely runs fn; a panic becomes its error, as the router's recoverer would make it of one
// message, so the callers waiting for the batch are answered and the next batch can start.
func (b *batcher[T]) safely(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return fn()
}

// waiting returns how many calls wait for the next batch.
func (b *batcher[T]) waiting() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.pending)
}
