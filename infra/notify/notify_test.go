package notify

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/incident-engine/engine/domain/incident"
)

var (
	first    = time.Date(2026, 11, 26, 5, 2, 0, 0, time.UTC)
	resolved = time.Date(2026, 11, 26, 6, 15, 0, 0, time.UTC)
)

func event(kind incident.Kind, severity, status string) incident.Event {
	ev := incident.Event{
		EventID: "ev-1", IncidentID: "0b5c2f0e-7d51-4b55-9c84-5f3c2b0f8a11", Service: "api", Event: kind,
		OccurredAt: first.Add(8 * time.Minute), Severity: severity, Status: status, OccurrenceCount: 12,
		FirstSeen: first, LastSeen: first.Add(8 * time.Minute),
		Details: incident.Details{Score: 0.8, Threshold: 0.7, Rule: "sustained-10m", Explanation: []incident.Contribution{
			{Metric: "latency_p95", Share: 0.68}, {Metric: "error_rate", Share: 0.25}, {Metric: "request_count", Share: 0.07},
		}},
	}
	if status == "resolved" {
		ev.ResolvedAt = &resolved
	}
	return ev
}

// recorder is a loopback receiver that fails the first failures requests with status.
type recorder struct {
	mu       sync.Mutex
	bodies   [][]byte
	failures int
	status   int
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bodies = append(r.bodies, b)
	if req.Header.Get("Content-Type") != "application/json" {
		http.Error(w, "want application/json", http.StatusUnsupportedMediaType)
		return
	}
	if r.failures > 0 {
		r.failures--
		http.Error(w, "try later", r.status)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func (r *recorder) last(t *testing.T) map[string]any {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.bodies) == 0 {
		t.Fatal("receiver got nothing")
	}
	var m map[string]any
	if err := json.Unmarshal(r.bodies[len(r.bodies)-1], &m); err != nil {
		t.Fatalf("payload is not JSON: %v", err)
	}
	return m
}

func newNotifier(t *testing.T, receivers ...Receiver) *Notifier {
	t.Helper()
	n, err := New(Config{Receivers: receivers, DashboardURL: "http://dash.local/", Backoff: Duration(time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	n.sleep = func(context.Context, time.Duration) error { return nil }
	return n
}

func TestPayloads(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		r    Receiver
		ev   incident.Event
		want string
		why  string
	}{
		{
			"slack-opened", Receiver{Name: "s", Kind: KindSlack}, event(incident.KindOpened, "low", "open"),
			`{"text":"Incident opened: api is behaving abnormally (severity low) http://dash.local/#/incidents/0b5c2f0e-7d51-4b55-9c84-5f3c2b0f8a11","blocks":[` +
				`{"type":"section","text":{"type":"mrkdwn","text":"*Incident opened: api is behaving abnormally (severity low)*"}},` +
				`{"type":"section","fields":[{"type":"mrkdwn","text":"*Service*\napi"},{"type":"mrkdwn","text":"*Severity*\nlow"},{"type":"mrkdwn","text":"*Status*\nopen"},` +
				`{"type":"mrkdwn","text":"*Anomalies*\n12 since 2026-11-26T05:02:00Z"},{"type":"mrkdwn","text":"*Driven by*\nlatency_p95 68%, error_rate 25%, request_count 7%"}]},` +
				`{"type":"section","text":{"type":"mrkdwn","text":"\u003chttp://dash.local/#/incidents/0b5c2f0e-7d51-4b55-9c84-5f3c2b0f8a11|Open in the dashboard\u003e"}}]}`,
			"a readable message: service, severity, the metrics that drove it, a link",
		},
		{
			"pagerduty-trigger", Receiver{Name: "p", Kind: KindPagerDuty, RoutingKey: "R0UT1NG"}, event(incident.KindEscalated, "high", "open"),
			`{"routing_key":"R0UT1NG","event_action":"trigger","dedup_key":"0b5c2f0e-7d51-4b55-9c84-5f3c2b0f8a11","payload":{` +
				`"summary":"Incident escalated: api is now high (rule sustained-10m)","source":"api","severity":"error","timestamp":"2026-11-26T05:10:00Z",` +
				`"component":"api","group":"incident-engine","class":"escalated","custom_details":{"driven_by":"latency_p95 68%, error_rate 25%, request_count 7%",` +
				`"engine_severity":"high","first_seen":"2026-11-26T05:02:00Z","incident_id":"0b5c2f0e-7d51-4b55-9c84-5f3c2b0f8a11","occurrence_count":12,"score":0.8,"threshold":0.7}},` +
				`"links":[{"href":"http://dash.local/#/incidents/0b5c2f0e-7d51-4b55-9c84-5f3c2b0f8a11","text":"Incident in the dashboard"}]}`,
			"Events API v2 trigger, dedup_key = incident id, high maps to error",
		},
		{
			"pagerduty-resolve", Receiver{Name: "p", Kind: KindPagerDuty, RoutingKey: "R0UT1NG"}, event(incident.KindResolved, "high", "resolved"),
			`{"routing_key":"R0UT1NG","event_action":"resolve","dedup_key":"0b5c2f0e-7d51-4b55-9c84-5f3c2b0f8a11"}`,
			"resolve needs only the key and the dedup_key",
		},
		{
			"pagerduty-acknowledge", Receiver{Name: "p", Kind: KindPagerDuty, RoutingKey: "R0UT1NG"}, event("acknowledged", "high", "open"),
			`{"routing_key":"R0UT1NG","event_action":"acknowledge","dedup_key":"0b5c2f0e-7d51-4b55-9c84-5f3c2b0f8a11"}`,
			"an acknowledgement in the engine acknowledges the PagerDuty incident",
		},
		{
			"alertmanager-resolved", Receiver{Name: "am", Kind: KindWebhook}, event(incident.KindResolved, "medium", "resolved"),
			`{"version":"4","groupKey":"{}:{service=\"api\"}","truncatedAlerts":0,"status":"resolved","receiver":"am","groupLabels":{"service":"api"},` +
				`"commonLabels":{"alertname":"IncidentEngineAnomaly","incident_id":"0b5c2f0e-7d51-4b55-9c84-5f3c2b0f8a11","service":"api"},` +
				`"commonAnnotations":{"description":"12 anomalies since 2026-11-26T05:02:00Z; last change: resolved","driven_by":"latency_p95 68%, error_rate 25%, request_count 7%","notification_reason":"resolved","severity":"medium","summary":"Incident resolved: api has recovered"},` +
				`"externalURL":"http://dash.local","alerts":[{"status":"resolved","labels":{"alertname":"IncidentEngineAnomaly","incident_id":"0b5c2f0e-7d51-4b55-9c84-5f3c2b0f8a11","service":"api"},` +
				`"annotations":{"description":"12 anomalies since 2026-11-26T05:02:00Z; last change: resolved","driven_by":"latency_p95 68%, error_rate 25%, request_count 7%","notification_reason":"resolved","severity":"medium","summary":"Incident resolved: api has recovered"},` +
				`"startsAt":"2026-11-26T05:02:00Z","endsAt":"2026-11-26T06:15:00Z","generatorURL":"http://dash.local/#/incidents/0b5c2f0e-7d51-4b55-9c84-5f3c2b0f8a11","fingerprint":"` + fingerprint("0b5c2f0e-7d51-4b55-9c84-5f3c2b0f8a11") + `"}]}`,
			"Alertmanager webhook version 4 with one alert per incident",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got, err := Payload(c.r, c.ev, "http://dash.local/")
			if err != nil {
				t.Fatal(err)
			}
			var g, w any
			if err := json.Unmarshal(got, &g); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(c.want), &w); err != nil {
				t.Fatalf("bad expectation: %v", err)
			}
			if !reflect.DeepEqual(g, w) {
				t.Errorf("%s\n got %s\nwant %s", c.why, got, c.want)
			}
		})
	}
}

func TestDeliverRetriesThenSucceeds(t *testing.T) {
	t.Parallel()
	rec := &recorder{failures: 2, status: http.StatusServiceUnavailable}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	n := newNotifier(t, Receiver{Name: "am", Kind: KindWebhook, URL: srv.URL})
	attempts, err := n.Deliver(context.Background(), "am", event(incident.KindOpened, "low", "open"))
	if err != nil || attempts != 3 {
		t.Fatalf("Deliver = %d attempts, %v; want success on the third after two 503s", attempts, err)
	}
	if got := rec.last(t)["status"]; got != "firing" {
		t.Errorf("status %v, want firing", got)
	}
}

func TestDeliverGivesUp(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name         string
		status       int
		wantAttempts int
		why          string
	}{
		{"server-error", http.StatusInternalServerError, 5, "5xx is retried up to max_attempts"},
		{"rate-limited", http.StatusTooManyRequests, 5, "429 is retried too"},
		{"rejected", http.StatusBadRequest, 1, "a 4xx will not get better: no retry"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{failures: 100, status: c.status}
			srv := httptest.NewServer(rec)
			defer srv.Close()
			n := newNotifier(t, Receiver{Name: "s", Kind: KindSlack, URL: srv.URL})
			attempts, err := n.Deliver(context.Background(), "s", event(incident.KindOpened, "low", "open"))
			if err == nil || attempts != c.wantAttempts {
				t.Errorf("%s: %d attempts, err %v; want %d and an error", c.why, attempts, err, c.wantAttempts)
			}
		})
	}
}

