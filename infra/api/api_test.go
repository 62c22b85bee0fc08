package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/incident-engine/engine/domain/incident"
	"github.com/incident-engine/engine/domain/sample"
	"github.com/incident-engine/engine/infra/api"
	"github.com/incident-engine/engine/infra/dashboard"
	"github.com/incident-engine/engine/infra/deadletter"
	"github.com/incident-engine/engine/infra/postgres"
	"github.com/incident-engine/engine/infra/postgres/pgtest"
	"github.com/incident-engine/engine/router"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

const (
	writeToken = "write-token-0123456789"
	readToken  = "read-token-0123456789"
)

// t0 is the samples' minute 0; wall is the operator's clock during the tests, later.
var (
	t0   = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	wall = time.Date(2026, 11, 26, 18, 0, 0, 0, time.UTC)
)

func minute(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }

// testEnv is the API over a real, fresh PostgreSQL database, with the real operate handler
// and views, the dashboard's calls mounted as in the worker, a fake dead-letter queue, and a
// client that checks every exchange against the served OpenAPI document.
type testEnv struct {
	t      *testing.T
	url    string
	client *http.Client
	check  *checkingTransport
	store  *postgres.Store
	pool   *pgxpool.Pool
	dlq    *fakeDeadLetters
}

func newEnv(t *testing.T, cfg api.Config) *testEnv {
	t.Helper()
	ctx := context.Background()
	pool, err := postgres.Connect(ctx, pgtest.Database(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := postgres.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	sub, err := postgres.NewOutboxSubscriber(pool, postgres.OutboxConfig{}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	if err := postgres.InitializeOutbox(sub, string(router.TopicOutbox)); err != nil {
		t.Fatal(err)
	}
	_ = sub.Close()
	logger := slog.New(slog.DiscardHandler)
	store := postgres.NewStore(pool, watermill.NopLogger{})
	c, err := incident.NewCorrelator(incident.CorrelationConfig{})
	if err != nil {
		t.Fatal(err)
	}
	dlq := &fakeDeadLetters{entries: []deadletter.Entry{
		{ID: "0-0", Topic: "metrics", Handler: "decode", Reason: "not a JSON sample", Payload: "junk", Time: t0},
		{ID: "0-1", Topic: "metrics", Handler: "decode", Reason: "error_rate 1.5 is outside [0,1]", Service: "api", Payload: `{"error_rate":1.5}`, Time: t0},
	}}
	a, err := api.New(cfg, api.NewActions[*postgres.Tx](store, c, router.OperatorTopic, logger), postgres.NewViews(pool), dlq,
		func() time.Time { return wall }, logger)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler(func(mux *http.ServeMux) { dashboard.Register(mux, fakeDashboard{}, logger) }))
	t.Cleanup(srv.Close)

	resp, err := http.Get(srv.URL + "/api/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	check := &checkingTransport{t: t, spec: parseSpec(t, doc), base: http.DefaultTransport, seen: map[string]bool{}}
	return &testEnv{t: t, url: srv.URL, client: &http.Client{Transport: check}, check: check, store: store, pool: pool, dlq: dlq}
}

// do sends a request, with the bearer token unless it is empty, and returns the status and
// the decoded JSON body.
func (e *testEnv) do(method, path, body, token string) (int, map[string]any) {
	e.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.url+path, r)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		e.t.Fatalf("%s %s: body is not a JSON object: %s", method, path, raw)
	}
	for _, secret := range []string{writeToken, readToken} {
		if strings.Contains(string(raw), secret) {
			e.t.Errorf("%s %s: the response contains a token", method, path)
		}
	}
	return resp.StatusCode, out
}

// seed stores an incident of service opened by one anomaly at minute at, with the service's
// watch pointing at it, resolved a minute later when resolved is set.
func (e *testEnv) seed(id, service string, at int, resolved bool) {
	e.t.Helper()
	inc, err := incident.Open(id, service, []incident.Signal{{At: minute(at), Score: 0.9, Threshold: 0.6}})
	if err != nil {
		e.t.Fatal(err)
	}
	if resolved {
		if err := inc.Resolve(minute(at+1), "healthy"); err != nil {
			e.t.Fatal(err)
		}
	}
	err = e.store.InTx(context.Background(), func(tx *postgres.Tx) error {
		w, err := tx.LoadWatch(service)
		if err != nil {
			return err
		}
		if _, err := tx.SaveIncident(inc); err != nil {
			return err
		}
		st := w.State()
		st.IncidentID, st.LastSampleAt = id, minute(at)
		return tx.SaveWatch(incident.UnmarshalWatchFromDatabase(st))
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

// outboxEvents returns the incident events written to the outbox topic, oldest first.
func (e *testEnv) outboxEvents() []incident.Event {
	e.t.Helper()
	rows, err := e.pool.Query(context.Background(), fmt.Sprintf(`SELECT payload FROM "watermill_%s" ORDER BY "offset"`, router.TopicOutbox))
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	var out []incident.Event
	for rows.Next() {
		var payload []byte
		if err := rows.Scan(&payload); err != nil {
			e.t.Fatal(err)
		}
		var ev incident.Event
		if err := json.Unmarshal(payload, &ev); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

type fakeDeadLetters struct {
	mu       sync.Mutex
	entries  []deadletter.Entry
	replayed []string
	fail     error
}

func (f *fakeDeadLetters) Latest(_ context.Context, n int) ([]deadletter.Entry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.entries[max(0, len(f.entries)-n):]), f.fail
}

func (f *fakeDeadLetters) Replay(_ context.Context, s deadletter.Selection, dryRun bool) ([]deadletter.Entry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	chosen, err := deadletter.Select(f.entries, s)
	if err != nil || dryRun {
		return chosen, err
	}
	for _, e := range chosen {
		f.replayed = append(f.replayed, e.ID)
	}
	return chosen, nil
}

type fakeDashboard struct{}

// Services pages over five services named svc-1 to svc-5, as the store does.
func (fakeDashboard) Services(_ context.Context, after string, limit int) ([]postgres.ServiceState, error) {
	at := t0
	var out []postgres.ServiceState
	for i := 1; i <= 5 && len(out) < limit; i++ {
		if name := fmt.Sprintf("svc-%d", i); name > after {
			out = append(out, postgres.ServiceState{Service: name, State: "healthy", LastSampleAt: &at, ModelVersion: 1, RecentScores: []float64{0.4, 0.5}})
		}
	}
	return out, nil
}

func (fakeDashboard) Samples(_ context.Context, service string, from, _ time.Time, _ int) ([]sample.Scored, error) {
	s, err := sample.New(service, from, []sample.Metric{{Name: "latency_p95", Value: 120}})
	return []sample.Scored{{Sample: s, Judged: true, Score: 0.4, Threshold: 0.7}}, err
}

const (
	incA = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
	incB = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"
	incC = "cccccccc-cccc-4ccc-8ccc-cccccccccccc"
)

func TestIncidentReads(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{Token: writeToken})
	e.seed(incA, "api", 0, true)
	e.seed(incB, "db", 10, false)
	e.seed(incC, "api", 20, false)

	list := func(query string) (int, []string, map[string]any) {
		status, body := e.do("GET", "/api/v1/incidents"+query, "", "")
		var ids []string
		items, _ := body["incidents"].([]any)
		for _, it := range items {
			ids = append(ids, it.(map[string]any)["id"].(string))
		}
		return status, ids, body
	}
	cases := []struct {
		name, query string
		want        []string
		why         string
	}{
		{"all", "", []string{incC, incB, incA}, "newest last_seen first"},
		{"service", "?service=api", []string{incC, incA}, "one service"},
		{"status", "?status=open", []string{incC, incB}, "open only"},
		{"severity", "?severity=low", []string{incC, incB, incA}, "everything opened low"},
		{"severity none", "?severity=critical", nil, "no critical incident: an empty list, not an error"},
		{"time range", "?from=" + minute(5).Format(time.RFC3339) + "&to=" + minute(20).Format(time.RFC3339), []string{incB}, "last_seen in [from, to)"},
		{"combined", "?service=api&status=resolved", []string{incA}, "filters combine"},
	}
	for _, tc := range cases {
		status, ids, body := list(tc.query)
		if status != http.StatusOK || !slices.Equal(ids, tc.want) {
			t.Errorf("%s: %d %v, want 200 %v (%s)", tc.name, status, ids, tc.want, tc.why)
		}
		if _, more := body["next_cursor"]; more {
			t.Errorf("%s: next_cursor on the only page", tc.name)
		}
	}

	status, body := e.do("GET", "/api/v1/incidents/"+incA, "", "")
	inc, _ := body["incident"].(map[string]any)
	timeline, _ := body["timeline"].([]any)
	if status != http.StatusOK || inc["id"] != incA || inc["status"] != "resolved" || len(timeline) != 2 {
		t.Fatalf("GET incident: %d %v", status, body)
	}
	if timeline[0].(map[string]any)["event"] != "opened" || timeline[1].(map[string]any)["event"] != "resolved" {
		t.Errorf("timeline %v, want opened then resolved", timeline)
	}

	bad := []struct {
		name, path string
		status     int
		want       string
	}{
		{"unknown id", "/api/v1/incidents/" + "dddddddd-dddd-4ddd-8ddd-dddddddddddd", 404, "not found"},
		{"malformed id", "/api/v1/incidents/not-an-id", 404, "not found"},
		{"bad status", "/api/v1/incidents?status=closed", 400, "status must be open or resolved"},
		{"bad severity", "/api/v1/incidents?severity=urgent", 400, "severity must be"},
		{"bad time", "/api/v1/incidents?from=yesterday", 400, "RFC 3339"},
		{"empty range", "/api/v1/incidents?from=2026-11-26T13:00:00Z&to=2026-11-26T12:00:00Z", 400, "from must come before to"},
		{"limit zero", "/api/v1/incidents?limit=0", 400, "limit must be"},
		{"limit too big", "/api/v1/incidents?limit=100000", 400, "limit must be"},
		{"limit not a number", "/api/v1/incidents?limit=ten", 400, "limit must be"},
		{"bad cursor", "/api/v1/incidents?cursor=abc", 400, "cursor"},
		{"unknown parameter", "/api/v1/incidents?sevrity=high", 400, "unknown query parameter sevrity"},
		{"every problem", "/api/v1/incidents?status=x&limit=0", 400, "limit must be"},
	}
	for _, tc := range bad {
		status, body := e.do("GET", tc.path, "", "")
		if msg, _ := body["error"].(string); status != tc.status || !strings.Contains(msg, tc.want) {
			t.Errorf("%s: %d %q, want %d saying %q", tc.name, status, msg, tc.status, tc.want)
		}
	}
}

// TestIncidentPagination walks the list in pages of every size from 1 to past the end and
// requires every incident exactly once, newest first, with and without a filter.
func TestIncidentPagination(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{})
	var all []string
	service := map[string]string{}
	for i := range 13 {
		id := fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
		service[id] = fmt.Sprintf("svc-%d", i%4)
		e.seed(id, service[id], i/2, true) // pairs share last_seen: the id breaks the tie
		all = append(all, id)
	}
	slices.Reverse(all)
	for _, filter := range []string{"", "svc-1"} {
		var want []string
		for _, id := range all {
			if filter == "" || service[id] == filter {
				want = append(want, id)
			}
		}
		if filter != "" {
			filter = "&service=" + filter
		}
		for size := 1; size <= 14; size++ {
			var got []string
			cursor := ""
			for pages := 0; ; pages++ {
				if pages > len(all) {
					t.Fatalf("size %d: more pages than incidents", size)
				}
				q := fmt.Sprintf("/api/v1/incidents?limit=%d%s", size, filter)
				if cursor != "" {
					q += "&cursor=" + cursor
				}
				status, body := e.do("GET", q, "", "")
				if status != http.StatusOK {
					t.Fatalf("%s: %d %v", q, status, body)
				}
				items := body["incidents"].([]any)
				if len(items) > size {
					t.Fatalf("%s: %d items on a page of %d", q, len(items), size)
				}
				for _, it := range items {
					got = append(got, it.(map[string]any)["id"].(string))
				}
				next, _ := body["next_cursor"].(string)
				if next == "" {
					break
				}
				cursor = next
			}
			if !slices.Equal(got, want) {
				t.Errorf("filter %q, pages of %d:\n got %v\nwant %v", filter, size, got, want)
			}
		}
	}
}

func TestIncidentActions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{Token: writeToken})
	e.seed(incA, "api", 0, false)
	e.seed(incB, "db", 0, true)

	steps := []struct {
		name, path, body string
		status           int
		want             string // in the error, or the event published
		why              string
	}{
		{"acknowledge", "/api/v1/incidents/" + incA + "/acknowledge", `{"by":"alice"}`, 200, "acknowledged", "an open incident is taken on"},
		{"acknowledge twice", "/api/v1/incidents/" + incA + "/acknowledge", `{"by":"bob"}`, 409, "already acknowledged", "the first acknowledgement stands"},
		{"acknowledge resolved", "/api/v1/incidents/" + incB + "/acknowledge", `{"by":"alice"}`, 409, "resolved", "nothing left to take on"},
		{"acknowledge unknown", "/api/v1/incidents/dddddddd-dddd-4ddd-8ddd-dddddddddddd/acknowledge", `{"by":"alice"}`, 404, "not found", "no such incident"},
		{"acknowledge malformed id", "/api/v1/incidents/nope/acknowledge", `{"by":"alice"}`, 404, "not found", "an id that cannot exist is unknown"},
		{"acknowledge with a reason", "/api/v1/incidents/" + incA + "/acknowledge", `{"by":"alice","reason":"x"}`, 400, `only "by"`, "a reason would be lost silently"},
		{"bad JSON", "/api/v1/incidents/" + incA + "/resolve", `{"by":`, 400, "invalid JSON", "a broken body is the client's mistake"},
		{"no body", "/api/v1/incidents/" + incA + "/resolve", ``, 400, "needs a JSON body", "the action needs its author"},
		{"unknown field", "/api/v1/incidents/" + incA + "/resolve", `{"by":"alice","reason":"x","force":true}`, 400, "unknown field", "a misspelt field is not ignored"},
		{"two objects", "/api/v1/incidents/" + incA + "/resolve", `{"by":"alice","reason":"x"}{}`, 400, "invalid JSON", "one action per request"},
		{"wrong type", "/api/v1/incidents/" + incA + "/resolve", `{"by":42,"reason":"x"}`, 400, "invalid JSON", "by is a name"},
		{"resolve without author", "/api/v1/incidents/" + incA + "/resolve", `{"reason":"fixed"}`, 400, "operator's name", "the timeline must say who"},
		{"resolve without reason", "/api/v1/incidents/" + incA + "/resolve", `{"by":"alice"}`, 400, "needs a reason", "a manual resolution says why"},
		{"resolve", "/api/v1/incidents/" + incA + "/resolve", `{"by":"alice","reason":"rolled back"}`, 200, "resolved", "closed by hand"},
		{"resolve twice", "/api/v1/incidents/" + incA + "/resolve", `{"by":"alice","reason":"again"}`, 409, "resolved", "already closed"},
		{"reopen", "/api/v1/incidents/" + incA + "/reopen", `{"by":"bob"}`, 200, "reopened", "reopened by hand, however long after"},
		{"reopen open", "/api/v1/incidents/" + incA + "/reopen", `{"by":"bob"}`, 409, "not resolved", "only a resolved incident reopens"},
		{"acknowledge again after reopening", "/api/v1/incidents/" + incA + "/acknowledge", `{"by":"carol"}`, 200, "acknowledged", "a reopening cleared the acknowledgement"},
	}
	for _, s := range steps {
		before := len(e.outboxEvents())
		status, body := e.do("POST", s.path, s.body, writeToken)
		if status != s.status {
			t.Fatalf("%s: %d %v, want %d (%s)", s.name, status, body, s.status, s.why)
		}
		events := e.outboxEvents()[before:]
		if status != http.StatusOK {
			if msg, _ := body["error"].(string); !strings.Contains(msg, s.want) {
				t.Errorf("%s: error %q, want it to say %q", s.name, msg, s.want)
			}
			if len(events) != 0 {
				t.Errorf("%s: a refused action published %d events", s.name, len(events))
			}
			continue
		}
		var req map[string]string
		_ = json.Unmarshal([]byte(s.body), &req)
		if len(events) != 1 || string(events[0].Event) != s.want || events[0].Details.By != req["by"] || events[0].IncidentID != incA {
			t.Errorf("%s: published %+v, want one %s event by %s", s.name, events, s.want, req["by"])
		}
		if inc := body["incident"].(map[string]any); inc["id"] != incA {
			t.Errorf("%s: response %v", s.name, body)
		}
	}

	_, body := e.do("GET", "/api/v1/incidents/"+incA, "", "")
	var got []string
	for _, en := range body["timeline"].([]any) {
		m := en.(map[string]any)
		d := m["details"].(map[string]any)
		got = append(got, fmt.Sprintf("%s:%v:%v", m["event"], d["by"], d["manual"]))
	}
	want := []string{"opened:<nil>:<nil>", "acknowledged:alice:<nil>", "resolved:alice:true", "reopened:bob:true", "acknowledged:carol:<nil>"}
	if !slices.Equal(got, want) {
		t.Errorf("timeline %v, want %v", got, want)
	}
	if inc := body["incident"].(map[string]any); inc["acknowledged_by"] != "carol" || inc["acknowledged_at"] != wall.Format(time.RFC3339) || inc["status"] != "open" {
		t.Errorf("incident after the actions: %v", inc)
	}
}

func TestSilences(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{Token: writeToken})
	create := func(body string) (int, map[string]any) { return e.do("POST", "/api/v1/silences", body, writeToken) }

	status, body := create(fmt.Sprintf(`{"service":"api","end":%q,"reason":"database upgrade","author":"alice"}`, wall.Add(time.Hour).Format(time.RFC3339)))
	if status != http.StatusCreated {
		t.Fatalf("create: %d %v", status, body)
	}
	active := body["silence"].(map[string]any)
	if active["start"] != wall.Format(time.RFC3339) || active["state"] != "active" || active["author"] != "alice" {
		t.Errorf("created %v, want it active from now (the default start)", active)
	}
	status, body = create(fmt.Sprintf(`{"service":"db","start":%q,"end":%q,"reason":"failover drill","author":"bob"}`,
		wall.Add(time.Hour).Format(time.RFC3339), wall.Add(2*time.Hour).Format(time.RFC3339)))
	if status != http.StatusCreated || body["silence"].(map[string]any)["state"] != "pending" {
		t.Fatalf("create a future silence: %d %v", status, body)
	}
	pending := body["silence"].(map[string]any)

	for _, tc := range []struct {
		name, body, want string
	}{
		{"end before start", `{"service":"api","start":"2026-11-26T19:00:00Z","end":"2026-11-26T18:30:00Z","reason":"x","author":"a"}`, "end must come after start"},
		{"no end", `{"service":"api","reason":"x","author":"a"}`, "end is required"},
		{"no author", `{"service":"api","end":"2026-11-26T19:00:00Z","reason":"x"}`, "author"},
		{"no service", `{"end":"2026-11-26T19:00:00Z","reason":"x","author":"a"}`, "service"},
		{"bad time", `{"service":"api","end":"tomorrow","reason":"x","author":"a"}`, "invalid JSON"},
		{"unknown field", `{"service":"api","end":"2026-11-26T19:00:00Z","reason":"x","author":"a","duration":"1h"}`, "unknown field"},
	} {
		status, body := create(tc.body)
		if msg, _ := body["error"].(string); status != http.StatusBadRequest || !strings.Contains(msg, tc.want) {
			t.Errorf("%s: %d %q, want 400 saying %q", tc.name, status, msg, tc.want)
		}
	}

	ids := func(query string) []string {
		status, body := e.do("GET", "/api/v1/silences"+query, "", "")
		if status != http.StatusOK {
			t.Fatalf("list %s: %d %v", query, status, body)
		}
		var out []string
		for _, s := range body["silences"].([]any) {
			out = append(out, s.(map[string]any)["id"].(string))
		}
		return out
	}
	if got := ids(""); !slices.Equal(got, []string{pending["id"].(string), active["id"].(string)}) {
		t.Errorf("all silences %v, want the later start first", got)
	}
	if got := ids("?state=active"); !slices.Equal(got, []string{active["id"].(string)}) {
		t.Errorf("active silences %v", got)
	}
	if got := ids("?service=db&state=pending"); !slices.Equal(got, []string{pending["id"].(string)}) {
		t.Errorf("db's pending silences %v", got)
	}

	status, body = e.do("DELETE", "/api/v1/silences/"+active["id"].(string), "", writeToken)
	if ended := body["silence"].(map[string]any); status != http.StatusOK || ended["state"] != "ended" || ended["end"] != wall.Format(time.RFC3339) {
		t.Errorf("end: %d %v, want it ended now", status, body)
	}
	if got := ids("?state=ended"); !slices.Equal(got, []string{active["id"].(string)}) {
		t.Errorf("ended silences %v", got)
	}
	for _, tc := range []struct {
		name, path string
		status     int
	}{
		{"end twice", "/api/v1/silences/" + active["id"].(string), 409},
		{"end unknown", "/api/v1/silences/dddddddd-dddd-4ddd-8ddd-dddddddddddd", 404},
		{"end malformed", "/api/v1/silences/nope", 404},
	} {
		if status, body := e.do("DELETE", tc.path, "", writeToken); status != tc.status {
			t.Errorf("%s: %d %v, want %d", tc.name, status, body, tc.status)
		}
	}
	for _, q := range []string{"?state=over", "?limit=0", "?colour=red"} {
		if status, _ := e.do("GET", "/api/v1/silences"+q, "", ""); status != http.StatusBadRequest {
			t.Errorf("list %s: %d, want 400", q, status)
		}
	}
}

