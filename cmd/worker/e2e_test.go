package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/incident-engine/engine/infra/kafka"
	"github.com/incident-engine/engine/infra/notify"
	"github.com/incident-engine/engine/infra/postgres"
	"github.com/incident-engine/engine/infra/postgres/pgtest"
	"github.com/incident-engine/engine/infra/remediate"
	"github.com/incident-engine/engine/router"
	"github.com/incident-engine/engine/wire"
)

// producerBin is the producer command, built once for all tests.
var producerBin string

func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "e2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		producerBin = filepath.Join(dir, "producer")
		if out, err := exec.Command("go", "build", "-o", producerBin, "../producer").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build producer: %v\n%s", err, out)
			return 1
		}
		if err := buildWorker(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return pgtest.Main(m)
	}())
}

// engine is a worker running against a throwaway PostgreSQL and an in-process broker.
type engine struct {
	brokers []string
	pool    *pgxpool.Pool
	worker  *wire.Worker
	stop    func() // stops the worker startEngine started; safe to call twice
	broker  *kafka.Broker
}

func startEngine(t testing.TB, tune func(*wire.Config)) *engine {
	t.Helper()
	broker, err := kafka.StartBroker(kafka.BrokerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(broker.Close)
	e := &engine{brokers: broker.Addrs(), broker: broker}
	e.stop = e.startWorker(t, pgtest.Database(t), tune)
	t.Cleanup(e.stop)
	e.pool, err = postgres.Connect(context.Background(), string(e.worker.DatabaseURL))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.pool.Close)
	return e
}

// startWorker starts a worker on the engine's broker and database url, and returns the
// function that stops it and waits until it has.
func (e *engine) startWorker(t testing.TB, dbURL string, tune func(*wire.Config)) (stop func()) {
	t.Helper()
	cfg := wire.Config{KafkaBrokers: e.brokers, DatabaseURL: dbURL, TickInterval: 200 * time.Millisecond, HTTPAddr: "127.0.0.1:0"}
	if tune != nil {
		tune(&cfg)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	ctx, cancel := context.WithCancel(context.Background())
	w, cleanup, err := wire.New(ctx, cfg, logger)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	select {
	case <-w.Router.Running():
	case <-time.After(30 * time.Second):
		t.Fatal("router not running after 30s")
	}
	e.worker = w
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("worker stopped with %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("worker did not stop within 30s of cancellation")
			}
			cleanup()
		})
	}
}

// produce runs the producer command in simulated time.
func (e *engine) produce(t testing.TB, args ...string) {
	t.Helper()
	args = append([]string{"--simulate", "--quiet", "--brokers", strings.Join(e.brokers, ",")}, args...)
	out, err := exec.Command(producerBin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("producer %v: %v\n%s", args, err, out)
	}
}

// waitFor polls cond every 100ms until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s; last state: %s", timeout, what, last)
}

// waitProcessed waits until every service has been correlated up to last and the outbox is
// drained.
func (e *engine) waitProcessed(t testing.TB, last time.Time, services ...string) {
	t.Helper()
	e.waitProcessedWithin(t, 4*time.Minute, last, services...)
}

