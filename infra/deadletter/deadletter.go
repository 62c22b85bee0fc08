// Package deadletter lists and replays the messages the pipeline poisoned. It reads them from
// the dead-letter topic on Kafka, with the reason, handler and original topic the router's
// poison queue recorded, selects them by id, reason or original topic, and publishes them
// again to their original topic, marked with where they came from. incidentctl and the
// worker's API both use it.
//
// It does not choose transports: the caller says which publisher carries which topic (Kafka,
// or the PostgreSQL outbox for the outbox topics).
package deadletter

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"github.com/incident-engine/engine/infra/kafka"
)

// MetadataReplayedFrom marks a replayed message with the dead-letter record it came from.
const MetadataReplayedFrom = "replayed_from"

// Errors of a selection. Callers use errors.Is.
var (
	// ErrNoSelection is returned by Select when the selection names no messages at all:
	// replaying everything must be asked for (All).
	ErrNoSelection = errors.New("say which messages: all, ids, reason or topic")
	// ErrUnknownID is returned by Select when an id names no dead-lettered message.
	ErrUnknownID = errors.New("no dead-lettered message with id")
)

// Entry is one dead-lettered message as the operator sees it.
type Entry struct {
	// ID is "partition-offset" on the dead-letter topic.
	ID      string    `json:"id"`
	Time    time.Time `json:"time"`
	Topic   string    `json:"topic"`
	Handler string    `json:"handler"`
	Reason  string    `json:"reason"`
	Service string    `json:"service,omitempty"`
	Payload string    `json:"payload"`
	// Replayed names the entry this message was replayed from, if it was.
	Replayed string `json:"replayed_from,omitempty"`
	// Truncated says Payload is cut (a listing shows at most ListPayload bytes of each).
	Truncated bool `json:"payload_truncated,omitempty"`

	msg *message.Message
}

// List reads every message of the dead-letter topic, oldest first by partition and offset.
func List(c kafka.Config, topic string) ([]Entry, error) {
	recs, err := kafka.ReadAll(c, topic)
	if err != nil {
		return nil, fmt.Errorf("read dead-letter topic %s: %w", topic, err)
	}
	return entriesOf(recs), nil
}

// ListPayload is how much of each payload Latest shows.
const ListPayload = 1024

// Latest returns the n latest dead-lettered messages, oldest first, each payload cut to
// ListPayload bytes: it reads at most n records of each partition, however long the topic.
func Latest(c kafka.Config, topic string, n int) ([]Entry, error) {
	recs, err := kafka.ReadLatest(c, topic, n)
	if err != nil {
		return nil, fmt.Errorf("read dead-letter topic %s: %w", topic, err)
	}
	entries := entriesOf(recs)
	slices.SortStableFunc(entries, func(a, b Entry) int { return a.Time.Compare(b.Time) })
	entries = entries[max(0, len(entries)-n):]
	for i := range entries {
		if p := entries[i].Payload; len(p) > ListPayload {
			entries[i].Payload, entries[i].Truncated = strings.ToValidUTF8(p[:ListPayload], ""), true
		}
	}
	return entries, nil
}

func entriesOf(recs []kafka.Record) []Entry {
	out := make([]Entry, 0, len(recs))
	for _, r := range recs {
		md := r.Message.Metadata
		out = append(out, Entry{
			ID: r.ID(), Time: r.Timestamp.UTC(), Topic: md.Get(middleware.PoisonedTopicKey),
			Handler: md.Get(middleware.PoisonedHandlerKey), Reason: firstLine(md.Get(middleware.ReasonForPoisonedKey)),
			Service: md.Get(kafka.KeyMetadata), Payload: string(r.Message.Payload),
			Replayed: md.Get(MetadataReplayedFrom), msg: r.Message,
		})
	}
	return out
}

