package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/incident-engine/engine/infra/api"
)

// A small OpenAPI 3 checker, enough for the document this package serves: it finds the
// operation a request went to, and checks the response's status is documented for it and its
// body has the documented shape (required fields, types, formats, enums), and, for a request
// that succeeded, that its body has the documented shape too.

type spec struct {
	Paths      map[string]map[string]*operation `json:"paths"`
	Components struct {
		Schemas   map[string]*schema   `json:"schemas"`
		Responses map[string]*response `json:"responses"`
	} `json:"components"`
}

type operation struct {
	OperationID string `json:"operationId"`
	RequestBody *struct {
		Content map[string]struct {
			Schema *schema `json:"schema"`
		} `json:"content"`
	} `json:"requestBody"`
	Responses map[string]*response `json:"responses"`
}

type response struct {
	Headers map[string]any `json:"headers"`
	Content map[string]struct {
		Schema *schema `json:"schema"`
	} `json:"content"`
}

type schema struct {
	Ref                  string             `json:"$ref"`
	Type                 string             `json:"type"`
	Format               string             `json:"format"`
	Required             []string           `json:"required"`
	Properties           map[string]*schema `json:"properties"`
	Items                *schema            `json:"items"`
	Enum                 []any              `json:"enum"`
	AdditionalProperties json.RawMessage    `json:"additionalProperties"`
}

func parseSpec(t testing.TB, b []byte) *spec {
	t.Helper()
	var s spec
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("OpenAPI document: %v", err)
	}
	if len(s.Paths) == 0 {
		t.Fatal("OpenAPI document has no paths")
	}
	return &s
}

// operationFor returns the documented operation for method and a concrete path, and its
// path template.
func (s *spec) operationFor(method, path string) (*operation, string) {
	for tmpl, ops := range s.Paths {
		if op, ok := ops[strings.ToLower(method)]; ok && templateMatches(tmpl, path) {
			return op, tmpl
		}
	}
	return nil, ""
}

// pathDocumented reports whether any operation is documented on path.
func (s *spec) pathDocumented(path string) bool {
	for tmpl := range s.Paths {
		if templateMatches(tmpl, path) {
			return true
		}
	}
	return false
}

func templateMatches(tmpl, path string) bool {
	ts, ps := strings.Split(tmpl, "/"), strings.Split(path, "/")
	if len(ts) != len(ps) {
		return false
	}
	for i := range ts {
		if ts[i] != ps[i] && !(strings.HasPrefix(ts[i], "{") && ps[i] != "") {
			return false
		}
	}
	return true
}

func (s *spec) resolve(sc *schema) *schema {
	for sc != nil && sc.Ref != "" {
		sc = s.Components.Schemas[strings.TrimPrefix(sc.Ref, "#/components/schemas/")]
	}
	return sc
}

// check returns every way v differs from sc, naming where.
func (s *spec) check(sc *schema, v any, at string) []string {
	sc = s.resolve(sc)
	if sc == nil {
		return []string{at + ": schema not found"}
	}
	if v == nil {
		return []string{at + ": null, the document allows no null"}
	}
	var probs []string
	bad := func(format string, args ...any) { probs = append(probs, at+": "+fmt.Sprintf(format, args...)) }
	if len(sc.Enum) > 0 && !slices.ContainsFunc(sc.Enum, func(e any) bool { return fmt.Sprint(e) == fmt.Sprint(v) }) {
		bad("%v is not one of %v", v, sc.Enum)
	}
	switch sc.Type {
	case "object":
		obj, ok := v.(map[string]any)
		if !ok {
			bad("%T, want an object", v)
			return probs
		}
		for _, r := range sc.Required {
			if _, ok := obj[r]; !ok {
				bad("required field %q missing", r)
			}
		}
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if p, ok := sc.Properties[k]; ok {
				probs = append(probs, s.check(p, obj[k], at+"."+k)...)
				continue
			}
			switch ap := strings.TrimSpace(string(sc.AdditionalProperties)); {
			case ap == "false":
				bad("field %q is not documented", k)
			case strings.HasPrefix(ap, "{"):
				var extra schema
				if err := json.Unmarshal(sc.AdditionalProperties, &extra); err == nil {
					probs = append(probs, s.check(&extra, obj[k], at+"."+k)...)
				}
			}
		}
	case "array":
		arr, ok := v.([]any)
		if !ok {
			bad("%T, want an array", v)
			return probs
		}
		for i, item := range arr {
			probs = append(probs, s.check(sc.Items, item, fmt.Sprintf("%s[%d]", at, i))...)
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			bad("%T, want a string", v)
			return probs
		}
		switch sc.Format {
		case "date-time":
			if _, err := time.Parse(time.RFC3339Nano, str); err != nil {
				bad("%q is not a date-time", str)
			}
		case "uuid":
			if _, err := uuid.Parse(str); err != nil {
				bad("%q is not a uuid", str)
			}
		}
	case "integer", "number":
		n, ok := v.(float64)
		if !ok {
			bad("%T, want a number", v)
			return probs
		}
		if sc.Type == "integer" && n != math.Trunc(n) {
			bad("%v is not an integer", n)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			bad("%T, want a boolean", v)
		}
	}
	return probs
}

