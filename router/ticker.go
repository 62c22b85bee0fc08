package router

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/incident-engine/engine/handlers"
)

// Ticker publishes a resolution check to TopicChecks at a fixed interval. It is the only part
// of the engine that reads the wall clock; the check carries that time to the resolve stage.
type Ticker struct {
	pub     message.Publisher
	every   time.Duration
	now     func() time.Time
	logger  *slog.Logger
	backlog Backlog
}

// Backlog tells, per partition of the input, the broker's receipt time of the oldest sample
// not yet correlated (infra/kafka.Backlog).
type Backlog interface {
	PendingSince(ctx context.Context) (pending map[int32]time.Time, partitions int32, err error)
}

// WatchBacklog makes every check carry the pipeline's backlog, so that samples waiting in
// the broker are not taken for silence (see handlers.ResolutionCheck). Without it a check
// says nothing of a backlog.
func (t *Ticker) WatchBacklog(b Backlog) { t.backlog = b }

// NewTicker returns a ticker publishing through pub every interval (default 5s when 0).
func NewTicker(pub message.Publisher, every time.Duration, logger *slog.Logger) *Ticker {
	if every <= 0 {
		every = 5 * time.Second
	}
	return &Ticker{pub: pub, every: every, now: time.Now, logger: logger}
}

// Run publishes checks until ctx ends. A check that cannot be published (the database is
// away) is skipped with a warning: the next one, dated at its own time, checks everything
// the skipped one would have, so an outage delays resolution checks and stops nothing.
func (t *Ticker) Run(ctx context.Context) error {
	tk := time.NewTicker(t.every)
	defer tk.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tk.C:
			err := t.Publish(ctx, t.now())
			switch {
			case err != nil && !failing:
				t.logger.Warn("resolution checks skipped until the outbox takes them again", "stage", "resolve", "err", err)
			case err == nil && failing:
				t.logger.Info("resolution checks published again", "stage", "resolve")
			}
			failing = err != nil
		}
	}
}

// Publish sends one check dated now, with the backlog as the broker tells it.
func (t *Ticker) Publish(ctx context.Context, now time.Time) error {
	check := handlers.ResolutionCheck{Now: now.UTC()}
	if t.backlog != nil {
		ctx, cancel := context.WithTimeout(ctx, t.every)
		pending, partitions, err := t.backlog.PendingSince(ctx)
		cancel()
		if err != nil {
			t.logger.Warn("backlog unknown: no service is judged stale by this check", "stage", "resolve", "err", err)
			check.BacklogUnknown = true
		}
		check.Pending, check.Partitions = pending, partitions
	}
	payload, err := json.Marshal(check)
	if err != nil {
		return fmt.Errorf("encode resolution check: %w", err)
	}
	if err := t.pub.Publish(string(TopicChecks), message.NewMessage(watermill.NewUUID(), payload)); err != nil {
		return fmt.Errorf("publish resolution check: %w", err)
	}
	return nil
}
