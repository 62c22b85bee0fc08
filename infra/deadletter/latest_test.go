package deadletter_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/IBM/sarama"

	"github.com/incident-engine/engine/infra/deadletter"
	"github.com/incident-engine/engine/infra/kafka"
)

// TestLatestReadsOnlyTheLatest puts five dead letters, one with a 60 kB payload, on an
// in-process broker's one-partition topic: Latest(2) gives the last two, oldest first, the
// large payload cut to ListPayload and marked so.
func TestLatestReadsOnlyTheLatest(t *testing.T) {
	t.Parallel()
	b, err := kafka.StartBroker(kafka.BrokerConfig{Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	sc := sarama.NewConfig()
	sc.Version = kafka.ProtocolVersion
	sc.Producer.Return.Successes = true
	p, err := sarama.NewSyncProducer(b.Addrs(), sc)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for i := range 5 {
		payload := fmt.Sprintf("letter %d", i)
		if i == 4 {
			payload = strings.Repeat("x", 60_000)
		}
		if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: "dl", Value: sarama.StringEncoder(payload)}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := deadletter.Latest(kafka.Config{Brokers: b.Addrs()}, "dl", 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Payload != "letter 3" || len(got[1].Payload) != deadletter.ListPayload || !got[1].Truncated || got[0].Truncated {
		for _, e := range got {
			t.Logf("%s %d bytes truncated=%v", e.ID, len(e.Payload), e.Truncated)
		}
		t.Errorf("Latest(2): %d entries, want letter 3 and the large one cut to %d bytes", len(got), deadletter.ListPayload)
	}
}
