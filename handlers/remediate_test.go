package handlers_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/incident-engine/engine/domain/incident"
	"github.com/incident-engine/engine/handlers"
)

type fakeHooks struct {
	dry   map[string]bool
	calls []string
}

func (f *fakeHooks) Targets(ev incident.Event) []string {
	if ev.Event == incident.KindOpened {
		return []string{"restart", "failover"}
	}
	return nil
}
func (f *fakeHooks) DryRun(h string) bool        { return f.dry[h] }
func (f *fakeHooks) Limit() (int, time.Duration) { return 1, time.Hour }
func (f *fakeHooks) VerifyAfter() time.Duration  { return 15 * time.Minute }
func (f *fakeHooks) Call(_ context.Context, h string, _ incident.Event) error {
	f.calls = append(f.calls, h)
	return nil
}

type fakeRemediations struct {
	mu   sync.Mutex
	runs map[string]int // hook|service -> earlier calls within the window
	log  []incident.Remediation
}

func (f *fakeRemediations) ForIncident(_ context.Context, id string) ([]incident.Remediation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []incident.Remediation
	for _, r := range f.log {
		if r.IncidentID == id {
			out = append(out, r)
		}
	}
	return out, nil
}

func (f *fakeRemediations) Runs(_ context.Context, hook, service string, _ time.Time) (int, error) {
	return f.runs[hook+"|"+service], nil
}

func (f *fakeRemediations) Record(_ context.Context, r incident.Remediation) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log = append(f.log, r)
	return nil
}

// TestRemediateRunsOncePerIncident checks the hook rules without a broker: a hook runs once
// per incident however often the event comes, a dry-run hook is recorded but not called, and
// a hook that already ran for the service within its period is skipped with the reason.
func TestRemediateRunsOncePerIncident(t *testing.T) {
	t.Parallel()
	hooks := &fakeHooks{dry: map[string]bool{"failover": true}}
	log := &fakeRemediations{runs: map[string]int{"restart|db": 1}}
	h := handlers.NewRemediateHandler[*fakeTx](newFakeStore(), hooks, log, nil, slog.New(slog.NewTextHandler(io.Discard, nil))).To("out")
	send := func(service, id string) {
		b, _ := json.Marshal(incident.Event{EventID: "e-" + id, IncidentID: id, Service: service, Event: incident.KindOpened, Severity: "high", Status: "open"})
		if err := h(message.NewMessage("e-"+id, b)); err != nil {
			t.Fatal(err)
		}
	}
	send("api", "inc-1")
	send("api", "inc-1") // redelivered
	send("db", "inc-2")  // restart already ran for db within the hour
	if len(hooks.calls) != 1 || hooks.calls[0] != "restart" {
		t.Errorf("calls %v, want restart once (the dry run and the rate-limited one are not called)", hooks.calls)
	}
	var dry, skipped int
	for _, r := range log.log {
		if r.DryRun {
			dry++
		}
		if r.Skipped != "" {
			skipped++
		}
	}
	if len(log.log) != 4 || dry != 2 || skipped != 1 {
		t.Errorf("recorded %+v, want 4 runs: restart and failover for each incident, failover dry, db's restart skipped", log.log)
	}
}