// checkingTransport checks every exchange under /api/v1 against the document and records
// which documented operations and statuses were seen.
type checkingTransport struct {
	t    testing.TB
	spec *spec
	base http.RoundTripper

	mu   sync.Mutex
	seen map[string]bool // "get /api/v1/incidents/{id} 404"
}

func (c *checkingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var reqBody []byte
	if req.Body != nil {
		reqBody, _ = io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(reqBody))
	}
	resp, err := c.base.RoundTrip(req)
	if err != nil || !strings.HasPrefix(req.URL.Path, "/api/v1/") || req.Method == http.MethodHead {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	for _, p := range c.checkExchange(req, reqBody, resp.StatusCode, resp.Header, body) {
		c.t.Errorf("%s %s -> %d: %s", req.Method, req.URL.Path, resp.StatusCode, p)
	}
	return resp, nil
}

func (c *checkingTransport) checkExchange(req *http.Request, reqBody []byte, status int, header http.Header, body []byte) []string {
	if contentType := header.Get("Content-Type"); !strings.HasPrefix(contentType, "application/json") {
		return []string{fmt.Sprintf("content type %q, want application/json", contentType)}
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return []string{fmt.Sprintf("body is not JSON: %v: %s", err, body)}
	}
	op, tmpl := c.spec.operationFor(req.Method, req.URL.Path)
	if op == nil {
		// Not an operation: the server must not have served it.
		// The document's answers outside its operations: 405 on a documented path, 404
		// elsewhere (and 401 before either when reads are protected).
		var documented *response
		switch status {
		case http.StatusMethodNotAllowed:
			documented = c.spec.Components.Responses["MethodNotAllowed"]
			if documented != nil && documented.Headers["Allow"] == nil {
				return []string{"the document's 405 answer has no Allow header"}
			}
			var served []string
			for tmpl, ops := range c.spec.Paths {
				if templateMatches(tmpl, req.URL.Path) {
					for method := range ops {
						served = append(served, strings.ToUpper(method))
					}
				}
			}
			allow := strings.Split(header.Get("Allow"), ", ")
			slices.Sort(served)
			slices.Sort(allow)
			if !slices.Equal(allow, served) {
				return []string{fmt.Sprintf("Allow: %q, the document serves %v on this path", header.Get("Allow"), served)}
			}
		case http.StatusNotFound:
			documented = c.spec.Components.Responses["NotFound"]
		case http.StatusUnauthorized:
			documented = &response{}
			documented.Content = map[string]struct {
				Schema *schema `json:"schema"`
			}{"application/json": {Schema: &schema{Ref: "#/components/schemas/Error"}}}
		default:
			return []string{"answered, but the OpenAPI document has no such operation"}
		}
		if documented == nil {
			return []string{fmt.Sprintf("status %d outside the operations is not in the document's components/responses", status)}
		}
		return c.spec.check(documented.Content["application/json"].Schema, v, "body")
	}
	c.mu.Lock()
	c.seen[strings.ToLower(req.Method)+" "+tmpl+" "+strconv.Itoa(status)] = true
	c.mu.Unlock()
	r, ok := op.Responses[strconv.Itoa(status)]
	if !ok {
		return []string{fmt.Sprintf("status %d is not documented for %s", status, op.OperationID)}
	}
	probs := c.spec.check(r.Content["application/json"].Schema, v, "body")
	if status < 300 && op.RequestBody != nil {
		var in any
		if err := json.Unmarshal(reqBody, &in); err != nil {
			probs = append(probs, "accepted a request body that is not JSON")
		} else {
			probs = append(probs, c.spec.check(op.RequestBody.Content["application/json"].Schema, in, "request")...)
		}
	}
	return probs
}

