package kafka

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/IBM/sarama"
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
func ReadAll(c Config, topic string) ([]Record, error) {
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
