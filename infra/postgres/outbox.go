package postgres

import (
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/jackc/pgx/v5/pgxpool"
)

// QueueSchema is the outbox's table layout: watermill-sql's PostgreSQL queue, one table per
// topic, rows deleted once acknowledged. It keeps order within a topic and has no consumer
// groups: each outbox topic has exactly one consuming stage.
func QueueSchema() wsql.PostgreSQLQueueSchema {
	return wsql.PostgreSQLQueueSchema{GeneratePayloadType: func(string) string { return "BYTEA" }, SubscribeBatchSize: 50}
}

// OutboxConfig tunes how outbox topics are polled.
type OutboxConfig struct {
	// PollInterval is how long a subscriber waits after finding no rows (default 100ms).
	PollInterval time.Duration
	// AckDeadline is how long a message may stay unacknowledged before redelivery (default 30s).
	AckDeadline time.Duration
}

func (c *OutboxConfig) setDefaults() {
	if c.PollInterval == 0 {
		c.PollInterval = 100 * time.Millisecond
	}
	if c.AckDeadline == 0 {
		c.AckDeadline = 30 * time.Second
	}
}

// NewOutboxSubscriber returns a subscriber for outbox topics that creates their tables on
// first use.
func NewOutboxSubscriber(pool *pgxpool.Pool, cfg OutboxConfig, logger watermill.LoggerAdapter) (*wsql.Subscriber, error) {
	cfg.setDefaults()
	sub, err := wsql.NewSubscriber(wsql.BeginnerFromPgx(pool), wsql.SubscriberConfig{
		SchemaAdapter:    QueueSchema(),
		OffsetsAdapter:   wsql.PostgreSQLQueueOffsetsAdapter{DeleteOnAck: true},
		PollInterval:     cfg.PollInterval,
		ResendInterval:   cfg.PollInterval,
		RetryInterval:    time.Second,
		AckDeadline:      &cfg.AckDeadline,
		InitializeSchema: true,
	}, logger)
	if err != nil {
		return nil, fmt.Errorf("outbox subscriber: %w", err)
	}
	return sub, nil
}

// NewOutboxPublisher returns a publisher that writes to outbox topics outside any
// transaction, for messages that change no state (the resolution ticker, dead-letter replay).
func NewOutboxPublisher(pool *pgxpool.Pool, logger watermill.LoggerAdapter) (*wsql.Publisher, error) {
	pub, err := wsql.NewPublisher(wsql.BeginnerFromPgx(pool), wsql.PublisherConfig{
		SchemaAdapter:        QueueSchema(),
		AutoInitializeSchema: true,
	}, logger)
	if err != nil {
		return nil, fmt.Errorf("outbox publisher: %w", err)
	}
	return pub, nil
}

// InitializeOutbox creates the tables of the outbox topics, so that transactions can publish
// to them before any subscriber started.
func InitializeOutbox(sub *wsql.Subscriber, topics ...string) error {
	for _, t := range topics {
		if err := sub.SubscribeInitialize(t); err != nil {
			return fmt.Errorf("initialize outbox topic %s: %w", t, err)
		}
	}
	return nil
}
