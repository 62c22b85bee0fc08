package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"github.com/incident-engine/engine/infra/kafka"
	"github.com/incident-engine/engine/infra/postgres"
	"github.com/incident-engine/engine/router"
)

// MetadataReplayedFrom marks a replayed message with the dead-letter record it came from.
const MetadataReplayedFrom = "replayed_from"

// entry is one dead-lettered message as the operator sees it.
type entry struct {
	ID       string    `json:"id"`
	Time     time.Time `json:"time"`
	Topic    string    `json:"topic"`
	Handler  string    `json:"handler"`
	Reason   string    `json:"reason"`
	Service  string    `json:"service,omitempty"`
	Payload  string    `json:"payload"`
	Replayed string    `json:"replayed_from,omitempty"`
	record   kafka.Record
}

func kafkaConfig() kafka.Config {
	return kafka.Config{Brokers: strings.Split(env("KAFKA_BROKERS", "localhost:9092"), ","), ClientID: "incidentctl"}
}

func deadLetters() ([]entry, error) {
	topic := env("DEAD_LETTER_TOPIC", "metrics.deadletter")
	recs, err := kafka.ReadAll(kafkaConfig(), topic)
	if err != nil {
		return nil, fmt.Errorf("read dead-letter topic %s: %w", topic, err)
	}
	out := make([]entry, 0, len(recs))
	for _, r := range recs {
		md := r.Message.Metadata
		out = append(out, entry{
			ID: r.ID(), Time: r.Timestamp.UTC(), Topic: md.Get(middleware.PoisonedTopicKey),
			Handler: md.Get(middleware.PoisonedHandlerKey), Reason: firstLine(md.Get(middleware.ReasonForPoisonedKey)),
			Service: md.Get(kafka.KeyMetadata), Payload: string(r.Message.Payload),
			Replayed: md.Get(MetadataReplayedFrom), record: r,
		})
	}
	return out, nil
}

// firstLine drops the stack trace that a recovered panic appends to its reason.
func firstLine(s string) string {
	if i := strings.Index(s, ", stacktrace:"); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

func dlqList(_ context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("dlq list", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print one JSON object per line")
	if err := fs.Parse(args); err != nil {
		return err
	}
	entries, err := deadLetters()
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, e := range entries {
			if err := enc.Encode(e); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTIME\tTOPIC\tHANDLER\tSERVICE\tREASON\tPAYLOAD")
	for _, e := range entries {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.Time.Format(time.RFC3339), e.Topic, e.Handler, e.Service, e.Reason, truncate(e.Payload, 80))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d dead-lettered messages\n", len(entries))
	return nil
}

func truncate(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > n {
		return s[:n-3] + "..."
	}
	return s
}

func dlqReplay(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("dlq replay", flag.ContinueOnError)
	all := fs.Bool("all", false, "replay every dead-lettered message")
	ids := fs.String("id", "", "replay these ids (partition-offset, comma-separated, as dlq list shows)")
	reason := fs.String("reason", "", "replay messages whose reason contains this text")
	topic := fs.String("topic", "", "replay messages poisoned on this topic")
	dryRun := fs.Bool("dry-run", false, "show what would be replayed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !*all && *ids == "" && *reason == "" && *topic == "" {
		return fmt.Errorf("%w: say which messages: --all, --id, --reason or --topic", errUsage)
	}
	want := map[string]bool{}
	for _, id := range strings.Split(*ids, ",") {
		if id = strings.TrimSpace(id); id != "" {
			want[id] = true
		}
	}
	entries, err := deadLetters()
	if err != nil {
		return err
	}
	var chosen []entry
	for _, e := range entries {
		if (*all || len(want) == 0 || want[e.ID]) &&
			(*reason == "" || strings.Contains(e.Reason, *reason)) &&
			(*topic == "" || e.Topic == *topic) {
			chosen = append(chosen, e)
		}
		delete(want, e.ID)
	}
	if len(want) > 0 {
		return fmt.Errorf("no dead-lettered message with id %v", keys(want))
	}
	if *dryRun {
		for _, e := range chosen {
			fmt.Fprintf(stdout, "would replay %s to %s: %s\n", e.ID, e.Topic, e.Reason)
		}
		return nil
	}
	pubs := publishers{}
	defer pubs.close()
	for _, e := range chosen {
		if e.Topic == "" {
			return fmt.Errorf("message %s has no original topic", e.ID)
		}
		pub, err := pubs.forTopic(ctx, e.Topic)
		if err != nil {
			return err
		}
		msg := message.NewMessage(watermill.NewUUID(), e.record.Message.Payload)
		for k, v := range e.record.Message.Metadata {
			switch k {
			case middleware.ReasonForPoisonedKey, middleware.PoisonedTopicKey, middleware.PoisonedHandlerKey, middleware.PoisonedSubscriberKey, MetadataReplayedFrom:
			default:
				msg.Metadata.Set(k, v)
			}
		}
		msg.Metadata.Set(MetadataReplayedFrom, e.ID)
		if err := pub.Publish(e.Topic, msg); err != nil {
			return fmt.Errorf("replay %s to %s: %w", e.ID, e.Topic, err)
		}
		fmt.Fprintf(stdout, "replayed %s to %s\n", e.ID, e.Topic)
	}
	fmt.Fprintf(stdout, "%d messages replayed\n", len(chosen))
	return nil
}

// publishers opens a Kafka or outbox publisher on first need.
type publishers struct {
	kafka, outbox message.Publisher
	closers       []func()
}

func (p *publishers) forTopic(ctx context.Context, topic string) (message.Publisher, error) {
	if router.IsOutboxTopic(topic) {
		if p.outbox == nil {
			url := env("DATABASE_URL", "")
			if url == "" {
				return nil, errors.New("replaying to an outbox topic needs DATABASE_URL")
			}
			pool, err := postgres.Connect(ctx, url)
			if err != nil {
				return nil, err
			}
			p.closers = append(p.closers, pool.Close)
			pub, err := postgres.NewOutboxPublisher(pool, watermill.NopLogger{})
			if err != nil {
				return nil, err
			}
			p.outbox = pub
		}
		return p.outbox, nil
	}
	if p.kafka == nil {
		pub, err := kafka.NewPublisher(kafkaConfig(), watermill.NopLogger{})
		if err != nil {
			return nil, err
		}
		p.closers = append(p.closers, func() { _ = pub.Close() })
		p.kafka = pub
	}
	return p.kafka, nil
}

func (p *publishers) close() {
	for i := len(p.closers) - 1; i >= 0; i-- {
		p.closers[i]()
	}
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
