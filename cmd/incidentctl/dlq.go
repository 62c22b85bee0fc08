package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/incident-engine/engine/infra/deadletter"
	"github.com/incident-engine/engine/infra/kafka"
	"github.com/incident-engine/engine/infra/postgres"
	"github.com/incident-engine/engine/router"
)

func kafkaConfig() kafka.Config {
	return kafka.Config{Brokers: strings.Split(env("KAFKA_BROKERS", "localhost:9092"), ","), ClientID: "incidentctl"}
}

func deadLetters() ([]deadletter.Entry, error) {
	return deadletter.List(kafkaConfig(), env("DEAD_LETTER_TOPIC", "metrics.deadletter"))
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
	if len(entries) == 0 {
		fmt.Fprintln(stdout, "no dead-lettered messages")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTIME\tTOPIC\tHANDLER\tSERVICE\tREASON\tPAYLOAD")
	for _, e := range entries {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.Time.Format(time.RFC3339), printable(e.Topic), printable(e.Handler),
			printable(e.Service), printable(e.Reason), truncate(printable(e.Payload), 80))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d dead-lettered messages\n", len(entries))
	return nil
}

// printable escapes what a producer wrote so the operator's terminal shows it, never obeys
// it: control characters (escape sequences, newlines, tabs that would break the table),
// invalid UTF-8 and invisible or direction-changing characters come out as Go escapes.
func printable(s string) string {
	var b strings.Builder
	for len(s) > 0 {
		r, size := utf8.DecodeRuneInString(s)
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[0])
		case unicode.IsControl(r) || unicode.Is(unicode.Cf, r):
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteRune(r)
		}
		s = s[size:]
	}
	return b.String()
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
	sel := deadletter.Selection{All: *all, IDs: strings.Split(*ids, ","), Reason: *reason, Topic: *topic}
	entries, err := deadLetters()
	if err != nil {
		return err
	}
	chosen, err := deadletter.Select(entries, sel)
	if errors.Is(err, deadletter.ErrNoSelection) {
		return fmt.Errorf("%w: say which messages: --all, --id, --reason or --topic", errUsage)
	}
	if err != nil {
		return err
	}
	if *dryRun {
		for _, e := range chosen {
			fmt.Fprintf(stdout, "would replay %s to %s: %s\n", e.ID, e.Topic, e.Reason)
		}
		return nil
	}
	pubs := publishers{}
	defer pubs.close()
	done, err := deadletter.Replay(ctx, chosen, pubs.forTopic)
	for _, e := range done {
		fmt.Fprintf(stdout, "replayed %s to %s\n", e.ID, e.Topic)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d messages replayed\n", len(done))
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
