package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/incident-engine/engine/infra/kafka"
	"github.com/incident-engine/engine/router"
	"github.com/incident-engine/engine/wire"
)

const apiToken = "e2e-token-0123456789abcdef"

// call sends a request to the worker's API and decodes its JSON answer.
func (e *engine) call(t testing.TB, method, path, body, token string) (int, map[string]any) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+e.worker.HTTP.Addr()+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("%s %s: %d, body is not JSON: %v", method, path, resp.StatusCode, err)
	}
	return resp.StatusCode, out
}

// failing is a latency failure from sample 40 on, after a warm-up of 32 normal samples.
func failing(i int) float64 {
	if i >= 40 {
		return 1500
	}
	return normalLatency(i)
}

// TestOperatorAPIEndToEnd runs the operator's side against a real worker: an incident opened
// by real samples is acknowledged, resolved and reopened over HTTP, each action is in the
// timeline with its author and reaches the Kafka topic incidents; a silenced service's
// failure opens nothing and is recorded on the service; dead letters are listed and replayed
// over the API as incidentctl does.
func TestOperatorAPIEndToEnd(t *testing.T) {
	e := startEngine(t, func(c *wire.Config) {
		c.Detect.WarmUp = 32
		c.API.Token = apiToken
	})
	e.publishRaw(t, "ops-api", samplesJSON("ops-api", simStart, 50, failing)...)
	e.waitProcessed(t, simStart.Add(49*time.Minute), "ops-api")
	status, body := e.call(t, "GET", "/api/v1/incidents?service=ops-api&status=open", "", "")
	list, _ := body["incidents"].([]any)
	if status != http.StatusOK || len(list) != 1 {
		t.Fatalf("open incidents of ops-api: %d %v, want one", status, body)
	}
	id := list[0].(map[string]any)["id"].(string)

	t.Run("actions", func(t *testing.T) {
		if status, body := e.call(t, "POST", "/api/v1/incidents/"+id+"/acknowledge", `{"by":"alice"}`, ""); status != http.StatusUnauthorized {
			t.Errorf("acknowledge without the token: %d %v, want 401", status, body)
		}
		for _, a := range []struct{ action, body, status string }{
			{"acknowledge", `{"by":"alice"}`, "open"},
			{"resolve", `{"by":"alice","reason":"rolled back the deploy"}`, "resolved"},
			{"reopen", `{"by":"bob"}`, "open"},
		} {
			status, body := e.call(t, "POST", "/api/v1/incidents/"+id+"/"+a.action, a.body, apiToken)
			if inc, _ := body["incident"].(map[string]any); status != http.StatusOK || inc["status"] != a.status {
				t.Fatalf("%s: %d %v, want 200 and %s", a.action, status, body, a.status)
			}
		}
		if status, body := e.call(t, "POST", "/api/v1/incidents/"+id+"/reopen", `{"by":"bob"}`, apiToken); status != http.StatusConflict {
			t.Errorf("reopening an open incident: %d %v, want 409", status, body)
		}

		_, body := e.call(t, "GET", "/api/v1/incidents/"+id, "", "")
		var got []string
		for _, en := range body["timeline"].([]any) {
			m := en.(map[string]any)
			if by, ok := m["details"].(map[string]any)["by"]; ok {
				got = append(got, fmt.Sprintf("%s:%s", m["event"], by))
			}
		}
		if want := []string{"acknowledged:alice", "resolved:alice", "reopened:bob"}; !slices.Equal(got, want) {
			t.Errorf("operator entries in the timeline %v, want %v", got, want)
		}

		waitFor(t, 30*time.Second, "the operator's events on Kafka", func() (bool, string) {
			recs, err := kafka.ReadAll(kafka.Config{Brokers: e.brokers}, string(router.TopicIncidents))
			if err != nil {
				return false, err.Error()
			}
			var seen []string
			for _, r := range recs {
				var ev struct {
					IncidentID string `json:"incident_id"`
					Event      string `json:"event"`
					Details    struct {
						By     string `json:"by"`
						Manual bool   `json:"manual"`
					} `json:"details"`
				}
				if json.Unmarshal(r.Message.Payload, &ev) == nil && ev.IncidentID == id && ev.Details.By != "" {
					seen = append(seen, fmt.Sprintf("%s:%s:%v", ev.Event, ev.Details.By, ev.Details.Manual))
				}
			}
			want := []string{"acknowledged:alice:false", "resolved:alice:true", "reopened:bob:true"}
			return slices.Equal(seen, want), fmt.Sprint(seen)
		})
	})

	t.Run("silence", func(t *testing.T) {
		// The whole failure of ops-db falls inside its maintenance window (sample time).
		body := fmt.Sprintf(`{"service":"ops-db","start":%q,"end":%q,"reason":"database upgrade","author":"alice"}`,
			simStart.Add(35*time.Minute).Format(time.RFC3339), simStart.Add(2*time.Hour).Format(time.RFC3339))
		status, created := e.call(t, "POST", "/api/v1/silences", body, apiToken)
		if status != http.StatusCreated {
			t.Fatalf("create silence: %d %v", status, created)
		}
		silence := created["silence"].(map[string]any)["id"].(string)
		e.publishRaw(t, "ops-db", samplesJSON("ops-db", simStart, 50, failing)...)
		e.waitProcessed(t, simStart.Add(49*time.Minute), "ops-db")
		if got := e.incidents(t, "ops-db"); len(got) != 0 {
			t.Errorf("incidents %+v of a silenced service, want none", got)
		}
		var silenced int
		err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM incident_timeline
			WHERE service = 'ops-db' AND incident_id IS NULL AND event = 'anomaly_silenced' AND details->>'silence_id' = $1`, silence).Scan(&silenced)
		if err != nil || silenced < 4 {
			t.Errorf("%d anomaly_silenced entries (%v), want the failing samples recorded on the service", silenced, err)
		}
	})

	t.Run("dead letters", func(t *testing.T) {
		e.publishRaw(t, "ops-bad", `{"service":"ops-bad","timestamp":"2026-11-26T17:00:00Z","error_rate":7}`)
		var dead []any
		waitFor(t, 30*time.Second, "the dead letter", func() (bool, string) {
			_, body := e.call(t, "GET", "/api/v1/deadletters", "", "")
			dead, _ = body["deadletters"].([]any)
			return len(dead) == 1, fmt.Sprint(body)
		})
		entry := dead[0].(map[string]any)
		if entry["topic"] != "metrics" || !strings.Contains(entry["reason"].(string), "error_rate") {
			t.Errorf("dead letter %v", entry)
		}
		status, body := e.call(t, "POST", "/api/v1/deadletters/replay", fmt.Sprintf(`{"ids":[%q]}`, entry["id"]), apiToken)
		if status != http.StatusOK || body["count"] != 1.0 {
			t.Fatalf("replay: %d %v", status, body)
		}
		// Still invalid, it comes back to the dead-letter topic, marked with its origin.
		waitFor(t, 30*time.Second, "the replayed message to come back", func() (bool, string) {
			_, body := e.call(t, "GET", "/api/v1/deadletters", "", "")
			dead, _ := body["deadletters"].([]any)
			return len(dead) == 2 && dead[1].(map[string]any)["replayed_from"] == entry["id"], fmt.Sprint(body)
		})
	})
}
