package handlers_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/incident-engine/engine/domain/incident"
	"github.com/incident-engine/engine/handlers"
)

type fakeNotifier struct {
	mu      sync.Mutex
	targets []string
	sent    map[string]int // receiver -> deliveries
	fail    map[string]error
}

func (f *fakeNotifier) Targets(incident.Event) []string { return f.targets }

func (f *fakeNotifier) Deliver(_ context.Context, r string, _ incident.Event) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail[r]; err != nil {
		return 5, err
	}
	f.sent[r]++
	return 1, nil
}

type fakeDeliveries struct {
	mu   sync.Mutex
	done map[string]incident.Delivery // receiver|event -> outcome
	err  error
}

func (f *fakeDeliveries) Delivered(_ context.Context, r, id string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.done[r+"|"+id]
	return ok, nil
}

func (f *fakeDeliveries) Record(_ context.Context, d incident.Delivery) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.done[d.Receiver+"|"+d.Event.EventID] = d
	return nil
}

func eventMsg(t *testing.T, id string) *message.Message {
	t.Helper()
	b, err := json.Marshal(incident.Event{EventID: id, IncidentID: "i-1", Service: "api", Event: incident.KindOpened, Severity: "low", Status: "open"})
	if err != nil {
		t.Fatal(err)
	}
	return message.NewMessage(id, b)
}

// TestNotifyDeliversOnce checks that each routed receiver gets an event once, that a
// redelivered event (as after a worker restart) is not sent again, and that a receiver that
// fails for good is recorded as such without holding up the others.
func TestNotifyDeliversOnce(t *testing.T) {
	t.Parallel()
	n := &fakeNotifier{targets: []string{"slack", "pager", "broken"}, sent: map[string]int{}, fail: map[string]error{"broken": errors.New("503 five times")}}
	log := &fakeDeliveries{done: map[string]incident.Delivery{}}
	at := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	h := handlers.NewNotifyHandler(n, log, func() time.Time { return at }, slog.New(slog.NewTextHandler(io.Discard, nil)))

	for range 3 { // the first delivery and two redeliveries of the same event
		if err := h.Handle(eventMsg(t, "ev-1")); err != nil {
			t.Fatal(err)
		}
	}
	if n.sent["slack"] != 1 || n.sent["pager"] != 1 {
		t.Errorf("deliveries %v, want exactly one per working receiver", n.sent)
	}
	failed := log.done["broken|ev-1"]
	if failed.Err == "" || failed.Attempts != 5 || !failed.DeliveredAt.Equal(at) {
		t.Errorf("failed delivery recorded as %+v, want the error and its 5 attempts", failed)
	}
	if ok := log.done["slack|ev-1"]; ok.Err != "" || ok.Attempts != 1 {
		t.Errorf("delivery recorded as %+v", ok)
	}
}

// TestNotifyRecordFailureIsRetried checks that when the outcome cannot be recorded, the
// message fails (to be redelivered) rather than being acked as if nothing happened.
func TestNotifyRecordFailureIsRetried(t *testing.T) {
	t.Parallel()
	n := &fakeNotifier{targets: []string{"slack"}, sent: map[string]int{}}
	log := &fakeDeliveries{done: map[string]incident.Delivery{}, err: errors.New("database down")}
	h := handlers.NewNotifyHandler(n, log, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	err := h.Handle(eventMsg(t, "ev-2"))
	if err == nil || errors.Is(err, handlers.ErrPermanent) {
		t.Fatalf("Handle = %v, want a retryable error", err)
	}
	if err := h.Handle(message.NewMessage("x", []byte("not json"))); !errors.Is(err, handlers.ErrPermanent) {
		t.Errorf("malformed event: %v, want permanent", err)
	}
}