// waitProcessedWithin is waitProcessed with its own bound, for long benchmarks.
func (e *engine) waitProcessedWithin(t testing.TB, limit time.Duration, last time.Time, services ...string) {
	t.Helper()
	waitFor(t, limit, "the stream to be processed", func() (bool, string) {
		var n, outbox int
		err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM service_watch WHERE service = ANY($1) AND last_sample_at = $2`, services, last).Scan(&n)
		if err != nil {
			return false, err.Error()
		}
		for _, topic := range router.OutboxTopics {
			if topic == string(router.TopicChecks) {
				continue
			}
			var c int
			_ = e.pool.QueryRow(context.Background(), fmt.Sprintf(`SELECT count(*) FROM "watermill_%s"`, topic)).Scan(&c)
			outbox += c
		}
		return n == len(services) && outbox == 0, fmt.Sprintf("%d of %d services done, %d outbox rows pending", n, len(services), outbox)
	})
}

type incidentRow struct {
	ID, Service, Severity, Status string
	Occurrences                   int
	FirstSeen, LastSeen           time.Time
	ResolvedAt                    *time.Time
}

func (e *engine) incidents(t testing.TB, services ...string) []incidentRow {
	t.Helper()
	rows, err := e.pool.Query(context.Background(), `
		SELECT id::text, service, severity, status, occurrence_count, first_seen, last_seen, resolved_at
		FROM incidents WHERE service = ANY($1) ORDER BY service, first_seen`, services)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []incidentRow
	for rows.Next() {
		var r incidentRow
		if err := rows.Scan(&r.ID, &r.Service, &r.Severity, &r.Status, &r.Occurrences, &r.FirstSeen, &r.LastSeen, &r.ResolvedAt); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

type timelineRow struct {
	Event      string
	OccurredAt time.Time
	Details    map[string]any
}

func (e *engine) timeline(t testing.TB, incidentID string) []timelineRow {
	t.Helper()
	rows, err := e.pool.Query(context.Background(), `SELECT event, occurred_at, details FROM incident_timeline WHERE incident_id = $1 ORDER BY occurred_at, id`, incidentID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []timelineRow
	for rows.Next() {
		var r timelineRow
		if err := rows.Scan(&r.Event, &r.OccurredAt, &r.Details); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

var (
	simStart  = time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	failAfter = 6 * time.Hour
	failFor   = time.Hour
	failFrom  = simStart.Add(failAfter)
	failUntil = failFrom.Add(failFor)
	// lingerAfter bounds how long after a failure a mildly odd sample still counts as part of
	// it: while the evidence of the last ten samples is high, a sample rarer than one in twenty
	// is anomalous (detect.Config.Slack).
	lingerAfter = 10 * time.Minute
	recoveryBy  = failUntil.Add(lingerAfter + 15*time.Minute + 5*time.Minute)
)

// TestFailureModesEndToEnd runs the producer's four failure modes through the whole pipeline
// (Kafka, every stage, the PostgreSQL outbox and back to Kafka) in one engine, each mode
// under its own service names, and checks the incidents and their timelines.
func TestFailureModesEndToEnd(t *testing.T) {
	e := startEngine(t, nil)
	type scenario struct {
		mode     string
		span     time.Duration
		failing  bool
		severity []string // acceptable final severities
		why      string
	}
	scenarios := []scenario{
		{"none", 24 * time.Hour, false, nil, "a simulated day of healthy traffic, daily cycle included, opens nothing"},
		{"latency", 12 * time.Hour, true, []string{"medium", "high", "critical"}, "an hour of 5x p95 latency is one incident that escalates"},
		{"errors", 12 * time.Hour, true, []string{"medium", "high", "critical"}, "an hour of 12-16% errors is one incident that escalates"},
		{"meltdown", 12 * time.Hour, true, []string{"critical"}, "errors, latency and a traffic collapse reach the highest severity"},
	}
	var all []string
	done := make(chan error, len(scenarios))
	for _, s := range scenarios {
		prefix := s.mode + "-"
		all = append(all, prefix+"api", prefix+"db", prefix+"auth")
		go func() {
			args := []string{"--service-prefix", prefix, "--failure-mode", s.mode, "--fail-services", "api",
				"--start", simStart.Format(time.RFC3339), "--duration", s.span.String(), "--interval", "1m",
				"--failure-after", failAfter.String(), "--failure-for", failFor.String()}
			cmd := exec.Command(producerBin, append([]string{"--simulate", "--quiet", "--brokers", strings.Join(e.brokers, ",")}, args...)...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				err = fmt.Errorf("producer %s: %w\n%s", s.mode, err, out)
			}
			done <- err
		}()
	}
	for range scenarios {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range scenarios {
		prefix := s.mode + "-"
		e.waitProcessed(t, simStart.Add(s.span-time.Minute), prefix+"api", prefix+"db", prefix+"auth")
	}

	for _, s := range scenarios {
		t.Run(s.mode, func(t *testing.T) {
			prefix := s.mode + "-"
			got := e.incidents(t, prefix+"api", prefix+"db", prefix+"auth")
			if !s.failing {
				if len(got) != 0 {
					t.Fatalf("%s: got %d incidents %+v, want none", s.why, len(got), got)
				}
				return
			}
			if len(got) != 1 || got[0].Service != prefix+"api" {
				t.Fatalf("%s: got incidents %+v, want exactly one, for %sapi", s.why, got, prefix)
			}
			inc := got[0]
			defer func() {
				if t.Failed() {
					for _, r := range e.timeline(t, inc.ID) {
						if r.Event != "anomaly_recorded" || testing.Verbose() {
							t.Logf("timeline: %s %s %v", r.OccurredAt.Format("15:04"), r.Event, r.Details)
						}
					}
				}
			}()
			if inc.FirstSeen.Before(failFrom) || inc.FirstSeen.After(failFrom.Add(5*time.Minute)) {
				t.Errorf("first_seen %s, want within 5m of the failure start %s", inc.FirstSeen, failFrom)
			}
			if inc.LastSeen.Before(failUntil.Add(-5*time.Minute)) || inc.LastSeen.After(failUntil.Add(lingerAfter)) {
				t.Errorf("last_seen %s, want from 5m before the failure end %s to %s after it", inc.LastSeen, failUntil, lingerAfter)
			}
			if inc.Occurrences < 40 {
				t.Errorf("occurrence_count %d, want most of the 60 failing samples", inc.Occurrences)
			}
			if !contains(s.severity, inc.Severity) {
				t.Errorf("severity %s, want one of %v (%s)", inc.Severity, s.severity, s.why)
			}
			if inc.Status != "resolved" || inc.ResolvedAt == nil || inc.ResolvedAt.Before(failUntil) || inc.ResolvedAt.After(recoveryBy) {
				t.Errorf("status %s resolved_at %v, want resolved between %s and %s", inc.Status, inc.ResolvedAt, failUntil, recoveryBy)
			}
			checkTimeline(t, e.timeline(t, inc.ID), inc)
		})
	}

	t.Run("samples-recorded", func(t *testing.T) {
		want := 0
		for _, s := range scenarios {
			want += 3 * int(s.span/time.Minute)
		}
		waitFor(t, time.Minute, "every scored sample in the samples table", func() (bool, string) {
			var n, judged int
			_ = e.pool.QueryRow(context.Background(), `SELECT count(*), count(score) FROM samples`).Scan(&n, &judged)
			return n == want && judged == want-3*len(scenarios)*256, fmt.Sprintf("%d samples (%d judged), want %d", n, judged, want)
		})
	})

	t.Run("events-on-kafka", func(t *testing.T) {
		var rows int
		if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM incident_timeline`).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		waitFor(t, time.Minute, "every timeline entry to reach the incidents topic", func() (bool, string) {
			recs, err := kafka.ReadAll(kafka.Config{Brokers: e.brokers}, string(router.TopicIncidents))
			if err != nil {
				return false, err.Error()
			}
			ids := map[string]bool{}
			for _, r := range recs {
				ids[r.Message.UUID] = true
			}
			return len(ids) == rows, fmt.Sprintf("%d distinct events on Kafka, %d timeline rows", len(ids), rows)
		})
	})
}