func (c *checkingTransport) saw(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen[key]
}

// TestOpenAPIDescribesTheServer exercises every documented operation and checks, through the
// checking client, that each answer is documented and shaped as documented; that every route
// the API registers is documented; and that the server answers no method the document does
// not list on any documented path.
func TestOpenAPIDescribesTheServer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{Token: writeToken})
	e.seed(incA, "api", 0, false)
	e.seed(incB, "db", 0, true)
	_, body := e.do("POST", "/api/v1/silences", `{"service":"api","end":"2026-11-27T00:00:00Z","reason":"upgrade","author":"alice"}`, writeToken)
	silenceID := body["silence"].(map[string]any)["id"].(string)

	// One call per operation, the happy path; the other tests add the error statuses.
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/api/v1/incidents?limit=1", ""},
		{"GET", "/api/v1/incidents/" + incA, ""},
		{"POST", "/api/v1/incidents/" + incA + "/acknowledge", `{"by":"alice"}`},
		{"POST", "/api/v1/incidents/" + incA + "/resolve", `{"by":"alice","reason":"fixed"}`},
		{"POST", "/api/v1/incidents/" + incB + "/reopen", `{"by":"bob"}`},
		{"GET", "/api/v1/silences", ""},
		{"DELETE", "/api/v1/silences/" + silenceID, ""},
		{"GET", "/api/v1/deadletters", ""},
		{"POST", "/api/v1/deadletters/replay", `{"all":true,"dry_run":true}`},
		{"GET", "/api/v1/services", ""},
		{"GET", "/api/v1/services/api/samples?from=2026-11-26T11:00:00Z&to=2026-11-26T13:00:00Z", ""},
		{"GET", "/api/v1/openapi.json", ""},
	} {
		if status, body := e.do(c.method, c.path, c.body, writeToken); status >= 300 {
			t.Errorf("%s %s: %d %v", c.method, c.path, status, body)
		}
	}
	for tmpl, ops := range e.check.spec.Paths {
		for method, op := range ops {
			ok := false
			for status := range op.Responses {
				if strings.HasPrefix(status, "2") && e.check.saw(method+" "+tmpl+" "+status) {
					ok = true
				}
			}
			if !ok {
				t.Errorf("documented operation %s %s (%s) was never answered successfully", method, tmpl, op.OperationID)
			}
		}
	}

	a, err := api.New(api.Config{}, nil, nil, nil, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range a.Routes() {
		method, path, _ := strings.Cut(r, " ")
		if ops, ok := e.check.spec.Paths[path]; !ok || ops[strings.ToLower(method)] == nil {
			t.Errorf("the API serves %s, the document does not describe it", r)
		}
	}

	// Every other method on every documented path, and paths next to them, are not served:
	// the checking client fails any answer other than a JSON 404 or 405.
	concrete := strings.NewReplacer("{id}", incA, "{service}", "api")
	var probes []string
	for tmpl := range e.check.spec.Paths {
		probes = append(probes, concrete.Replace(tmpl), concrete.Replace(tmpl)+"/extra")
	}
	probes = append(probes, "/api/v1/incident", "/api/v1/incidents/"+incA+"/close", "/api/v1/", "/api/v1/silences/"+silenceID+"/end")
	for _, path := range probes {
		for _, method := range []string{"GET", "POST", "PUT", "PATCH", "DELETE"} {
			if op, _ := e.check.spec.operationFor(method, path); op != nil {
				continue
			}
			status, _ := e.do(method, path, `{}`, writeToken)
			if status != http.StatusNotFound && status != http.StatusMethodNotAllowed {
				t.Errorf("%s %s: %d, want 404 or 405: it is not documented", method, path, status)
			}
		}
	}
}
