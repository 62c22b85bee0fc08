package kafka_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/incident-engine/engine/infra/kafka"
)

// TestBacklogEndsWithItsContext checks that a backlog check on a broker that has gone away
// ends with its context instead of working through the client's retries: the resolution
// ticker, and a worker shutting down, wait on it.
func TestBacklogEndsWithItsContext(t *testing.T) {
	broker, err := kafka.StartBroker(kafka.BrokerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	b := kafka.NewBacklog(kafka.Config{Brokers: broker.Addrs()}, kafka.Stage{Group: "g", Topic: "metrics",
		ReceivedAt: func(kafka.Record) (time.Time, bool) { return time.Time{}, false }})
	defer b.Close()
	broker.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := b.PendingSince(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("backlog with the broker gone and the context ended: %v, want context.Canceled", err)
	}
}