func TestDeadLetters(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{Token: writeToken})
	status, body := e.do("GET", "/api/v1/deadletters", "", "")
	if list := body["deadletters"].([]any); status != http.StatusOK || len(list) != 2 || list[1].(map[string]any)["reason"] != "error_rate 1.5 is outside [0,1]" {
		t.Fatalf("list: %d %v", status, body)
	}
	cases := []struct {
		name, body   string
		status       int
		wantReplayed []string // cumulative
		why          string
	}{
		{"no selection", `{}`, 400, nil, "replaying everything must be asked for"},
		{"unknown id", `{"ids":["9-9"]}`, 404, nil, "the id names nothing"},
		{"bad JSON", `{"ids":"0-1"}`, 400, nil, "ids is a list"},
		{"dry run", `{"reason":"error_rate","dry_run":true}`, 200, nil, "shows, replays nothing"},
		{"by reason", `{"reason":"error_rate"}`, 200, []string{"0-1"}, "the reason selects"},
		{"by id", `{"ids":["0-0"]}`, 200, []string{"0-1", "0-0"}, "the id selects"},
		{"by topic and reason", `{"topic":"metrics","reason":"JSON"}`, 200, []string{"0-1", "0-0", "0-0"}, "conditions combine"},
		{"all", `{"all":true}`, 200, []string{"0-1", "0-0", "0-0", "0-0", "0-1"}, "everything"},
	}
	for _, tc := range cases {
		status, body := e.do("POST", "/api/v1/deadletters/replay", tc.body, writeToken)
		if status != tc.status {
			t.Errorf("%s: %d %v, want %d (%s)", tc.name, status, body, tc.status, tc.why)
		}
		e.dlq.mu.Lock()
		got := slices.Clone(e.dlq.replayed)
		e.dlq.mu.Unlock()
		if !slices.Equal(got, tc.wantReplayed) {
			t.Errorf("%s: replayed so far %v, want %v (%s)", tc.name, got, tc.wantReplayed, tc.why)
		}
	}
	e.dlq.mu.Lock()
	e.dlq.fail = errors.New("kafka: client has run out of available brokers")
	e.dlq.mu.Unlock()
	for _, tc := range []struct{ method, path, body string }{{"GET", "/api/v1/deadletters", ""}, {"POST", "/api/v1/deadletters/replay", `{"all":true}`}} {
		status, body := e.do(tc.method, tc.path, tc.body, writeToken)
		if msg, _ := body["error"].(string); status != http.StatusServiceUnavailable || strings.Contains(msg, "brokers") {
			t.Errorf("%s %s with Kafka down: %d %q, want 503 without internals", tc.method, tc.path, status, msg)
		}
	}
}

