package handlers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/incident-engine/engine/domain/incident"
)

// Notifier routes incident events to receivers and delivers them; infra/notify is the real one.
type Notifier interface {
	// Targets names the receivers that want ev.
	Targets(ev incident.Event) []string
	// Deliver sends ev to one receiver, retrying as it sees fit within a budget of its own
	// that ends before the handler's deadline, and returns the attempts made. It is called for
	// several receivers at once.
	Deliver(ctx context.Context, receiver string, ev incident.Event) (attempts int, err error)
}

// DeliveryLog remembers deliveries; infra/postgres.Deliveries is the real one.
type DeliveryLog interface {
	// Delivered reports whether receiver already had a final outcome for the event.
	Delivered(ctx context.Context, receiver, eventID string) (bool, error)
	// Record stores a delivery's outcome with its timeline entry ("notified" or
	// "notification_failed"), in one transaction. It is called for several receivers at once.
	Record(ctx context.Context, d incident.Delivery) error
}

// NotifyHandler is the notify stage: it reads the incident events persist relayed to Kafka
// (each one committed with its incident change, so none is lost or invented) and delivers
// each to the receivers routed to it, at least once, with retries. Every outcome, delivered or
// failed for good, is recorded in the timeline and in a delivery log, so an event redelivered
// after a restart is not sent twice.
type NotifyHandler struct {
	notifier Notifier
	log      DeliveryLog
	now      func() time.Time
	logger   *slog.Logger
	metrics  Metrics
}

// SetMetrics makes the stage count deliveries; nil counts nothing.
func (h *NotifyHandler) SetMetrics(m Metrics) { h.metrics = m }

// NewNotifyHandler returns the notify stage. now dates the deliveries (the moment a receiver
// was told, which is wall-clock time by nature); nil means time.Now.
func NewNotifyHandler(n Notifier, log DeliveryLog, now func() time.Time, logger *slog.Logger) *NotifyHandler {
	if now == nil {
		now = time.Now
	}
	return &NotifyHandler{notifier: n, log: log, now: now, logger: logger}
}

// Handle notifies the receivers of one incident event, side by side: each delivery has its
// own budget (the notifier's), so a receiver that hangs or fails for good is recorded as
// failed and holds neither the others nor the partition. A delivery cut short because the
// worker is stopping is left unrecorded, to be sent after the restart.
func (h *NotifyHandler) Handle(msg *message.Message) error {
	ev, err := decodeJSON[incident.Event](msg.Payload, "incident event")
	if err != nil {
		return err
	}
	ctx := msg.Context()
	targets := h.notifier.Targets(ev)
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, r := range targets {
		wg.Go(func() { errs[i] = h.deliver(ctx, r, ev) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// deliver notifies one receiver of ev, unless it already had a final outcome, and records it.
func (h *NotifyHandler) deliver(ctx context.Context, r string, ev incident.Event) error {
	done, err := h.log.Delivered(ctx, r, ev.EventID)
	if err != nil || done {
		return err
	}
	attempts, sendErr := h.notifier.Deliver(ctx, r, ev)
	if ctx.Err() != nil {
		// Shutting down: leave it undelivered, to be sent after the restart.
		return ctx.Err()
	}
	d := incident.Delivery{Receiver: r, Event: ev, Attempts: attempts, DeliveredAt: h.now().UTC()}
	if sendErr != nil {
		d.Err = sendErr.Error()
		h.logger.Error("notification failed", "stage", "notify", "receiver", r, "service", ev.Service, "incident", ev.IncidentID, "event", ev.Event, "attempts", attempts, "err", sendErr)
	}
	if err := h.log.Record(ctx, d); err != nil {
		return fmt.Errorf("record delivery to %s: %w", r, err)
	}
	metricsOrNone(h.metrics).Delivered(r, d.Err == "")
	return nil
}
