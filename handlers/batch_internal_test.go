package handlers

import (
	"context"
	"testing"
)

func TestBatchThatPanicsAnswersEveryCaller(t *testing.T) {
	one := func(_ context.Context, item int) error {
		if item < 0 {
			panic("bad item")
		}
		return nil
	}
	b := newBatcher(0, func(int) int { return 1 }, func(context.Context, []int) error { return nil }, one)
	if err := b.do(context.Background(), -1); err == nil {
		t.Fatal("a panicking batch returned no error")
	}
	// The batcher is free again: the next call runs.
	if err := b.do(context.Background(), 1); err != nil {
		t.Fatalf("call after a panic: %v", err)
	}
}