func TestAuth(t *testing.T) {
	t.Parallel()
	read := func(e *testEnv, token string) int {
		status, _ := e.do("GET", "/api/v1/incidents", "", token)
		return status
	}
	write := func(e *testEnv, token string) (int, string) {
		status, body := e.do("POST", "/api/v1/silences", `{"service":"api","end":"2026-11-27T00:00:00Z","reason":"x","author":"a"}`, token)
		msg, _ := body["error"].(string)
		return status, msg
	}
	type check struct {
		token     string
		wantRead  int
		wantWrite int
		why       string
	}
	cases := []struct {
		name   string
		cfg    api.Config
		checks []check
	}{
		{"no tokens", api.Config{}, []check{
			{"", 200, 403, "reads open by default; writes refused until a token is configured"},
			{writeToken, 200, 403, "no token configured: none can match"},
		}},
		{"write token", api.Config{Token: writeToken}, []check{
			{"", 200, 401, "reads open; a write without credentials is unauthorized"},
			{"wrong-token-0123456789", 200, 401, "a wrong token is refused"},
			{writeToken + "x", 200, 401, "a longer token is wrong too"},
			{writeToken, 200, 201, "the token writes"},
		}},
		{"reads protected", api.Config{Token: writeToken, ReadToken: readToken}, []check{
			{"", 401, 401, "without credentials, nothing"},
			{"wrong-token-0123456789", 401, 401, "a wrong token is refused for both"},
			{readToken, 200, 403, "the read token reads, and is forbidden to write"},
			{writeToken, 200, 201, "the write token does both"},
		}},
		{"read token only", api.Config{ReadToken: readToken}, []check{
			{readToken, 200, 403, "reads with the token; writes stay disabled"},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, tc.cfg)
			for _, c := range tc.checks {
				if got := read(e, c.token); got != c.wantRead {
					t.Errorf("read with %q: %d, want %d (%s)", c.token, got, c.wantRead, c.why)
				}
				if got, _ := e.do("GET", "/api/v1/services", "", c.token); got != c.wantRead {
					t.Errorf("the dashboard's read with %q: %d, want %d like every read", c.token, got, c.wantRead)
				}
				got, msg := write(e, c.token)
				if got != c.wantWrite {
					t.Errorf("write with %q: %d %q, want %d (%s)", c.token, got, msg, c.wantWrite, c.why)
				}
				if got == http.StatusForbidden && tc.cfg.Token == "" && !strings.Contains(msg, "API_TOKEN") {
					t.Errorf("403 %q does not say how to configure a token", msg)
				}
			}
			if status, _ := e.do("GET", "/api/v1/openapi.json", "", ""); status != http.StatusOK {
				t.Errorf("the OpenAPI document: %d, want always open", status)
			}
			resp, err := http.Get(e.url + "/")
			if err != nil {
				t.Fatal(err)
			}
			page, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), "API token") {
				t.Errorf("the dashboard page: %d, want it always served (it asks for the token)", resp.StatusCode)
			}
		})
	}

	t.Run("header forms", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, api.Config{Token: writeToken})
		for _, h := range []struct {
			value string
			want  int
		}{
			{"Bearer " + writeToken, 201},
			{"bearer " + writeToken, 201},
			{"Basic " + writeToken, 401},
			{writeToken, 401},
			{"Bearer ", 401},
		} {
			req, _ := http.NewRequest("POST", e.url+"/api/v1/silences", strings.NewReader(`{"service":"api","end":"2026-11-27T00:00:00Z","reason":"x","author":"a"}`))
			req.Header.Set("Authorization", h.value)
			resp, err := e.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != h.want {
				t.Errorf("Authorization %q: %d, want %d", strings.ReplaceAll(h.value, writeToken, "<token>"), resp.StatusCode, h.want)
			}
			if resp.StatusCode == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("a 401 without WWW-Authenticate")
			}
		}
	})
}

