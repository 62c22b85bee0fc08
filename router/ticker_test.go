package router

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// flakyPublisher fails its first failures publishes, then records the topics published to.
type flakyPublisher struct {
	mu       sync.Mutex
	failures int
	calls    int
	got      chan string
}

func (p *flakyPublisher) Publish(topic string, _ ...*message.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if p.calls <= p.failures {
		return errors.New("database away")
	}
	select {
	case p.got <- topic:
	default:
	}
	return nil
}

func (p *flakyPublisher) Close() error { return nil }

// TestTickerRidesOutAFailingOutbox checks that checks that cannot be published (the database
// is away) are skipped, not fatal: the ticker keeps running and publishes again once the
// outbox takes them, and stops cleanly when its context ends.
func TestTickerRidesOutAFailingOutbox(t *testing.T) {
	t.Parallel()
	pub := &flakyPublisher{failures: 5, got: make(chan string, 1)}
	tk := NewTicker(pub, time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tk.Run(ctx) }()
	select {
	case topic := <-pub.got:
		if topic != string(TopicChecks) {
			t.Errorf("published to %q, want %q", topic, TopicChecks)
		}
	case err := <-done:
		t.Fatalf("the ticker stopped on a failing outbox: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run returned %v after its context ended, want nil", err)
	}
	pub.mu.Lock()
	defer pub.mu.Unlock()
	if pub.calls <= pub.failures {
		t.Errorf("%d publishes, want more than the %d that failed", pub.calls, pub.failures)
	}
}
