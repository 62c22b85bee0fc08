package kafka

import (
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Broker is an in-process server of the Kafka protocol (franz-go's kfake), for development
// and tests. It is a real broker to every client: Sarama, franz-go or kcat.
type Broker struct {
	cluster *kfake.Cluster
	once    sync.Once
}

// BrokerConfig sets up the in-process broker.
type BrokerConfig struct {
	// Port on 127.0.0.1; 0 picks a free one.
	Port int
	// DataDir keeps the log on disk across restarts when set; empty keeps it in memory.
	DataDir string
	// Partitions of automatically created topics (default Partitions).
	Partitions int
}

// StartBroker starts the broker. Topics are created on first use.
func StartBroker(c BrokerConfig) (*Broker, error) {
	if c.Partitions == 0 {
		c.Partitions = Partitions
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(c.Partitions),
		kfake.Ports(c.Port),
	}
	if c.DataDir != "" {
		opts = append(opts, kfake.DataDir(c.DataDir))
	}
	cl, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("start in-process kafka broker on port %d: %w", c.Port, err)
	}
	return &Broker{cluster: cl}, nil
}

// Addrs returns the broker's host:port addresses.
func (b *Broker) Addrs() []string { return b.cluster.ListenAddrs() }

// Close stops the broker. Closing twice is harmless.
func (b *Broker) Close() { b.once.Do(b.cluster.Close) }