func TestConfig(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		cfg  api.Config
		ok   bool
		why  string
	}{
		{"none", api.Config{}, true, "reads open, writes refused"},
		{"both", api.Config{Token: writeToken, ReadToken: readToken}, true, "two long tokens"},
		{"same token for both", api.Config{Token: writeToken, ReadToken: writeToken}, true, "reads protected by the one token"},
		{"short", api.Config{Token: "hunter2"}, false, "guessable"},
		{"short read token", api.Config{ReadToken: "hunter2"}, false, "guessable too"},
		{"space", api.Config{Token: "correct horse battery staple"}, false, "a header cannot carry it intact"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate = %v, want ok %v (%s)", err, tc.ok, tc.why)
			}
			for _, secret := range []string{tc.cfg.Token, tc.cfg.ReadToken} {
				if secret == "" {
					continue
				}
				for _, s := range []string{fmt.Sprint(err), tc.cfg.String(), fmt.Sprintf("%v %+v %#v", tc.cfg, tc.cfg, tc.cfg)} {
					if strings.Contains(s, secret) {
						t.Errorf("%q shows the token", s)
					}
				}
			}
		})
	}
}

// TestClientMistakesAreNever5xx sends what a careless or hostile client might: ids the UUID
// parser takes but the engine never writes, NUL and invalid UTF-8 in bodies and filters, an
// oversized body, a silence for a century. Each gets a 4xx that says why, never a 500.
func TestClientMistakesAreNever5xx(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{Token: writeToken})
	e.seed("0b5c2f0e-7d51-4b55-9c84-5f3c2b0f8a11", "api", 0, false)
	big := `{"by":"` + strings.Repeat("a", 10<<20) + `"}`
	probes := []struct {
		method, path, body string
		want               int
	}{
		{"GET", "/api/v1/incidents/urn:uuid:0b5c2f0e-7d51-4b55-9c84-5f3c2b0f8a11", "", 404},
		{"GET", "/api/v1/incidents/%7B0b5c2f0e-7d51-4b55-9c84-5f3c2b0f8a11%7D", "", 404},
		{"POST", "/api/v1/incidents/urn:uuid:0b5c2f0e-7d51-4b55-9c84-5f3c2b0f8a11/acknowledge", `{"by":"alice"}`, 404},
		{"POST", "/api/v1/incidents/0b5c2f0e-7d51-4b55-9c84-5f3c2b0f8a11/acknowledge", `{"by":"al\u0000ice"}`, 400},
		{"POST", "/api/v1/incidents/0b5c2f0e-7d51-4b55-9c84-5f3c2b0f8a11/acknowledge", "{\"by\":\"al\xffice\"}", 400},
		{"POST", "/api/v1/incidents/0b5c2f0e-7d51-4b55-9c84-5f3c2b0f8a11/acknowledge", big, 413},
		{"GET", "/api/v1/incidents?service=a%00pi", "", 400},
		{"GET", "/api/v1/incidents?service=a%FFpi", "", 400},
		{"GET", "/api/v1/silences?service=a%00pi", "", 400},
		{"POST", "/api/v1/silences", `{"service":"api","end":"2126-01-01T00:00:00Z","reason":"upgrade","author":"alice"}`, 400},
		{"POST", "/api/v1/silences", `{"service":"api","end":"9999-01-01T00:00:00Z","reason":"upgrade","author":"alice"}`, 400},
		{"DELETE", "/api/v1/silences/urn:uuid:0b5c2f0e-7d51-4b55-9c84-5f3c2b0f8a11", "", 404},
	}
	for _, p := range probes {
		status, body := e.do(p.method, p.path, p.body, writeToken)
		if status != p.want || body["error"] == nil {
			t.Errorf("%s %s: %d %v, want %d with an error message", p.method, p.path, status, body, p.want)
		}
	}
}

