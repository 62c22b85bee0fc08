package remediate

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/incident-engine/engine/domain/incident"
	"github.com/incident-engine/engine/infra/notify"
)

func TestTargetsAndCall(t *testing.T) {
	t.Parallel()
	var got map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewDecoder(r.Body).Decode(&got)
		if got["hook"] == "broken" {
			http.Error(w, "no such runbook", http.StatusNotFound)
		}
	}))
	defer srv.Close()
	r, err := New(Config{Hooks: []Hook{
		{Name: "restart", URL: srv.URL, Services: []string{"api"}},
		{Name: "page-db", URL: srv.URL, Services: []string{"db"}, MinSeverity: "critical"},
		{Name: "broken", URL: srv.URL, MinSeverity: "low"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	ev := incident.Event{IncidentID: "i-1", Service: "api", Event: incident.KindEscalated, Severity: "high"}
	cases := []struct {
		name string
		ev   func(incident.Event) incident.Event
		want []string
		why  string
	}{
		{"high-api", func(e incident.Event) incident.Event { return e }, []string{"restart", "broken"}, "high reaches the default min severity of restart"},
		{"low-api", func(e incident.Event) incident.Event { e.Severity = "low"; return e }, []string{"broken"}, "low is below restart's default (high)"},
		{"anomaly", func(e incident.Event) incident.Event { e.Event = incident.KindAnomalyRecorded; return e }, nil, "only openings, reopenings and escalations run hooks"},
		{"critical-db", func(e incident.Event) incident.Event { e.Service, e.Severity = "db", "critical"; return e }, []string{"page-db", "broken"}, "routed by service"},
	}
	for _, c := range cases {
		if got := r.Targets(c.ev(ev)); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %v, want %v (%s)", c.name, got, c.want, c.why)
		}
	}
	if err := r.Call(context.Background(), "restart", ev); err != nil {
		t.Fatal(err)
	}
	if got["hook"] != "restart" || got["incident"].(map[string]any)["incident_id"] != "i-1" {
		t.Errorf("hook body %v, want the hook name and the incident", got)
	}
	if err := r.Call(context.Background(), "broken", ev); !errors.Is(err, notify.ErrRejected) {
		t.Errorf("a 404 from the hook: %v, want ErrRejected", err)
	}
	if _, err := New(Config{Hooks: []Hook{{Name: "x"}, {Name: "x", URL: "u", MinSeverity: "urgent"}}}); err == nil ||
		!strings.Contains(err.Error(), "url") || !strings.Contains(err.Error(), "unique") || !strings.Contains(err.Error(), "min_severity") {
		t.Errorf("bad config: %v, want every problem named", err)
	}
	// A hook's TLS files are read when the configuration is loaded, not at its first call.
	missing := notify.HTTPConfig{TLS: &notify.TLSConfig{CAFile: t.TempDir() + "/missing.pem"}}
	if _, err := New(Config{Hooks: []Hook{{Name: "x", URL: "https://runbooks.local/x", HTTP: missing}}}); err == nil ||
		!strings.Contains(err.Error(), "hook x") || !strings.Contains(err.Error(), "ca_file") {
		t.Errorf("a hook whose ca_file is missing: %v, want an error naming the hook and the file", err)
	}
}

// TestLoadConfigRefusesUnknownFields checks that a misspelt field is an error naming it, not
// silently ignored: a hook whose "dry_run" is misspelt must not run for real.
func TestLoadConfigRefusesUnknownFields(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) string {
		p := dir + "/" + name
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.json", `{"hooks":[{"name":"restart","url":"http://runbooks.local/restart","dry_run":true}]}`)
	c, err := LoadConfig(good)
	if err != nil || len(c.Hooks) != 1 || !c.Hooks[0].DryRun {
		t.Fatalf("LoadConfig of a valid file: %+v, %v", c, err)
	}
	bad := write("bad.json", `{"hooks":[{"name":"restart","url":"http://runbooks.local/restart","dryrun":true}]}`)
	if _, err := LoadConfig(bad); err == nil || !strings.Contains(err.Error(), `"dryrun"`) {
		t.Errorf("LoadConfig with a misspelt dry_run: %v, want an error naming \"dryrun\"", err)
	}
	zero := write("zero.json", `{"hooks":[{"name":"restart","url":"http://runbooks.local/restart"}],"max_runs":0,"timeout":"0s","per":"2h"}`)
	_, err = LoadConfig(zero)
	for _, want := range []string{"max_runs is 0", "timeout is 0"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("LoadConfig with max_runs 0 and timeout 0s: %v, want it to say %q, not take the defaults", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), "per is 0") {
		t.Errorf("LoadConfig: %v names per, which is 2h", err)
	}
}
