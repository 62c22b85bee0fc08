package kafka

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/IBM/sarama"
	wkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"
)

// Record is one message read back from a topic, with where it sits.
type Record struct {
	Partition int32
	Offset    int64
	Timestamp time.Time
	Message   *message.Message
}

// ID names the record uniquely within its topic as "partition-offset".
func (r Record) ID() string { return fmt.Sprintf("%d-%d", r.Partition, r.Offset) }

// ReadAll returns every record of topic from the oldest to the newest present when it is
// called, ordered by partition and offset. It joins no consumer group and commits nothing, so
// it can be repeated (the dead-letter list uses it). A topic that does not exist has none.
func ReadAll(c Config, topic string) ([]Record, error) { return readTopic(c, topic, 0) }

// ReadLatest is ReadAll bounded to the latest perPartition records of each partition, so that
// a listing costs the same however long the topic has grown.
func ReadLatest(c Config, topic string, perPartition int) ([]Record, error) {
	return readTopic(c, topic, max(1, perPartition))
}

// readTopic reads every partition of topic, its latest perPartition records when that is
// positive.
func readTopic(c Config, topic string, perPartition int) ([]Record, error) {
	c.setDefaults()
	client, err := sarama.NewClient(c.Brokers, saramaConfig(c))
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	defer client.Close()
	partitions, err := client.Partitions(topic)
	if errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("partitions of %s: %w", topic, err)
	}
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return nil, fmt.Errorf("kafka consumer: %w", err)
	}
	defer consumer.Close()
	var out []Record
	for _, p := range partitions {
		oldest, err := client.GetOffset(topic, p, sarama.OffsetOldest)
		if err != nil {
			return nil, fmt.Errorf("oldest offset of %s/%d: %w", topic, p, err)
		}
		newest, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return nil, fmt.Errorf("newest offset of %s/%d: %w", topic, p, err)
		}
		if perPartition > 0 {
			oldest = max(oldest, newest-int64(perPartition))
		}
		if newest <= oldest {
			continue
		}
		pc, err := consumer.ConsumePartition(topic, p, oldest)
		if err != nil {
			return nil, fmt.Errorf("consume %s/%d: %w", topic, p, err)
		}
		for {
			var km *sarama.ConsumerMessage
			select {
			case km = <-pc.Messages():
			case <-time.After(10 * time.Second):
				pc.Close()
				return nil, fmt.Errorf("read %s/%d: timed out at offset %d of %d", topic, p, len(out), newest)
			}
			msg, err := Marshaler().Unmarshal(km)
			if err != nil {
				pc.Close()
				return nil, fmt.Errorf("unmarshal %s/%d@%d: %w", topic, p, km.Offset, err)
			}
			out = append(out, Record{Partition: p, Offset: km.Offset, Timestamp: km.Timestamp, Message: msg})
			if km.Offset+1 >= newest {
				break
			}
		}
		if err := pc.Close(); err != nil {
			return nil, fmt.Errorf("close %s/%d: %w", topic, p, err)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Partition != out[j].Partition {
			return out[i].Partition < out[j].Partition
		}
		return out[i].Offset < out[j].Offset
	})
	return out, nil
}

// Position returns the partition and offset of a message consumed from Kafka.
func Position(msg *message.Message) (partition int32, offset int64, ok bool) {
	p, ok1 := wkafka.MessagePartitionFromCtx(msg.Context())
	o, ok2 := wkafka.MessagePartitionOffsetFromCtx(msg.Context())
	return p, o, ok1 && ok2
}

// PartitionLog reads ranges of one topic's partitions back, outside any consumer group (the
// score stage replays a service's samples after its saved state from it). It keeps one
// client, made on first use.
type PartitionLog struct {
	cfg   Config
	topic string

	mu       sync.Mutex
	client   sarama.Client
	consumer sarama.Consumer
}

// NewPartitionLog returns a reader of topic.
func NewPartitionLog(c Config, topic string) *PartitionLog {
	c.setDefaults()
	return &PartitionLog{cfg: c, topic: topic}
}

// ErrRetentionPassed is returned by Read when the broker no longer holds the first offset
// asked for.
var ErrRetentionPassed = errors.New("offset no longer held by the broker")

// Read returns the messages of partition at offsets from up to, not including, to, in order.
func (l *PartitionLog) Read(ctx context.Context, partition int32, from, to int64) ([]*message.Message, error) {
	if from >= to {
		return nil, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.client == nil {
		client, err := sarama.NewClient(l.cfg.Brokers, saramaConfig(l.cfg))
		if err != nil {
			return nil, fmt.Errorf("kafka client: %w", err)
		}
		consumer, err := sarama.NewConsumerFromClient(client)
		if err != nil {
			client.Close()
			return nil, fmt.Errorf("kafka consumer: %w", err)
		}
		l.client, l.consumer = client, consumer
	}
	pc, err := l.consumer.ConsumePartition(l.topic, partition, from)
	if errors.Is(err, sarama.ErrOffsetOutOfRange) {
		return nil, fmt.Errorf("read %s/%d from %d: %w", l.topic, partition, from, ErrRetentionPassed)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s/%d from %d: %w", l.topic, partition, from, err)
	}
	defer pc.Close()
	out := make([]*message.Message, 0, to-from)
	for {
		var km *sarama.ConsumerMessage
		select {
		case km = <-pc.Messages():
		case err := <-pc.Errors():
			return nil, fmt.Errorf("read %s/%d: %w", l.topic, partition, err)
		case <-ctx.Done():
			return nil, fmt.Errorf("read %s/%d: %w", l.topic, partition, ctx.Err())
		}
		if km.Offset >= to {
			return out, nil
		}
		msg, err := Marshaler().Unmarshal(km)
		if err != nil {
			return nil, fmt.Errorf("unmarshal %s/%d@%d: %w", l.topic, partition, km.Offset, err)
		}
		out = append(out, msg)
		if km.Offset+1 >= to {
			return out, nil
		}
	}
}

// Close releases the client.
func (l *PartitionLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.client == nil {
		return nil
	}
	l.consumer.Close()
	err := l.client.Close()
	l.client, l.consumer = nil, nil
	return err
}
