package handlers

import (
	"context"
	"testing"
)

func TestBatchThatPanicsAnswersEveryCaller(t *testing.T) {
	b := newBatcher(0, func(_ context.Context, items []int) []error {
		if items[0] < 0 {
			panic("bad item")
		}
		return make([]error, len(items))
	})
	if err := b.do(context.Background(), -1); err == nil {
		t.Fatal("a panicking batch returned no error")
	}
	// The batcher is free again: the next call runs.
	if err := b.do(context.Background(), 1); err != nil {
		t.Fatalf("call after a panic: %v", err)
	}
}
