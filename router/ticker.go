package router

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/incident-engine/engine/handlers"
)

// Ticker publishes a resolution check to TopicChecks at a fixed interval. It is the only part
// of the engine that reads the wall clock; the check carries that time to the resolve stage.
type Ticker struct {
	pub   message.Publisher
	every time.Duration
	now   func() time.Time
}

// NewTicker returns a ticker publishing through pub every interval (default 5s when 0).
func NewTicker(pub message.Publisher, every time.Duration) *Ticker {
	if every <= 0 {
		every = 5 * time.Second
	}
	return &Ticker{pub: pub, every: every, now: time.Now}
}

// Run publishes checks until ctx ends.
func (t *Ticker) Run(ctx context.Context) error {
	tk := time.NewTicker(t.every)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tk.C:
			if err := t.Publish(t.now()); err != nil {
				return err
			}
		}
	}
}

// Publish sends one check dated now.
func (t *Ticker) Publish(now time.Time) error {
	payload, err := json.Marshal(handlers.ResolutionCheck{Now: now.UTC()})
	if err != nil {
		return fmt.Errorf("encode resolution check: %w", err)
	}
	if err := t.pub.Publish(TopicChecks, message.NewMessage(watermill.NewUUID(), payload)); err != nil {
		return fmt.Errorf("publish resolution check: %w", err)
	}
	return nil
}
