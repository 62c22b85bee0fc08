package handlers

import (
	"errors"
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
type EscalateHandler[T IncidentTx] struct {
	store  IncidentStore[T]
	policy incident.Policy
	out    string
	logger *slog.Logger
}

// NewEscalateHandler returns the escalate stage, or the policy's validation error.
func NewEscalateHandler[T IncidentTx](store IncidentStore[T], policy incident.Policy, out string, logger *slog.Logger) (*EscalateHandler[T], error) {
	if err := policy.Validate(); err != nil {
		return nil, err
	}
	return &EscalateHandler[T]{store: store, policy: policy, out: out, logger: logger}, nil
}

// Handle applies the severity policy to one incident event.
func (h *EscalateHandler[T]) Handle(msg *message.Message) error {
	ev, err := decodeJSON[IncidentEvent](msg.Payload, "incident event")
	if err != nil {
		return err
	}
	return h.store.InTx(msg.Context(), func(tx T) error {
		first, err := tx.MarkProcessed("escalate", msg.UUID)
		if err != nil || !first {
			return err
		}
		forward := msg.Copy()
		forward.SetContext(msg.Context())
		if err := tx.Publish(h.out, forward); err != nil {
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
		if !ok {
			return nil
		}
		if _, err := tx.LoadWatch(ev.Service); err != nil { // serialises with correlate
			return err
		}
		inc, err := tx.LoadIncident(ev.IncidentID)
		if err != nil {
			return err
		}
		if inc == nil || target <= inc.Severity() {
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
		return saveAndPublish(msg.Context(), tx, inc, h.out)
	})
}