// firstLine drops the stack trace that a recovered panic appends to its reason.
func firstLine(s string) string {
	if i := strings.Index(s, ", stacktrace:"); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

// Selection says which dead-lettered messages to replay. Its conditions combine: a message is
// chosen when it is among IDs (or IDs is empty), its reason contains Reason and it was
// poisoned on Topic (each when given). All alone chooses everything. Without IDs, an entry
// that was replayed and came back as a newer entry is left to that newer one.
type Selection struct {
	All    bool     `json:"all,omitempty"`
	IDs    []string `json:"ids,omitempty"`
	Reason string   `json:"reason,omitempty"`
	Topic  string   `json:"topic,omitempty"`
}

// Select returns the entries s chooses, in order. A selection that names nothing returns
// ErrNoSelection, one with ids not among entries ErrUnknownID.
func Select(entries []Entry, s Selection) ([]Entry, error) {
	want := map[string]bool{}
	for _, id := range s.IDs {
		if id = strings.TrimSpace(id); id != "" {
			want[id] = true
		}
	}
	if !s.All && len(want) == 0 && s.Reason == "" && s.Topic == "" {
		return nil, ErrNoSelection
	}
	byID := len(want) > 0
	// A message replayed before that failed again came back as a new entry naming it: the
	// new one stands for it, so replaying both would put the message back twice (and the
	// topic would double with every replay of everything).
	replayed := map[string]bool{}
	for _, e := range entries {
		if e.Replayed != "" {
			replayed[e.Replayed] = true
		}
	}
	var chosen []Entry
	found := map[string]bool{}
	for _, e := range entries {
		if (byID && want[e.ID] || !byID && !replayed[e.ID]) &&
			(s.Reason == "" || strings.Contains(e.Reason, s.Reason)) &&
			(s.Topic == "" || e.Topic == s.Topic) {
			chosen = append(chosen, e)
		}
		found[e.ID] = true
	}
	var missing []string
	for id := range want {
		if !found[id] {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return nil, fmt.Errorf("%w %s", ErrUnknownID, strings.Join(missing, ", "))
	}
	return chosen, nil
}

// PublisherFor returns the publisher that carries topic.
type PublisherFor func(ctx context.Context, topic string) (message.Publisher, error)

// Replay publishes each entry again to its original topic, with a new message id, its
// metadata less the poison queue's, and MetadataReplayedFrom set to its id. It stops at the
// first failure and returns the entries replayed before it.
func Replay(ctx context.Context, entries []Entry, pubFor PublisherFor) ([]Entry, error) {
	var done []Entry
	for _, e := range entries {
		if e.Topic == "" {
			return done, fmt.Errorf("message %s has no original topic", e.ID)
		}
		if e.msg == nil {
			return done, fmt.Errorf("message %s was not read by List", e.ID)
		}
		pub, err := pubFor(ctx, e.Topic)
		if err != nil {
			return done, err
		}
		msg := message.NewMessage(watermill.NewUUID(), e.msg.Payload)
		for k, v := range e.msg.Metadata {
			switch k {
			case middleware.ReasonForPoisonedKey, middleware.PoisonedTopicKey, middleware.PoisonedHandlerKey, middleware.PoisonedSubscriberKey, MetadataReplayedFrom:
			default:
				msg.Metadata.Set(k, v)
			}
		}
		msg.Metadata.Set(MetadataReplayedFrom, e.ID)
		msg.SetContext(ctx)
		if err := pub.Publish(e.Topic, msg); err != nil {
			return done, fmt.Errorf("replay %s to %s: %w", e.ID, e.Topic, err)
		}
		done = append(done, e)
	}
	return done, nil
}

// Queue is a dead-letter topic with the publishers to replay its messages: what the worker's
// API serves.
type Queue struct {
	kafka  kafka.Config
	topic  string
	pubFor PublisherFor
}

// NewQueue returns the dead-letter topic topic on the brokers of c, replaying through pubFor.
func NewQueue(c kafka.Config, topic string, pubFor PublisherFor) *Queue {
	return &Queue{kafka: c, topic: topic, pubFor: pubFor}
}

// List returns every dead-lettered message.
func (q *Queue) List(context.Context) ([]Entry, error) { return List(q.kafka, q.topic) }

// Latest returns the n latest dead-lettered messages (see Latest).
func (q *Queue) Latest(_ context.Context, n int) ([]Entry, error) { return Latest(q.kafka, q.topic, n) }

// Replay replays the messages s selects, or with dryRun only returns them.
func (q *Queue) Replay(ctx context.Context, s Selection, dryRun bool) ([]Entry, error) {
	entries, err := q.List(ctx)
	if err != nil {
		return nil, err
	}
	chosen, err := Select(entries, s)
	if err != nil || dryRun {
		return chosen, err
	}
	return Replay(ctx, chosen, q.pubFor)
}
