package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestHealthEndpoints checks the worker's own health: liveness, readiness against the real
// database and broker, and Prometheus metrics that include the router's per-handler series
// once samples flowed.
func TestHealthEndpoints(t *testing.T) {
	e := startEngine(t, nil)
	e.publishRaw(t, "health-api", samplesJSON("health-api", simStart, 3, normalLatency)...)
	e.waitProcessed(t, simStart.Add(2*time.Minute), "health-api")
	base := "http://" + e.worker.HTTP.Addr()
	for _, c := range []struct {
		path, want string
		why        string
	}{
		{"/healthz", "ok", "the process is alive"},
		{"/readyz", "ready", "PostgreSQL and Kafka both answer"},
		{"/metrics", `handler_name="decode"`, "the router's metrics carry one series per stage"},
		{"/metrics", "go_goroutines", "the Go runtime collector is registered"},
	} {
		resp, err := http.Get(base + c.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), c.want) {
			t.Errorf("GET %s: %d, body lacks %q (%s)", c.path, resp.StatusCode, c.want, c.why)
		}
	}
}
