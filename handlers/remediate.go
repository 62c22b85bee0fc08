package handlers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/incident-engine/engine/domain/incident"
)

// Remediator routes incident events to remediation hooks and calls them; infra/remediate is
// the real one.
type Remediator interface {
	// Targets names the hooks for ev.
	Targets(ev incident.Event) []string
	// DryRun reports whether a hook only records what it would do.
	DryRun(hook string) bool
	// Limit is how many runs of a hook for one service are allowed within a period.
	Limit() (runs int, per time.Duration)
	// VerifyAfter is how long, in sample time, a remediation is given to help.
	VerifyAfter() time.Duration
	// Call runs the hook for ev.
	Call(ctx context.Context, hook string, ev incident.Event) error
}

// RemediationLog remembers hook runs; infra/postgres.Remediations is the real one.
type RemediationLog interface {
	// ForIncident returns the incident's remediations.
	ForIncident(ctx context.Context, incidentID string) ([]incident.Remediation, error)
	// Runs counts the calls of hook for service made since (wall-clock time).
	Runs(ctx context.Context, hook, service string, since time.Time) (int, error)
	// Record stores a run and its timeline entries in one transaction; a second run of the
	// same hook for the same incident is ignored.
	Record(ctx context.Context, r incident.Remediation) error
}

// RemediateHandler is the remediate stage. When an incident opens, reopens or escalates to a
// hook's severity, it runs the hook once for that incident (or records what it would do, in
// dry-run mode, or that the rate limit held it back), and writes the result to the timeline.
// When a later anomaly of the incident comes VerifyAfter or more (sample time) after the
// change that ran the hook, the remediation did not help: the incident escalates one level
// and the timeline says why, in one transaction with its event, once.
type RemediateHandler[T IncidentTx] struct {
	store  IncidentStore[T]
	hooks  Remediator
	log    RemediationLog
	out    OutboxTopic
	now    func() time.Time
	logger *slog.Logger
}

// NewRemediateHandler returns the remediate stage; the router binds its output (To). now
// dates the calls (wall clock by nature); nil means time.Now.
func NewRemediateHandler[T IncidentTx](store IncidentStore[T], hooks Remediator, log RemediationLog, now func() time.Time, logger *slog.Logger) *RemediateHandler[T] {
	if now == nil {
		now = time.Now
	}
	return &RemediateHandler[T]{store: store, hooks: hooks, log: log, now: now, logger: logger}
}

// To makes the stage publish its escalations to the outbox topic out, in their transaction,
// and returns its handler. The router calls it once.
func (h *RemediateHandler[T]) To(out OutboxTopic) message.NoPublishHandlerFunc {
	h.out = out
	return h.handle
}

// handle reacts to one incident event.
func (h *RemediateHandler[T]) handle(msg *message.Message) error {
	ev, err := decodeJSON[incident.Event](msg.Payload, "incident event")
	if err != nil {
		return err
	}
	ctx := msg.Context()
	targets := h.hooks.Targets(ev)
	if len(targets) == 0 && ev.Event != incident.KindAnomalyRecorded {
		return nil
	}
	past, err := h.log.ForIncident(ctx, ev.IncidentID)
	if err != nil {
		return err
	}
	ran := map[string]incident.Remediation{}
	for _, r := range past {
		ran[r.Hook] = r
	}
	var errs []error
	for _, hook := range targets {
		if _, done := ran[hook]; done {
			continue
		}
		if err := h.run(ctx, hook, ev); err != nil {
			errs = append(errs, err)
		}
	}
	if ev.Event == incident.KindAnomalyRecorded && !ev.Details.Silenced { // maintenance is no verdict on a remediation
		for _, r := range past {
			if r.Verifiable() && !ev.OccurredAt.Before(r.RanFor.Add(h.hooks.VerifyAfter())) {
				if err := h.ineffective(msg, r, ev); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}

func (h *RemediateHandler[T]) run(ctx context.Context, hook string, ev incident.Event) error {
	now := h.now().UTC()
	r := incident.Remediation{Hook: hook, IncidentID: ev.IncidentID, Service: ev.Service, RanFor: ev.OccurredAt, RanAt: now, DryRun: h.hooks.DryRun(hook)}
	maxRuns, per := h.hooks.Limit()
	n, err := h.log.Runs(ctx, hook, ev.Service, now.Add(-per))
	if err != nil {
		return err
	}
	switch {
	case r.DryRun:
	case n >= maxRuns:
		r.Skipped = fmt.Sprintf("rate limit: %d run(s) of %s for %s within %s", n, hook, ev.Service, per)
	default:
		if err := h.hooks.Call(ctx, hook, ev); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r.Err = err.Error()
			h.logger.Error("remediation hook failed", "stage", "remediate", "hook", hook, "service", ev.Service, "incident", ev.IncidentID, "err", err)
		} else {
			r.Status = "ok"
			h.logger.Info("remediation hook ran", "stage", "remediate", "hook", hook, "service", ev.Service, "incident", ev.IncidentID)
		}
	}
	return h.log.Record(ctx, r)
}

// ineffective escalates the incident because remediation r did not help, once.
func (h *RemediateHandler[T]) ineffective(msg *message.Message, r incident.Remediation, ev incident.Event) error {
	return h.store.InTx(msg.Context(), func(tx T) error {
		first, err := tx.MarkProcessed("remediate-verify", r.Hook+"|"+r.IncidentID)
		if err != nil || !first {
			return err
		}
		if _, err := tx.LoadWatch(ev.Service); err != nil { // serialises with correlate
			return err
		}
		inc, err := tx.LoadIncident(ev.IncidentID)
		if err != nil || inc == nil {
			return err
		}
		cause := incident.Signal{At: ev.OccurredAt, Score: ev.Details.Score, Threshold: ev.Details.Threshold, ModelVersion: ev.Details.ModelVersion, Explanation: ev.Details.Explanation}
		if err := inc.RemediationIneffective(r.Hook, r.RanFor, cause); err != nil {
			if errors.Is(err, incident.ErrResolved) {
				return nil
			}
			return Permanent(err)
		}
		h.logger.Warn("remediation did not help; incident escalated", "stage", "remediate", "hook", r.Hook, "service", ev.Service, "incident", ev.IncidentID, "severity", inc.Severity().String())
		return SaveAndPublish(msg.Context(), tx, inc, h.out)
	})
}
