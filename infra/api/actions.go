package api

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/incident-engine/engine/domain/incident"
	"github.com/incident-engine/engine/domain/silence"
	"github.com/incident-engine/engine/handlers"
)

// Actions are what the operator API's requests do: acknowledging, resolving and reopening
// incidents, and creating and ending silences. They are not a pipeline stage but the
// application side of the operator API (the Operator the API is built with): each method is
// one transaction that locks the service's watch (in the order the stages lock it, so it
// serialises with correlation), loads the incident, applies the domain's rule, saves the
// incident with its timeline entry and publishes the entry's event to the outbox topic out,
// from which persist relays it to Kafka like every other change.
//
// Operator actions are dated by the time the caller passes in, the wall-clock time of the
// operator's request: they are people's decisions, not judgements of metrics, so unlike the
// stages they do not use sample time. Errors keep the domain's named errors (errors.Is) for
// the caller to tell a client's mistake from a failure.
type Actions[T handlers.OperatorTx] struct {
	store      handlers.IncidentStore[T]
	correlator incident.Correlator
	out        handlers.OutboxTopic
	logger     *slog.Logger
}

// NewActions returns the operator actions, publishing incident events to the outbox
// topic out.
func NewActions[T handlers.OperatorTx](store handlers.IncidentStore[T], c incident.Correlator, out handlers.OutboxTopic, logger *slog.Logger) *Actions[T] {
	return &Actions[T]{store: store, correlator: c, out: out, logger: logger}
}

// Acknowledge records that operator by took incident id on at time at.
func (a *Actions[T]) Acknowledge(ctx context.Context, id, by string, at time.Time) (incident.Snapshot, error) {
	return a.change(ctx, "acknowledge", id, func(_ *incident.Watch, inc *incident.Incident) (bool, error) {
		return false, inc.Acknowledge(by, at)
	})
}

// Resolve closes incident id on operator by's word, for reason, at time at.
func (a *Actions[T]) Resolve(ctx context.Context, id, by, reason string, at time.Time) (incident.Snapshot, error) {
	return a.change(ctx, "resolve", id, func(w *incident.Watch, inc *incident.Incident) (bool, error) {
		return true, a.correlator.ResolveByOperator(w, inc, by, reason, at)
	})
}

// Reopen brings resolved incident id back on operator by's word at time at.
func (a *Actions[T]) Reopen(ctx context.Context, id, by string, at time.Time) (incident.Snapshot, error) {
	return a.change(ctx, "reopen", id, func(w *incident.Watch, inc *incident.Incident) (bool, error) {
		return true, a.correlator.ReopenByOperator(w, inc, by, at)
	})
}

// change runs one action on incident id in one transaction. apply reports whether it changed
// the watch, which is then saved too.
func (a *Actions[T]) change(ctx context.Context, action, id string, apply func(*incident.Watch, *incident.Incident) (bool, error)) (incident.Snapshot, error) {
	var after incident.Snapshot
	err := a.store.InTx(ctx, func(tx T) error {
		service, err := tx.IncidentService(id)
		if err != nil {
			return err
		}
		w, err := tx.LoadWatch(service) // serialises with correlate, which locks the watch first
		if err != nil {
			return err
		}
		inc, err := tx.LoadIncident(id)
		if err != nil {
			return err
		}
		watchChanged, err := apply(&w, inc)
		if err != nil {
			return fmt.Errorf("%s incident %s: %w", action, id, err)
		}
		after = inc.Snapshot()
		if err := handlers.SaveAndPublish(ctx, tx, inc, a.out); err != nil {
			return err
		}
		if watchChanged {
			return tx.SaveWatch(w)
		}
		return nil
	})
	if err != nil {
		return incident.Snapshot{}, err
	}
	a.logger.Info("operator action", "action", action, "service", after.Service, "incident", id, "status", after.Status.String())
	return after, nil
}

// Silence creates a silence of service from start until end, for reason, by author. Its id
// is new and random.
func (a *Actions[T]) Silence(ctx context.Context, service string, start, end time.Time, reason, author string) (silence.Silence, error) {
	s, err := silence.New(uuid.NewString(), service, start, end, reason, author)
	if err != nil {
		return silence.Silence{}, err
	}
	if err := a.store.InTx(ctx, func(tx T) error { return tx.SaveSilence(s) }); err != nil {
		return silence.Silence{}, err
	}
	a.logger.Info("silence created", "service", s.Service(), "silence", s.ID(), "start", s.Start(), "end", s.End(), "author", s.Author())
	return s, nil
}

// EndSilence ends silence id at time at (see silence.Silence.Expire).
func (a *Actions[T]) EndSilence(ctx context.Context, id string, at time.Time) (silence.Silence, error) {
	var s silence.Silence
	err := a.store.InTx(ctx, func(tx T) error {
		var err error
		if s, err = tx.LoadSilence(id); err != nil {
			return err
		}
		if err := s.Expire(at); err != nil {
			return err
		}
		return tx.SaveSilence(s)
	})
	if err != nil {
		return silence.Silence{}, err
	}
	a.logger.Info("silence ended", "service", s.Service(), "silence", s.ID(), "end", s.End())
	return s, nil
}
