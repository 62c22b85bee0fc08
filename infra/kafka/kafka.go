// Package kafka is the Kafka adapter: Watermill publishers and subscribers over Sarama with the
// settings this engine relies on (messages keyed by service, consumer groups that start at the
// oldest offset, a pinned protocol version), an in-process Kafka-protocol broker for
// development and tests (franz-go's kfake), and a reader for the dead-letter topic.
//
// It knows nothing of samples or incidents beyond the "service" metadata key.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	wkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"
	gometrics "github.com/rcrowley/go-metrics"

	"github.com/incident-engine/engine/domain/sample"
)

// ProtocolVersion is the Kafka protocol version the engine speaks. Tests run it against the
// in-process broker; real clusters from Kafka 3.6 on accept it.
var ProtocolVersion = sarama.V3_6_0_0

// Partitions is how many partitions the engine creates each of its Kafka topics with (the
// in-process broker too): many more than the cores of a worker, so several workers can share
// them, and so that a stage has many services' messages at hand at once (a partition hands it
// one at a time) and correlate's transactions gather many samples sent singly.
const Partitions = 96

// KeyMetadata is the message metadata whose value becomes the Kafka record key, so all
// messages of one service land on one partition, in order.
const KeyMetadata = sample.ServiceKey

// Config locates the brokers.
type Config struct {
	// Brokers lists host:port addresses.
	Brokers []string
	// ClientID names this client to the brokers (default "incident-engine").
	ClientID string
}

func (c *Config) setDefaults() {
	if c.ClientID == "" {
		c.ClientID = "incident-engine"
	}
}

// Validate reports every problem of the configuration.
func (c Config) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("kafka: no brokers configured")
	}
	return nil
}

// Marshaler keys records by the service metadata; records without it get no key. When it
// reads a record whose headers carry no service, it takes the record key instead, so a raw
// sample published by a service keeps its key when it is dead-lettered and replayed.
func Marshaler() wkafka.MarshalerUnmarshaler {
	return keyedMarshaler{wkafka.NewWithPartitioningMarshaler(func(_ string, msg *message.Message) (string, error) {
		return msg.Metadata.Get(KeyMetadata), nil
	})}
}

type keyedMarshaler struct{ wkafka.MarshalerUnmarshaler }

func (m keyedMarshaler) Unmarshal(km *sarama.ConsumerMessage) (*message.Message, error) {
	msg, err := m.MarshalerUnmarshaler.Unmarshal(km)
	if err != nil {
		return nil, err
	}
	if msg.Metadata.Get(KeyMetadata) == "" && len(km.Key) > 0 {
		msg.Metadata.Set(KeyMetadata, string(km.Key))
	}
	if msg.UUID == "" {
		msg.UUID = fmt.Sprintf("%s-%d-%d", km.Topic, km.Partition, km.Offset)
	}
	return msg, nil
}

func init() {
	// Sarama keeps client metrics (histograms of every request) that the engine does not
	// export; they cost about 3% of a worker's CPU at fleet load.
	gometrics.UseNilMetrics = true
}

func saramaConfig(c Config) *sarama.Config {
	sc := sarama.NewConfig()
	sc.Version = ProtocolVersion
	sc.ClientID = c.ClientID
	sc.Metadata.Retry.Backoff = 250 * time.Millisecond
	sc.Metadata.Retry.Max = 20
	sc.Net.DialTimeout = 5 * time.Second
	return sc
}

// NewPublisher returns a synchronous publisher: Publish returns once the broker has the
// records, in order.
func NewPublisher(c Config, logger watermill.LoggerAdapter) (*wkafka.Publisher, error) {
	c.setDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	sc := saramaConfig(c)
	sc.Producer.Return.Successes = true
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Retry.Max = 10
	sc.Producer.Partitioner = sarama.NewHashPartitioner
	pub, err := wkafka.NewPublisher(wkafka.PublisherConfig{Brokers: c.Brokers, Marshaler: Marshaler(), OverwriteSaramaConfig: sc}, logger)
	if err != nil {
		return nil, fmt.Errorf("kafka publisher: %w", err)
	}
	return pub, nil
}

// NewSubscriber returns a subscriber in consumer group group. A new group starts from the
// oldest offset, so nothing published before the engine first started is skipped.
func NewSubscriber(c Config, group string, logger watermill.LoggerAdapter) (*wkafka.Subscriber, error) {
	c.setDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	sc := saramaConfig(c)
	sc.Consumer.Return.Errors = true
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	sc.Consumer.Offsets.AutoCommit.Interval = 200 * time.Millisecond
	// A join waits at the broker up to the rebalance timeout for the other members; the read
	// timeout must outlast it, or the client gives up on its own join and starts another, and
	// a group of restarted workers never settles. A member that died (SIGKILL) is dropped
	// after the session timeout. Sticky assignment moves as few partitions as it can, so a
	// rebalance restores few services' detectors.
	sc.Consumer.Group.Session.Timeout = 10 * time.Second
	sc.Consumer.Group.Heartbeat.Interval = 3 * time.Second
	sc.Consumer.Group.Rebalance.Timeout = 20 * time.Second
	sc.Net.ReadTimeout = 30 * time.Second
	sc.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategySticky()}
	sub, err := wkafka.NewSubscriber(wkafka.SubscriberConfig{
		Brokers: c.Brokers, Unmarshaler: Marshaler(), OverwriteSaramaConfig: sc, ConsumerGroup: group,
		NackResendSleep: 200 * time.Millisecond, ReconnectRetrySleep: time.Second,
		InitializeTopicDetails: &sarama.TopicDetail{NumPartitions: Partitions, ReplicationFactor: 1},
	}, logger)
	if err != nil {
		return nil, fmt.Errorf("kafka subscriber %s: %w", group, err)
	}
	return sub, nil
}

// ReceivedAt returns the broker timestamp of a message consumed from Kafka.
func ReceivedAt(msg *message.Message) (time.Time, bool) {
	return wkafka.MessageTimestampFromCtx(msg.Context())
}

// CreateTopics creates topics that do not exist yet, with partitions partitions each.
func CreateTopics(c Config, partitions int32, topics ...string) error {
	c.setDefaults()
	admin, err := sarama.NewClusterAdmin(c.Brokers, saramaConfig(c))
	if err != nil {
		return fmt.Errorf("kafka admin: %w", err)
	}
	defer admin.Close()
	existing, err := admin.ListTopics()
	if err != nil {
		return fmt.Errorf("list topics: %w", err)
	}
	for _, t := range topics {
		if _, ok := existing[t]; ok {
			continue
		}
		if err := admin.CreateTopic(t, &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: 1}, false); err != nil && !errors.Is(err, sarama.ErrTopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", t, err)
		}
	}
	return nil
}

// Ping connects to the brokers and fetches the cluster's metadata, for readiness checks.
func Ping(ctx context.Context, c Config) error {
	c.setDefaults()
	sc := saramaConfig(c)
	sc.Metadata.Retry.Max = 0
	if dl, ok := ctx.Deadline(); ok {
		sc.Net.DialTimeout = time.Until(dl)
	}
	client, err := sarama.NewClient(c.Brokers, sc)
	if err != nil {
		return fmt.Errorf("kafka %v: %w", c.Brokers, err)
	}
	defer client.Close()
	if len(client.Brokers()) == 0 {
		return fmt.Errorf("kafka %v: no brokers in metadata", c.Brokers)
	}
	return nil
}