// TestDatabaseAwayIs503 checks that the API answers 503, as documented, when PostgreSQL does
// not answer, not 500.
func TestDatabaseAwayIs503(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	pool, err := pgxpool.New(context.Background(), "postgres://postgres@"+addr+"/postgres?sslmode=disable&connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	logger := slog.New(slog.DiscardHandler)
	c, _ := incident.NewCorrelator(incident.CorrelationConfig{})
	a, err := api.New(api.Config{Token: writeToken}, api.NewActions[*postgres.Tx](postgres.NewStore(pool, watermill.NopLogger{}), c, router.OperatorTopic, logger),
		postgres.NewViews(pool), &fakeDeadLetters{}, time.Now, logger)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	for _, req := range []struct{ method, path, body string }{
		{"GET", "/api/v1/incidents", ""},
		{"GET", "/api/v1/incidents/0b5c2f0e-7d51-4b55-9c84-5f3c2b0f8a11", ""},
		{"POST", "/api/v1/incidents/0b5c2f0e-7d51-4b55-9c84-5f3c2b0f8a11/acknowledge", `{"by":"alice"}`},
		{"GET", "/api/v1/silences", ""},
	} {
		r, _ := http.NewRequest(req.method, srv.URL+req.path, strings.NewReader(req.body))
		r.Header.Set("Authorization", "Bearer "+writeToken)
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("%s %s with the database away: %d, want 503", req.method, req.path, resp.StatusCode)
		}
	}
}

