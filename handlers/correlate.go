package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/incident-engine/engine/domain/incident"
	"github.com/incident-engine/engine/domain/sample"
	"github.com/incident-engine/engine/domain/silence"
)

// CorrelateHandler is the correlate stage: it folds each service's scored samples into at
// most one incident at a time (domain/incident.Correlator). Repeated anomalies open an
// incident, further ones grow its occurrence count and last_seen, a healthy streak settles
// it, new anomalies soon after reopen it. The service's watch, the incident row, its timeline
// entries, the events for the next stage and the sample itself, with its score (kept for the
// dashboard's charts), commit in one transaction. A sample not newer than the service's
// watermark is a redelivery and changes nothing. An anomaly whose time falls inside one of
// the service's silences (maintenance windows) opens nothing: it is recorded on the open
// incident, marked silenced, or on the service's own timeline.
type CorrelateHandler[T IncidentTx] struct {
	store      IncidentStore[T]
	correlator incident.Correlator
	out        OutboxTopic
	logger     *slog.Logger
	batch      *batcher[[]correlateItem]
}

// correlateItem is one scored sample as it arrived and as it is kept.
type correlateItem struct {
	in   ScoredSample
	kept sample.Scored
}

// NewCorrelateHandler returns the correlate stage; the router binds its output (To).
// Messages that arrive together (from several partitions at once) are correlated in one
// transaction, up to DefaultMaxBatch samples of them; see SetMaxBatch.
func NewCorrelateHandler[T IncidentTx](store IncidentStore[T], c incident.Correlator, logger *slog.Logger) *CorrelateHandler[T] {
	h := &CorrelateHandler[T]{store: store, correlator: c, logger: logger}
	h.SetMaxBatch(DefaultMaxBatch)
	return h
}

// SetMaxBatch bounds how many samples one transaction correlates (1: one message each); a
// message of more samples is correlated alone.
func (h *CorrelateHandler[T]) SetMaxBatch(n int) {
	h.batch = newBatcher(n, func(items []correlateItem) int { return len(items) }, h.correlateAll, func(ctx context.Context, items []correlateItem) error {
		return h.correlateAll(ctx, [][]correlateItem{items})
	})
}

// To makes the stage publish its incident events to the outbox topic out, in the transaction
// of each change, and returns its handler. The router calls it once, where it binds the stage.
func (h *CorrelateHandler[T]) To(out OutboxTopic) message.NoPublishHandlerFunc {
	h.out = out
	return h.handle
}

// handle correlates one message of scored samples, a lone one or a batch of one service's,
// in a transaction with the messages that came with it.
func (h *CorrelateHandler[T]) handle(msg *message.Message) error {
	ins, err := decodeBatch[ScoredSample](msg.Payload, "scored sample")
	if err != nil {
		return err
	}
	for i, in := range ins {
		if in.Service == "" || in.Timestamp.IsZero() {
			return Permanent(inBatch(i, len(ins), errors.New("scored sample without service or timestamp")))
		}
	}
	samples, err := samplesOf(ins)
	if err != nil {
		return Permanent(fmt.Errorf("scored sample: %w", err))
	}
	items := make([]correlateItem, len(ins))
	for i, in := range ins {
		items[i] = correlateItem{in: in, kept: sample.Scored{
			Sample: samples[i], Judged: in.Judged, Score: in.Score, Threshold: in.Threshold,
			Anomalous: in.Anomalous, ModelVersion: in.ModelVersion,
		}}
	}
	return h.batch.do(msg.Context(), items)
}

// correlateAll correlates messages of different services (each service's messages come one
// at a time, from one partition) in one transaction: their watches are locked in one round
// trip, and saved with the samples in another, with the commit.
func (h *CorrelateHandler[T]) correlateAll(ctx context.Context, msgs [][]correlateItem) error {
	return h.store.InTx(ctx, func(tx T) error {
		var services []string
		var kept []sample.Scored
		for _, items := range msgs {
			services = append(services, items[0].in.Service)
			for _, it := range items {
				kept = append(kept, it.kept)
			}
		}
		if err := tx.LockWatches(services...); err != nil {
			return err
		}
		for _, items := range msgs {
			for _, it := range items {
				if err := h.correlate(ctx, tx, it.in); err != nil {
					return err
				}
			}
		}
		return tx.SaveSamples(kept...)
	})
}

// correlate folds one sample into its service's watch and incident, in tx.
func (h *CorrelateHandler[T]) correlate(ctx context.Context, tx T, in ScoredSample) error {
	obs := incident.Observation{
		At: in.Timestamp, ReceivedAt: in.ReceivedAt, Score: in.Score, Threshold: in.Threshold,
		Judged: in.Judged, Anomalous: in.Anomalous, ModelVersion: in.ModelVersion, Explanation: in.Explanation,
		Relearned: in.Relearned,
	}
	w, err := tx.LoadWatch(in.Service)
	if err != nil {
		return err
	}
	if in.Judged && in.Anomalous { // healthy samples need no silence
		silences, err := tx.ActiveSilences(in.Service, in.Timestamp)
		if err != nil {
			return err
		}
		if s, ok := silence.Covering(silences, in.Service, in.Timestamp); ok {
			obs.Silence = s.ID()
			h.logger.Debug("anomaly of a silenced service", "stage", "correlate", "service", in.Service, "timestamp", in.Timestamp, "silence", s.ID())
		}
	}
	cur, err := tx.LoadIncident(w.IncidentID())
	if err != nil {
		return err
	}
	inc, err := h.correlator.Observe(&w, cur, obs, incidentID)
	if errors.Is(err, incident.ErrStaleSample) {
		h.logger.Debug("duplicate or late sample ignored", "stage", "correlate", "service", in.Service, "timestamp", in.Timestamp)
		return nil
	}
	if err != nil {
		return Permanent(fmt.Errorf("correlate %s at %s: %w", in.Service, in.Timestamp, err))
	}
	for _, changed := range uniqueIncidents(cur, inc) {
		if err := SaveAndPublish(ctx, tx, changed, h.out); err != nil {
			return err
		}
	}
	return tx.SaveWatch(w)
}

func uniqueIncidents(a, b *incident.Incident) []*incident.Incident {
	var out []*incident.Incident
	if a != nil && len(a.Changes()) > 0 {
		out = append(out, a)
	}
	if b != nil && b != a && len(b.Changes()) > 0 {
		out = append(out, b)
	}
	return out
}

// SaveAndPublish stores inc with its pending timeline entries and publishes one event per
// entry to the outbox topic, all in tx: what every change of an incident does, the stages'
// and the operator's (infra/api.Actions).
func SaveAndPublish[T IncidentTx](ctx context.Context, tx T, inc *incident.Incident, topic OutboxTopic) error {
	entries, err := tx.SaveIncident(inc)
	if err != nil {
		return err
	}
	msgs, err := eventMessages(ctx, eventsFor(entries))
	if err != nil {
		return err
	}
	return tx.Publish(string(topic), msgs...)
}

func eventMessages(ctx context.Context, events []IncidentEvent) ([]*message.Message, error) {
	msgs := make([]*message.Message, 0, len(events))
	for _, ev := range events {
		payload, err := json.Marshal(ev)
		if err != nil {
			return nil, fmt.Errorf("encode incident event: %w", err)
		}
		m := message.NewMessage(ev.EventID, payload)
		m.Metadata.Set(MetadataService, ev.Service)
		m.SetContext(ctx)
		msgs = append(msgs, m)
	}
	return msgs, nil
}