// checkTimeline asserts the timeline tells the story in order: opened, anomalies and
// escalations, resolved last, every entry carrying the evidence that led to it.
func checkTimeline(t *testing.T, tl []timelineRow, inc incidentRow) {
	t.Helper()
	if len(tl) < 3 {
		t.Fatalf("timeline has %d entries: %+v", len(tl), tl)
	}
	if tl[0].Event != "opened" || tl[len(tl)-1].Event != "resolved" {
		t.Errorf("timeline runs %s .. %s, want opened .. resolved", tl[0].Event, tl[len(tl)-1].Event)
	}
	escalations, anomalies := 0, 0
	severity := "low"
	for i, r := range tl {
		if i > 0 && r.OccurredAt.Before(tl[i-1].OccurredAt) {
			t.Errorf("entry %d (%s at %s) is older than entry %d (%s at %s)", i, r.Event, r.OccurredAt, i-1, tl[i-1].Event, tl[i-1].OccurredAt)
		}
		switch r.Event {
		case "opened", "anomaly_recorded":
			if r.Event == "anomaly_recorded" {
				anomalies++
			}
			score, _ := r.Details["score"].(float64)
			thr, _ := r.Details["threshold"].(float64)
			if score <= thr || thr <= 0 {
				t.Errorf("%s at %s: score %v not above threshold %v", r.Event, r.OccurredAt, score, thr)
			}
			if v, _ := r.Details["model_version"].(float64); v < 1 {
				t.Errorf("%s at %s: no model version in %v", r.Event, r.OccurredAt, r.Details)
			}
			expl, _ := r.Details["explanation"].([]any)
			total := 0.0
			for _, c := range expl {
				share, _ := c.(map[string]any)["share"].(float64)
				total += share
			}
			if len(expl) == 0 || total <= 0 || total > 1.0001 {
				t.Errorf("%s at %s: explanation %v, want metrics with shares summing to at most 1", r.Event, r.OccurredAt, expl)
			}
		case "escalated":
			escalations++
			if r.Details["from"] != severity || r.Details["rule"] == "" || r.Details["rule"] == nil {
				t.Errorf("escalation %v: want from %s with the rule that fired", r.Details, severity)
			}
			severity, _ = r.Details["to"].(string)
		}
	}
	if severity != inc.Severity {
		t.Errorf("timeline escalates to %s, incident says %s", severity, inc.Severity)
	}
	if escalations == 0 {
		t.Error("no escalation recorded while the failure lasted")
	}
	if anomalies+len(tl) < inc.Occurrences {
		t.Errorf("%d anomaly entries for %d occurrences", anomalies, inc.Occurrences)
	}
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// TestTrafficAndSeasonality runs the producer's traffic changes through the pipeline over two
// simulated days (the daily cycle twice, and a retraining at the first day's end): a healthy
// spike of three times the traffic and a service doing better than usual open nothing; a
// collapse of traffic with everything else normal opens an incident.
func TestTrafficAndSeasonality(t *testing.T) {
	e := startEngine(t, nil)
	cases := []struct {
		mode     string
		incident bool
		why      string
	}{
		{"spike", false, "three times the requests with normal errors and latency is healthy load"},
		{"better", false, "lower latency and fewer errors than usual is not an incident"},
		{"collapse", true, "traffic falling to a tenth is an incident even when errors and latency look fine"},
		{"none", false, "two days of daily cycles, with a retraining in between, open nothing"},
	}
	done := make(chan error, len(cases))
	for _, c := range cases {
		go func() {
			args := []string{"--simulate", "--quiet", "--brokers", strings.Join(e.brokers, ","), "--service-prefix", c.mode + "-",
				"--failure-mode", c.mode, "--fail-services", "api", "--start", simStart.Format(time.RFC3339), "--duration", "48h",
				"--failure-after", "30h", "--failure-for", "1h"}
			out, err := exec.Command(producerBin, args...).CombinedOutput()
			if err != nil {
				err = fmt.Errorf("producer %s: %w\n%s", c.mode, err, out)
			}
			done <- err
		}()
	}
	for range cases {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range cases {
		p := c.mode + "-"
		e.waitProcessed(t, simStart.Add(48*time.Hour-time.Minute), p+"api", p+"db", p+"auth")
	}
	var retrained int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM models WHERE version = 2`).Scan(&retrained); err != nil || retrained != 3*len(cases) {
		t.Errorf("%d services retrained (%v), want all %d after a day of samples", retrained, err, 3*len(cases))
	}
	for _, c := range cases {
		t.Run(c.mode, func(t *testing.T) {
			p := c.mode + "-"
			got := e.incidents(t, p+"api", p+"db", p+"auth")
			if !c.incident {
				if len(got) != 0 {
					t.Errorf("%s: got %+v", c.why, got)
				}
				return
			}
			from := simStart.Add(30 * time.Hour)
			if len(got) != 1 || got[0].Service != p+"api" || got[0].FirstSeen.Before(from) || got[0].FirstSeen.After(from.Add(5*time.Minute)) {
				t.Fatalf("%s: got %+v, want one incident for %sapi at %s", c.why, got, p, from)
			}
			tl := e.timeline(t, got[0].ID)
			expl, _ := tl[0].Details["explanation"].([]any)
			if len(expl) == 0 || expl[0].(map[string]any)["metric"] != "request_count" {
				t.Errorf("explanation %v, want request_count first", expl)
			}
		})
	}
}

// alertReceiver is a loopback receiver recording every payload, failing the first few.
type alertReceiver struct {
	mu       sync.Mutex
	bodies   []map[string]any
	failures int
}

func (a *alertReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var m map[string]any
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.failures > 0 {
		a.failures--
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return
	}
	a.bodies = append(a.bodies, m)
}

func (a *alertReceiver) received() []map[string]any {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]map[string]any(nil), a.bodies...)
}

// errorsIncident runs eight simulated hours with an errors failure of api through an engine
// tuned by tune, and returns the engine and api's one incident, resolved.
func errorsIncident(t *testing.T, tune func(*wire.Config)) (*engine, []incidentRow) {
	t.Helper()
	e := startEngine(t, tune)
	e.produce(t, "--failure-mode", "errors", "--start", simStart.Format(time.RFC3339), "--duration", "8h",
		"--failure-after", failAfter.String(), "--failure-for", failFor.String())
	e.waitProcessed(t, simStart.Add(8*time.Hour-time.Minute), "api", "db", "auth")
	got := e.incidents(t, "api")
	if len(got) != 1 || got[0].Status != "resolved" {
		t.Fatalf("incidents %+v, want one resolved", got)
	}
	return e, got
}

// notifiable counts the changes of an incident a receiver hears of (in these tests: opened,
// escalated, resolved).
func (e *engine) notifiable(t testing.TB, incidentID string) int {
	t.Helper()
	n := 0
	for _, r := range e.timeline(t, incidentID) {
		if r.Event == "opened" || r.Event == "escalated" || r.Event == "resolved" {
			n++
		}
	}
	return n
}

// TestNotificationsEndToEnd sends a failure through the pipeline to a local receiver in
// Prometheus Alertmanager format: it gets firing alerts while the incident is open (after
// retrying past the receiver's first failures) and a resolved one at the end, every delivery
// is in the timeline, and a restarted worker sends nothing twice.
func TestNotificationsEndToEnd(t *testing.T) {
	am := &alertReceiver{failures: 2}
	srv := httptest.NewServer(am)
	defer srv.Close()
	tune := func(c *wire.Config) {
		c.Notify = notify.Config{DashboardURL: "http://dashboard.local", Backoff: notify.Duration(10 * time.Millisecond),
			Receivers: []notify.Receiver{{Name: "alertmanager", Kind: notify.KindWebhook, URL: srv.URL}}}
	}
	e, got := errorsIncident(t, tune)
	notifiable := e.notifiable(t, got[0].ID)
	waitFor(t, time.Minute, "every notifiable change delivered", func() (bool, string) {
		n := 0
		for _, r := range e.timeline(t, got[0].ID) {
			if r.Event == "notified" {
				n++
			}
		}
		return n == notifiable && len(am.received()) == notifiable, fmt.Sprintf("%d notified entries, %d received, want %d", n, len(am.received()), notifiable)
	})
	bodies := am.received()
	first, last := bodies[0], bodies[len(bodies)-1]
	if first["version"] != "4" || first["status"] != "firing" || last["status"] != "resolved" {
		t.Errorf("first %v / last %v: want Alertmanager v4, firing then resolved", first["status"], last["status"])
	}
	alert := last["alerts"].([]any)[0].(map[string]any)
	labels := alert["labels"].(map[string]any)
	if labels["service"] != "api" || labels["incident_id"] != got[0].ID || alert["endsAt"] == "0001-01-01T00:00:00Z" {
		t.Errorf("resolved alert %v", alert)
	}

	// A new worker re-reads the incidents topic from its committed offset: nothing is resent.
	// A new failure of the same service (its events on the same partition, after the old
	// ones) is the sentinel: once its notification arrives, the restarted notify stage has
	// passed every old event.
	url := string(e.worker.DatabaseURL)
	e.stop()
	t.Cleanup(e.startWorker(t, url, tune))
	from := simStart.Add(8 * time.Hour)
	e.produce(t, "--failure-mode", "errors", "--start", from.Format(time.RFC3339), "--duration", "1h",
		"--failure-after", "0s", "--failure-for", "40m")
	incidentOf := func(body map[string]any) string {
		alerts, _ := body["alerts"].([]any)
		if len(alerts) == 0 {
			return ""
		}
		labels, _ := alerts[0].(map[string]any)["labels"].(map[string]any)
		id, _ := labels["incident_id"].(string)
		return id
	}
	waitFor(t, time.Minute, "the sentinel failure's notification", func() (bool, string) {
		for _, b := range am.received() {
			if id := incidentOf(b); id != "" && id != got[0].ID {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d notifications, none of a new incident", len(am.received()))
	})
	old := 0
	for _, b := range am.received() {
		if incidentOf(b) == got[0].ID {
			old++
		}
	}
	if old != notifiable {
		t.Errorf("after a restart the receiver has %d notifications of the first incident, want still %d", old, notifiable)
	}
}

// TestSlowReceiversHoldNoOne sends a failure's notifications to three receivers at once: a
// healthy one, one that always fails and one that never answers. The healthy one gets every
// notification; each of the others is recorded as failed for every one of them, within its
// delivery budget, and nothing stalls.
func TestSlowReceiversHoldNoOne(t *testing.T) {
	healthy, failing := &alertReceiver{}, &alertReceiver{failures: 1 << 30}
	release := make(chan struct{})
	hanging := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer hanging.Close()
	defer close(release)
	okSrv, failSrv := httptest.NewServer(healthy), httptest.NewServer(failing)
	defer okSrv.Close()
	defer failSrv.Close()
	tune := func(c *wire.Config) {
		c.Notify = notify.Config{Backoff: notify.Duration(10 * time.Millisecond), Budget: notify.Duration(time.Second),
			Receivers: []notify.Receiver{
				{Name: "hanging", Kind: notify.KindWebhook, URL: hanging.URL},
				{Name: "failing", Kind: notify.KindWebhook, URL: failSrv.URL},
				{Name: "healthy", Kind: notify.KindWebhook, URL: okSrv.URL},
			}}
	}
	e, got := errorsIncident(t, tune)
	notifiable := e.notifiable(t, got[0].ID)
	waitFor(t, 2*time.Minute, "every change delivered or failed at every receiver", func() (bool, string) {
		outcomes := map[string]int{}
		for _, r := range e.timeline(t, got[0].ID) {
			if r.Event == "notified" || r.Event == "notification_failed" {
				receiver, _ := r.Details["receiver"].(string)
				outcomes[r.Event+" "+receiver]++
			}
		}
		want := map[string]int{"notified healthy": notifiable, "notification_failed failing": notifiable, "notification_failed hanging": notifiable}
		return reflect.DeepEqual(outcomes, want) && len(healthy.received()) == notifiable, fmt.Sprintf("%v, want %v", outcomes, want)
	})
}

// TestRemediationEndToEnd gives the latency failure a remediation hook that does not help:
// the hook is called once with the incident, the timeline records the call and its result,
// and since anomalies go on past the verification time, the incident escalates with the rule
// remediation-ineffective. A dry-run hook on the same incident is recorded but never called.
func TestRemediationEndToEnd(t *testing.T) {
	hook := &alertReceiver{}
	srv := httptest.NewServer(hook)
	defer srv.Close()
	e := startEngine(t, func(c *wire.Config) {
		c.Remediate = remediate.Config{VerifyAfter: notify.Duration(15 * time.Minute), Hooks: []remediate.Hook{
			{Name: "restart-api", URL: srv.URL, Services: []string{"api"}, MinSeverity: "low"},
			{Name: "failover-api", URL: srv.URL, Services: []string{"api"}, MinSeverity: "low", DryRun: true},
		}}
	})
	e.produce(t, "--failure-mode", "latency", "--start", simStart.Format(time.RFC3339), "--duration", "8h",
		"--failure-after", failAfter.String(), "--failure-for", failFor.String())
	e.waitProcessed(t, simStart.Add(8*time.Hour-time.Minute), "api", "db", "auth")
	got := e.incidents(t, "api")
	if len(got) != 1 {
		t.Fatalf("incidents %+v, want one", got)
	}
	var events []string
	waitFor(t, time.Minute, "the remediation to be judged ineffective", func() (bool, string) {
		events = events[:0]
		for _, r := range e.timeline(t, got[0].ID) {
			if strings.HasPrefix(r.Event, "remediation") || (r.Event == "escalated" && r.Details["rule"] == "remediation-ineffective") {
				events = append(events, fmt.Sprintf("%s:%v", r.Event, r.Details["hook"]))
			}
		}
		return strings.Contains(strings.Join(events, " "), "remediation_ineffective"), strings.Join(events, " ")
	})
	joined := strings.Join(events, " ")
	for _, want := range []string{"remediation_requested:restart-api", "remediation_result:restart-api", "remediation_requested:failover-api", "remediation_ineffective"} {
		if !strings.Contains(joined, want) {
			t.Errorf("timeline %q lacks %s", joined, want)
		}
	}
	if strings.Contains(joined, "remediation_result:failover-api") {
		t.Errorf("the dry-run hook was called: %s", joined)
	}
	calls := hook.received()
	if len(calls) != 1 || calls[0]["hook"] != "restart-api" || calls[0]["incident"].(map[string]any)["incident_id"] != got[0].ID {
		t.Errorf("hook calls %v, want one call of restart-api with the incident", calls)
	}
}
