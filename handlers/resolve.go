package handlers

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/incident-engine/engine/domain/incident"
)

// ResolveHandler is the resolve stage, fed by the resolution ticker. For every service with an
// open incident it settles the incident if the service's metrics have been healthy for the
// recovery window (by sample time, so the result does not depend on when the tick came), and
// records in the timeline when the service stopped sending samples (by the tick's wall-clock
// time, the only place the engine uses it, held back to what the engine has heard: samples
// still waiting in the broker are not silence). An incident whose data stopped stays open.
type ResolveHandler[T IncidentTx] struct {
	store       IncidentStore[T]
	correlator  incident.Correlator
	out         OutboxTopic
	logger      *slog.Logger
	partitionOf func(service string, partitions int32) int32
}

// SetPartitionOf tells the stage which input partition a service's samples go to
// (infra/kafka.PartitionOf), so that only a backlog on that partition holds its staleness
// back; without it any backlog does.
func (h *ResolveHandler[T]) SetPartitionOf(f func(service string, partitions int32) int32) {
	h.partitionOf = f
}

// NewResolveHandler returns the resolve stage; the router binds its output (To).
func NewResolveHandler[T IncidentTx](store IncidentStore[T], c incident.Correlator, logger *slog.Logger) *ResolveHandler[T] {
	return &ResolveHandler[T]{store: store, correlator: c, logger: logger}
}

// To makes the stage publish its incident events to the outbox topic out, in the transaction
// of each change, and returns its handler. The router calls it once.
func (h *ResolveHandler[T]) To(out OutboxTopic) message.NoPublishHandlerFunc {
	h.out = out
	return h.handle
}

// handle runs one resolution check.
func (h *ResolveHandler[T]) handle(msg *message.Message) error {
	check, err := decodeJSON[ResolutionCheck](msg.Payload, "resolution check")
	if err != nil {
		return err
	}
	services, err := h.store.ServicesWithOpenIncidents(msg.Context())
	if err != nil {
		return err
	}
	// Each service is settled in its own transaction; one service's failure does not hold up
	// the others. Transient failures fail the check, so it is retried; a permanent one is
	// logged here and the service is checked again at the next tick.
	var errs []error
	for _, svc := range services {
		err := h.check(msg, svc, check)
		switch {
		case err == nil:
		case errors.Is(err, ErrPermanent):
			h.logger.Error("resolution check failed", "stage", "resolve", "service", svc, "err", err)
		default:
			errs = append(errs, fmt.Errorf("resolution check of %s: %w", svc, err))
		}
	}
	return errors.Join(errs...)
}

func (h *ResolveHandler[T]) check(msg *message.Message, svc string, check ResolutionCheck) error {
	return h.store.InTx(msg.Context(), func(tx T) error {
		w, err := tx.LoadWatch(svc)
		if err != nil {
			return err
		}
		inc, err := tx.LoadIncident(w.IncidentID())
		if err != nil || inc == nil {
			return err
		}
		if err := h.correlator.Settle(&w, inc); err != nil {
			return Permanent(err)
		}
		if !check.BacklogUnknown && h.correlator.CheckStale(&w, inc, check.heardUpTo(svc, h.partitionOf)) {
			h.logger.Warn("service stopped sending metrics", "stage", "resolve", "service", svc, "incident", inc.ID(), "last_sample_at", w.LastSampleAt())
		}
		if len(inc.Changes()) == 0 {
			return nil
		}
		if inc.Status() == incident.StatusResolved {
			h.logger.Info("incident resolved", "stage", "resolve", "service", svc, "incident", inc.ID())
		}
		if err := SaveAndPublish(msg.Context(), tx, inc, h.out); err != nil {
			return err
		}
		return tx.SaveWatch(w)
	})
}
