package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/incident-engine/engine/infra/kafka"
	"github.com/incident-engine/engine/wire"
)

// TestHealthEndpoints checks the worker's own health: liveness, readiness against the real
// database and broker, and Prometheus metrics that include the router's per-handler series
// once samples flowed.
func TestHealthEndpoints(t *testing.T) {
	e := startEngine(t, func(c *wire.Config) { c.Detect.WarmUp = 32; c.PerServiceMetrics = true })
	e.publishRaw(t, "health-api", samplesJSON("health-api", simStart, 40, normalLatency)...)
	e.publishRaw(t, "health-api", `{"service":"health-api","timestamp":"2026-11-26T23:00:00Z","error_rate":7}`)
	e.waitProcessed(t, simStart.Add(39*time.Minute), "health-api")
	waitFor(t, 30*time.Second, "the bad sample dead-lettered", func() (bool, string) {
		recs, err := kafka.ReadAll(kafka.Config{Brokers: e.brokers}, "metrics.deadletter")
		return err == nil && len(recs) == 1, fmt.Sprint(len(recs), err)
	})
	base := "http://" + e.worker.HTTP.Addr()
	for _, c := range []struct {
		path, want string
		why        string
	}{
		{"/healthz", "ok", "the process is alive"},
		{"/readyz", "ready", "PostgreSQL and Kafka both answer"},
		{"/metrics", `handler_name="decode"`, "the router's metrics carry one series per stage"},
		{"/metrics", "go_goroutines", "the Go runtime collector is registered"},
		{"/metrics", `incident_engine_build_info{goversion="go`, "the build running"},
		{"/metrics", `incident_engine_samples_decoded_total{service="health-api"} 40`, "samples decoded, by service"},
		{"/metrics", `incident_engine_samples_scored_total{service="health-api"} 8`, "samples judged once the 32-sample warm-up is over"},
		{"/metrics", `incident_engine_anomaly_score_count{service="health-api"} 8`, "anomaly scores, by service"},
		{"/metrics", `incident_engine_messages_dead_lettered_total{handler="decode"} 1`, "dead letters, by stage (never labelled from invalid input)"},
		{"/metrics", `incident_engine_incidents_open{severity="critical"} 0`, "incidents open by severity, read from the database"},
		{"/metrics", `incident_engine_model_version{service="health-api"} 1`, "each service's model"},
		{"/metrics", `incident_engine_outbox_pending_messages{topic="incidents.outbox"}`, "the outbox backlog"},
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

	// Without its broker the worker is alive but not ready.
	e.broker.Close()
	waitFor(t, 30*time.Second, "/readyz to report the broker gone", func() (bool, string) {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(string(body), "kafka"), fmt.Sprint(resp.StatusCode, " ", string(body))
	})
	if resp, err := http.Get(base + "/healthz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz without a broker: %v %v, want 200 (alive)", resp, err)
	}
}

// TestMetricsStayBoundedByDefault checks that, unless asked, /metrics has no series by
// service: counts are the engine's, so a fleet of 50,000 services scrapes like one.
func TestMetricsStayBoundedByDefault(t *testing.T) {
	e := startEngine(t, func(c *wire.Config) { c.Detect.WarmUp = 32 })
	e.publishRaw(t, "quiet-a", samplesJSON("quiet-a", simStart, 5, normalLatency)...)
	e.publishRaw(t, "quiet-b", samplesJSON("quiet-b", simStart, 5, normalLatency)...)
	e.waitProcessed(t, simStart.Add(4*time.Minute), "quiet-a", "quiet-b")
	resp, err := http.Get("http://" + e.worker.HTTP.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "incident_engine_samples_decoded_total 10") {
		t.Errorf("/metrics lacks the engine-wide count of 10 decoded samples")
	}
	if strings.Contains(string(body), `service="quiet-`) {
		t.Errorf("/metrics has series by service though they were not asked for")
	}
}

// TestMetricsBehindTheReadToken checks that /metrics, like every read, needs a token once
// API_READ_TOKEN is set, while /healthz and /readyz stay open for probes.
func TestMetricsBehindTheReadToken(t *testing.T) {
	const read = "read-token-0123456789"
	e := startEngine(t, func(c *wire.Config) { c.API.ReadToken = read })
	base := "http://" + e.worker.HTTP.Addr()
	get := func(path, token string) int {
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct {
		path, token string
		want        int
	}{{"/metrics", "", 401}, {"/metrics", "wrong-token-0123456789", 401}, {"/metrics", read, 200}, {"/healthz", "", 200}} {
		if got := get(c.path, c.token); got != c.want {
			t.Errorf("GET %s with token %q: %d, want %d", c.path, c.token, got, c.want)
		}
	}
}