// TestDeadLetterListingIsBounded checks that GET /deadletters lists the latest ones, as many
// as asked up to 1,000, and refuses a bad limit.
func TestDeadLetterListingIsBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{})
	status, body := e.do("GET", "/api/v1/deadletters?limit=1", "", "")
	letters, _ := body["deadletters"].([]any)
	if status != 200 || len(letters) != 1 || letters[0].(map[string]any)["id"] != "0-1" {
		t.Errorf("limit=1: %d %v, want the latest one, 0-1", status, body)
	}
	for _, bad := range []string{"0", "1001", "many"} {
		if status, _ := e.do("GET", "/api/v1/deadletters?limit="+bad, "", ""); status != 400 {
			t.Errorf("limit=%s: %d, want 400", bad, status)
		}
	}
}

// TestServicesComeInPages walks the services a page at a time: every service once, in name
// order, a next_cursor while more follow and none on the last page; a bad limit or an
// unknown parameter is a 400 (the checking client holds every answer to the document).
func TestServicesComeInPages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{})
	var got []string
	cursor, pages := "", 0
	for {
		path := "/api/v1/services?limit=2"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		status, body := e.do("GET", path, "", "")
		if status != http.StatusOK {
			t.Fatalf("GET %s: %d %v", path, status, body)
		}
		pages++
		for _, s := range body["services"].([]any) {
			got = append(got, s.(map[string]any)["service"].(string))
		}
		next, ok := body["next_cursor"].(string)
		if !ok {
			break
		}
		cursor = next
	}
	if want := []string{"svc-1", "svc-2", "svc-3", "svc-4", "svc-5"}; !slices.Equal(got, want) || pages != 3 {
		t.Errorf("%d pages of %v, want 3 pages of %v", pages, got, want)
	}
	if status, body := e.do("GET", "/api/v1/services", "", ""); status != http.StatusOK || len(body["services"].([]any)) != 5 || body["next_cursor"] != nil {
		t.Errorf("default page: %d %v, want all 5 and no next_cursor", status, body)
	}
	for _, path := range []string{"/api/v1/services?limit=0", "/api/v1/services?limit=1001", "/api/v1/services?limit=x", "/api/v1/services?page=2"} {
		if status, _ := e.do("GET", path, "", ""); status != http.StatusBadRequest {
			t.Errorf("GET %s: %d, want 400", path, status)
		}
	}
}
