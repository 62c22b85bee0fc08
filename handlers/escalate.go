package handlers

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/incident-engine/engine/domain/incident"
)

// EscalateHandler is the escalate stage: for every correlated change of an incident it asks
// the severity policy (domain/incident.Policy) what the incident deserves, judged on the
// incident as it was at that change (the event's snapshot and time), and raises the severity
// when the policy says so, writing the rule that fired to the timeline. Judging the snapshot,
// not the current row, makes the outcome independent of how far behind this stage runs.
// Anomalies inside a silence are never judged. It passes every incoming event on, followed
// by its own escalation event, to the outbox topic out. Each input message is handled once
// (inbox), so redelivery neither escalates nor forwards twice.
//
// Every change correlate makes flows through here in order, so what goes out describes each
// change as it was, however far behind this stage runs: a forwarded event carries the
// severity the incident had reached at that point of the stream (a resolution correlate wrote
// before this stage caught up still says the severity its episode ended with), and an
// escalation carries the snapshot of the change it was judged on (an escalation judged before
// a resolution says "open", and goes out before that resolution). No escalation is judged on
// a change after a resolution.
type EscalateHandler[T IncidentTx] struct {
	store  IncidentStore[T]
	policy incident.Policy
	out    OutboxTopic
	logger *slog.Logger
}

// NewEscalateHandler returns the escalate stage, or the policy's validation error; the router
// binds its output (To).
func NewEscalateHandler[T IncidentTx](store IncidentStore[T], policy incident.Policy, logger *slog.Logger) (*EscalateHandler[T], error) {
	if err := policy.Validate(); err != nil {
		return nil, err
	}
	return &EscalateHandler[T]{store: store, policy: policy, logger: logger}, nil
}

// To makes the stage publish what it forwards and its escalations to the outbox topic out,
// in its transaction, and returns its handler. The router calls it once.
func (h *EscalateHandler[T]) To(out OutboxTopic) message.NoPublishHandlerFunc {
	h.out = out
	return h.handle
}

// handle applies the severity policy to one incident event.
func (h *EscalateHandler[T]) handle(msg *message.Message) error {
	ev, err := decodeJSON[IncidentEvent](msg.Payload, "incident event")
	if err != nil {
		return err
	}
	return h.store.InTx(msg.Context(), func(tx T) error {
		first, err := tx.MarkProcessed("escalate", msg.UUID)
		if err != nil || !first {
			return err
		}
		if _, err := tx.LoadWatch(ev.Service); err != nil { // serialises with correlate
			return err
		}
		inc, err := tx.LoadIncident(ev.IncidentID)
		if err != nil {
			return err
		}
		forward := msg.Copy()
		forward.SetContext(msg.Context())
		if inc != nil && inc.Severity().String() != ev.Severity {
			// Only this stage raises the severity, in stream order: the row's is the severity
			// at this change.
			asAt := ev
			asAt.Severity = inc.Severity().String()
			if forward.Payload, err = json.Marshal(asAt); err != nil {
				return fmt.Errorf("encode incident event: %w", err)
			}
		}
		if err := tx.Publish(string(h.out), forward); err != nil {
			return err
		}
		switch ev.Event {
		case incident.KindOpened, incident.KindAnomalyRecorded, incident.KindReopened:
		default:
			return nil
		}
		if ev.Details.Silenced { // an anomaly inside a maintenance window is no evidence of severity
			return nil
		}
		target, rule, ok := h.policy.Evaluate(ev.Facts())
		if !ok || inc == nil || target <= inc.Severity() {
			return nil
		}
		cause := incident.Signal{At: ev.OccurredAt, Score: ev.Details.Score, Threshold: ev.Details.Threshold,
			ModelVersion: ev.Details.ModelVersion, Explanation: ev.Details.Explanation}
		if err := inc.EscalateFor(target, rule.Name, cause, ev.OccurrenceCount); err != nil {
			if errors.Is(err, incident.ErrNotHigher) || errors.Is(err, incident.ErrResolved) {
				return nil
			}
			return Permanent(err)
		}
		h.logger.Info("incident escalated", "stage", "escalate", "service", ev.Service, "incident", ev.IncidentID, "severity", target.String(), "rule", rule.Name)
		entries, err := tx.SaveIncident(inc)
		if err != nil {
			return err
		}
		escalations := eventsFor(entries)
		for i := range escalations {
			escalations[i] = asAtChange(escalations[i], ev)
		}
		msgs, err := eventMessages(msg.Context(), escalations)
		if err != nil {
			return err
		}
		return tx.Publish(string(h.out), msgs...)
	})
}

// asAtChange returns the escalation event esc with the incident's snapshot as it was at the
// change it was judged on, its new severity aside.
func asAtChange(esc, change IncidentEvent) IncidentEvent {
	out := change
	out.EventID, out.Event, out.OccurredAt, out.Severity, out.Details = esc.EventID, esc.Event, esc.OccurredAt, esc.Severity, esc.Details
	return out
}