func TestTargets(t *testing.T) {
	t.Parallel()
	n := newNotifier(t,
		Receiver{Name: "all", Kind: KindSlack, URL: "http://x"},
		Receiver{Name: "api-high", Kind: KindPagerDuty, URL: "http://x", RoutingKey: "k", Services: []string{"api"}, MinSeverity: "high"},
	)
	cases := []struct {
		name string
		ev   incident.Event
		want []string
		why  string
	}{
		{"opened-low", event(incident.KindOpened, "low", "open"), []string{"all"}, "low is below the pager's minimum"},
		{"escalated-high", event(incident.KindEscalated, "high", "open"), []string{"all", "api-high"}, "high reaches the pager"},
		{"anomaly", event(incident.KindAnomalyRecorded, "critical", "open"), nil, "single anomalies inside an incident notify no one"},
		{"escalated-acked", func() incident.Event {
			e := event(incident.KindEscalated, "critical", "open")
			e.AckedBy = "alice"
			return e
		}(), nil, "an acknowledged incident's escalations stop repeating"},
		{"other-service", func() incident.Event { e := event(incident.KindOpened, "critical", "open"); e.Service = "db"; return e }(), []string{"all"}, "the pager is routed to api only"},
	}
	for _, c := range cases {
		if got := n.Targets(c.ev); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: targets %v, want %v (%s)", c.name, got, c.want, c.why)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	_, err := New(Config{Receivers: []Receiver{
		{Name: "a", Kind: "email", URL: "x"},
		{Name: "a", Kind: KindPagerDuty},
		{Name: "b", Kind: KindSlack, URL: "x", MinSeverity: "urgent"},
	}})
	if err == nil {
		t.Fatal("invalid receivers accepted")
	}
	for _, want := range []string{"kind \"email\"", "unique name", "routing_key", "min_severity"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// TestErrorsKeepURLSecret checks that a failed delivery's error, which goes to the log and the
// timeline, names the host but not the webhook URL's secret path.
func TestErrorsKeepURLSecret(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close() // nothing listens there any more
	n := newNotifier(t, Receiver{Name: "s", Kind: KindSlack, URL: srv.URL + "/services/T000/B000/SECRETTOKEN"})
	_, err := n.Deliver(context.Background(), "s", event(incident.KindOpened, "low", "open"))
	if err == nil || strings.Contains(err.Error(), "SECRETTOKEN") {
		t.Errorf("error %v: want a failure that does not show the secret path", err)
	}
}

// TestDeliverWithinItsBudget checks that a receiver that never answers costs one delivery
// its budget and no more: Deliver gives up with ErrBudgetSpent, though the HTTP timeout and
// the attempts left would have waited far longer, while a caller's own cancellation is
// reported as such, not as a failed delivery.
func TestDeliverWithinItsBudget(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer hang.Close()
	defer close(release)
	n, err := New(Config{Receivers: []Receiver{{Name: "hang", Kind: KindWebhook, URL: hang.URL}},
		Timeout: Duration(time.Hour), Budget: Duration(100 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	attempts, err := n.Deliver(context.Background(), "hang", event(incident.KindOpened, "low", "open"))
	if !errors.Is(err, ErrBudgetSpent) || attempts != 1 {
		t.Errorf("Deliver to a receiver that never answers: %d attempts, %v; want 1 and ErrBudgetSpent", attempts, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := n.Deliver(ctx, "hang", event(incident.KindOpened, "low", "open")); errors.Is(err, ErrBudgetSpent) || err == nil {
		t.Errorf("Deliver with the caller's context cancelled: %v, want the cancellation, not a spent budget", err)
	}
}

// TestPayloadsOfHostileNames checks that what a sender or an operator wrote stays text in
// every format: a service or acknowledger named like Slack markup cannot ping a channel or
// forge a link, a huge one is cut to Slack's limits, and an incident's Alertmanager labels
// stay the same as its severity changes (labels are the alert's identity).
func TestPayloadsOfHostileNames(t *testing.T) {
	t.Parallel()
	ev := event(incident.KindAcknowledged, "high", "open")
	ev.Service = "<!here> & <http://evil|click>"
	ev.Details.By = strings.Repeat("<!channel>", 5000)
	body, err := Payload(Receiver{Name: "s", Kind: KindSlack}, ev, "http://dash.local/")
	if err != nil {
		t.Fatal(err)
	}
	var msg slackPayload
	if err := json.Unmarshal(body, &msg); err != nil {
		t.Fatal(err)
	}
	texts := []string{msg.Text}
	for _, b := range msg.Blocks {
		if b.Text != nil {
			texts = append(texts, b.Text.Text)
			if len(b.Text.Text) > slackSectionMax {
				t.Errorf("a section of %d characters, Slack takes %d", len(b.Text.Text), slackSectionMax)
			}
		}
		for _, f := range b.Fields {
			texts = append(texts, f.Text)
			if len(f.Text) > slackFieldMax {
				t.Errorf("a field of %d characters, Slack takes %d", len(f.Text), slackFieldMax)
			}
		}
	}
	for _, tx := range texts {
		for _, bad := range []string{"<!here>", "<!channel>", "<http://evil|"} {
			if strings.Contains(tx, bad) {
				t.Errorf("Slack text %q carries markup %q from a name", clip(tx, 120), bad)
			}
		}
	}
	if len(msg.Text) > slackTextMax {
		t.Errorf("fallback text of %d characters, want at most %d", len(msg.Text), slackTextMax)
	}
	labels := func(sev string) map[string]string {
		return alertmanagerMessage(Receiver{Name: "am"}, event(incident.KindEscalated, sev, "open"), "").Alerts[0].Labels
	}
	if low, high := labels("low"), labels("high"); !reflect.DeepEqual(low, high) {
		t.Errorf("labels change with severity: %v then %v", low, high)
	}
}

// TestDeliverHonoursRetryAfter checks the waits between attempts: a receiver's Retry-After
// (seconds) is honoured rather than the shorter backoff, within a cap and spread by a fifth
// either way; every request names the engine in its User-Agent.
func TestDeliverHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	calls, agents := 0, []string{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		agents = append(agents, r.Header.Get("User-Agent"))
		switch calls {
		case 1:
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusTooManyRequests)
		case 2:
			w.Header().Set("Retry-After", "3600")
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	n, err := New(Config{Receivers: []Receiver{{Name: "am", Kind: KindWebhook, URL: srv.URL}}, Backoff: Duration(time.Second), Budget: Duration(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	var waits []time.Duration
	n.sleep = func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil }
	attempts, err := n.Deliver(context.Background(), "am", event(incident.KindOpened, "low", "open"))
	if err != nil || attempts != 3 {
		t.Fatalf("Deliver = %d attempts, %v; want success on the third", attempts, err)
	}
	if len(waits) != 2 || waits[0] < 5600*time.Millisecond || waits[0] > 8400*time.Millisecond ||
		waits[1] < 24*time.Second || waits[1] > 36*time.Second {
		t.Errorf("waits %v, want about 7s (Retry-After over a 1s backoff) then about 30s (an hour's Retry-After capped)", waits)
	}
	for _, ua := range agents {
		if !strings.HasPrefix(ua, "incident-engine/") {
			t.Errorf("User-Agent %q, want the engine's", ua)
		}
	}
}

// TestReceiversAuthenticate checks http_config: a bearer token, basic authentication and
// headers of the receiver's own reach it; a configuration that cannot be sent is refused;
// a failure's error names neither the token nor the password.
func TestReceiversAuthenticate(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Clone())
		mu.Unlock()
		if r.Header.Get("X-Fail") != "" {
			http.Error(w, "no", http.StatusForbidden)
		}
	}))
	defer srv.Close()
	const token, password = "s3cret-token-0123456789", "s3cret-password-0123456789"
	n, err := New(Config{Receivers: []Receiver{
		{Name: "bearer", Kind: KindWebhook, URL: srv.URL, HTTP: HTTPConfig{BearerToken: token, Headers: map[string]string{"X-Team": "sre"}}},
		{Name: "basic", Kind: KindWebhook, URL: srv.URL, HTTP: HTTPConfig{BasicAuth: &BasicAuth{Username: "engine", Password: password}, Headers: map[string]string{"X-Fail": "1"}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Deliver(context.Background(), "bearer", event(incident.KindOpened, "low", "open")); err != nil {
		t.Fatal(err)
	}
	_, failErr := n.Deliver(context.Background(), "basic", event(incident.KindOpened, "low", "open"))
	if failErr == nil || strings.Contains(failErr.Error(), password) || strings.Contains(failErr.Error(), token) {
		t.Errorf("a refused delivery: %v, want an error without secrets", failErr)
	}
	if len(got) != 2 {
		t.Fatalf("%d requests, want 2", len(got))
	}
	if got[0].Get("Authorization") != "Bearer "+token || got[0].Get("X-Team") != "sre" {
		t.Errorf("bearer receiver got Authorization %q, X-Team %q", got[0].Get("Authorization"), got[0].Get("X-Team"))
	}
	if u, p, ok := (&http.Request{Header: got[1]}).BasicAuth(); !ok || u != "engine" || p != password {
		t.Errorf("basic receiver got %q/%q (%v)", u, p, ok)
	}
	for _, bad := range []HTTPConfig{
		{BearerToken: "x", BasicAuth: &BasicAuth{Username: "u"}},
		{Headers: map[string]string{"Authorization": "Bearer x"}},
		{Headers: map[string]string{"X-Evil": "a\r\nInjected: 1"}},
	} {
		if _, err := New(Config{Receivers: []Receiver{{Name: "r", Kind: KindWebhook, URL: srv.URL, HTTP: bad}}}); err == nil {
			t.Errorf("http_config %+v accepted", bad)
		}
	}
}

// A zero given in the file is that zero where it means something (backoff "0s": retry at
// once) and an error naming the field where it means nothing; a field left out takes the
// default.
func TestLoadConfigTellsZeroFromUnset(t *testing.T) {
	t.Parallel()
	rec := &recorder{failures: 2, status: http.StatusServiceUnavailable}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	waits := func(path string) []time.Duration {
		c, err := LoadConfig(path)
		if err != nil {
			t.Fatal(err)
		}
		n, err := New(c)
		if err != nil {
			t.Fatal(err)
		}
		var slept []time.Duration
		n.sleep = func(_ context.Context, d time.Duration) error { slept = append(slept, d); return nil }
		rec.mu.Lock()
		rec.failures = 2
		rec.mu.Unlock()
		if attempts, err := n.Deliver(context.Background(), "am", event(incident.KindOpened, "low", "open")); err != nil || attempts != 3 {
			t.Fatalf("Deliver = %d attempts, %v; want success on the third", attempts, err)
		}
		return slept
	}
	receivers := `"receivers":[{"name":"am","kind":"webhook","url":"` + srv.URL + `"}]`
	if got := waits(write("zero.json", `{`+receivers+`,"backoff":"0s"}`)); len(got) != 2 || got[0] != 0 || got[1] != 0 {
		t.Errorf("backoff 0s: waited %v, want two retries at once", got)
	}
	if got := waits(write("unset.json", `{`+receivers+`}`)); len(got) != 2 || got[0] < 400*time.Millisecond {
		t.Errorf("backoff unset: waited %v, want the default 500ms (±20%%) first", got)
	}
	_, err := LoadConfig(write("bad.json", `{`+receivers+`,"max_attempts":0,"budget":"0s"}`))
	for _, want := range []string{"max_attempts is 0", "budget is 0"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("max_attempts 0 and budget 0s: %v, want it to say %q", err, want)
		}
	}
}
