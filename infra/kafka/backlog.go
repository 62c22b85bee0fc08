package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// Stage is one consumer group and the topic it reads, with how to tell, from one of its
// records, when the broker first received the sample in it.
type Stage struct {
	Group, Topic string
	// ReceivedAt returns the broker's receipt time of the sample a record carries.
	ReceivedAt func(Record) (time.Time, bool)
}

// Backlog tells how far a chain of stages has got through what the broker holds: per
// partition, the receipt time of the oldest sample some stage of the chain has not yet
// committed. Topics of the chain are keyed alike, so a service's records sit on the same
// partition number in each. It keeps one client, made on first use.
type Backlog struct {
	cfg    Config
	stages []Stage

	mu     sync.Mutex
	client sarama.Client
	admin  sarama.ClusterAdmin
}

// NewBacklog returns the backlog of stages.
func NewBacklog(c Config, stages ...Stage) *Backlog {
	c.setDefaults()
	return &Backlog{cfg: c, stages: stages}
}

// PendingSince returns, per partition with samples still to go through the chain, the
// receipt time of the oldest of them, and the partition count. Partitions with nothing
// pending are absent.
//
// The broker calls take no context: ctx is checked before each of them, so a check on a
// broker that has gone away ends with ctx (a worker shutting down waits for no retries).
func (b *Backlog) PendingSince(ctx context.Context) (map[int32]time.Time, int32, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, 0, fmt.Errorf("backlog: %w", err)
	}
	if err := b.connect(); err != nil {
		return nil, 0, err
	}
	pending := map[int32]time.Time{}
	var partitions int32
	for _, st := range b.stages {
		if err := ctx.Err(); err != nil {
			return nil, 0, fmt.Errorf("backlog: %w", err)
		}
		ps, err := b.client.Partitions(st.Topic)
		if errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
			continue
		}
		if err != nil {
			b.reset()
			return nil, 0, fmt.Errorf("partitions of %s: %w", st.Topic, err)
		}
		partitions = max(partitions, int32(len(ps)))
		committed, err := b.admin.ListConsumerGroupOffsets(st.Group, map[string][]int32{st.Topic: ps})
		if err != nil {
			b.reset()
			return nil, 0, fmt.Errorf("offsets of %s: %w", st.Group, err)
		}
		for _, p := range ps {
			if err := ctx.Err(); err != nil {
				return nil, 0, fmt.Errorf("backlog: %w", err)
			}
			newest, err := b.client.GetOffset(st.Topic, p, sarama.OffsetNewest)
			if err != nil {
				b.reset()
				return nil, 0, fmt.Errorf("newest offset of %s/%d: %w", st.Topic, p, err)
			}
			next := int64(-1)
			if blk := committed.GetBlock(st.Topic, p); blk != nil {
				next = blk.Offset
			}
			if next < 0 { // nothing committed yet: the group starts at the oldest record
				if next, err = b.client.GetOffset(st.Topic, p, sarama.OffsetOldest); err != nil {
					b.reset()
					return nil, 0, fmt.Errorf("oldest offset of %s/%d: %w", st.Topic, p, err)
				}
			}
			if next >= newest {
				continue
			}
			at, err := b.receivedAt(ctx, st, p, next)
			if err != nil {
				return nil, 0, err
			}
			if cur, ok := pending[p]; !ok || at.Before(cur) {
				pending[p] = at
			}
		}
	}
	return pending, partitions, nil
}

// receivedAt reads the record at offset of the stage's topic and returns its sample's
// receipt time.
func (b *Backlog) receivedAt(ctx context.Context, st Stage, partition int32, offset int64) (time.Time, error) {
	consumer, err := sarama.NewConsumerFromClient(b.client)
	if err != nil {
		return time.Time{}, fmt.Errorf("kafka consumer: %w", err)
	}
	defer consumer.Close()
	pc, err := consumer.ConsumePartition(st.Topic, partition, offset)
	if err != nil {
		return time.Time{}, fmt.Errorf("read %s/%d@%d: %w", st.Topic, partition, offset, err)
	}
	defer pc.Close()
	select {
	case km := <-pc.Messages():
		msg, err := Marshaler().Unmarshal(km)
		if err != nil {
			return time.Time{}, fmt.Errorf("unmarshal %s/%d@%d: %w", st.Topic, partition, km.Offset, err)
		}
		at, ok := st.ReceivedAt(Record{Partition: partition, Offset: km.Offset, Timestamp: km.Timestamp, Message: msg})
		if !ok {
			at = km.Timestamp
		}
		return at, nil
	case <-ctx.Done():
		return time.Time{}, fmt.Errorf("read %s/%d@%d: %w", st.Topic, partition, offset, ctx.Err())
	}
}

func (b *Backlog) connect() error {
	if b.client != nil {
		return nil
	}
	// One retry of the metadata: the check is best effort, the next tick tries again, and a
	// broker away must not hold a tick (or a shutdown) for the default 20 retries a call.
	sc := saramaConfig(b.cfg)
	sc.Metadata.Retry.Max = 1
	client, err := sarama.NewClient(b.cfg.Brokers, sc)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		client.Close()
		return fmt.Errorf("kafka admin: %w", err)
	}
	b.client, b.admin = client, admin
	return nil
}

// reset drops the client after a failure, so the next call connects afresh.
func (b *Backlog) reset() {
	if b.admin != nil {
		_ = b.admin.Close() // closes the client too
	}
	b.client, b.admin = nil, nil
}

// Close releases the client.
func (b *Backlog) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reset()
	return nil
}

// PartitionOf returns the partition, of partitions, that records keyed key go to (the
// publisher's hash partitioner).
func PartitionOf(key string, partitions int32) int32 {
	if partitions <= 0 {
		return 0
	}
	p, err := sarama.NewHashPartitioner("").Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(key)}, partitions)
	if err != nil {
		return 0
	}
	return p
}
