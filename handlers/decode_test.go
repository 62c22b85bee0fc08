package handlers_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/incident-engine/engine/domain/sample"
	"github.com/incident-engine/engine/handlers"
)

// seedSample is the example every seed service publishes.
const seedSample = `{"service":"api","timestamp":"2026-11-26T17:00:00Z","error_rate":0.012,"latency_p95":182.5,"request_count":1043}`

var seedAt = time.Date(2026, 11, 26, 17, 0, 0, 0, time.UTC)

func TestDecodeRejectsPoisonMessages(t *testing.T) {
	t.Parallel()
	oversized := append(bytes.Repeat([]byte(" "), handlers.MaxPayload), seedSample...)
	var many strings.Builder
	for i := range sample.MaxMetrics + 1 {
		fmt.Fprintf(&many, `%s"m%d":1`, map[bool]string{true: "", false: ","}[i == 0], i)
	}
	cases := []struct {
		name    string
		reason  string
		payload string
		want    []string // substrings the error must contain, naming the problem
	}{
		{"not JSON", "plain text is not a sample", `service=api error_rate=0.1`, []string{"not a JSON sample"}},
		{"empty payload", "an empty message carries nothing", ``, []string{"not a JSON sample"}},
		{"batch with an incomplete sample", "a batch is valid only when every sample is, and the error says which", `[` + seedSample + `,{"service":"api"}]`, []string{"sample 2 of 2", "timestamp is missing", "no metrics"}},
		{"empty batch", "a batch carries at least one sample", `[]`, []string{"a batch of 0 samples"}},
		{"oversized batch", "a batch is bounded in samples as well as bytes", `[` + strings.Repeat(`{"service":"a","timestamp":1,"error_rate":0},`, handlers.MaxBatch) + `{"service":"a","timestamp":2,"error_rate":0}]`, []string{"a batch of 1001 samples"}},
		{"batch of numbers", "a batch holds samples", `[1,2]`, []string{"sample 1 of 2", "not a JSON sample"}},
		{"batch of batches", "batches do not nest", `[[` + seedSample + `],` + seedSample + `]`, []string{"sample 1 of 2", "not a JSON sample"}},
		{"batch of two services", "a batch is keyed by one service, so it holds that service's samples", `[` + seedSample + `,` + strings.NewReplacer(`"api"`, `"db"`, "17:00:00", "17:01:00").Replace(seedSample) + `]`, []string{"sample 2 of 2", `service "db" in a batch of "api"`}},
		{"batch out of order", "a batch is in time order", `[` + strings.Replace(seedSample, "17:00:00", "17:01:00", 1) + `,` + seedSample + `]`, []string{"sample 2 of 2", "not after the previous sample's"}},
		{"batch with a repeated sample", "two samples of one service at one time are one too many", `[` + seedSample + `,` + seedSample + `]`, []string{"sample 2 of 2", "not after the previous sample's"}},
		{"batch with trailing data", "bytes after the array mean a broken producer", `[` + seedSample + `] x`, []string{"not a JSON array of samples"}},
		{"JSON null", "null decodes to an empty sample", `null`, []string{"service is missing", "timestamp is missing", "no metrics"}},
		{"trailing garbage", "bytes after the object mean a broken producer", seedSample + ` xyz`, []string{"trailing data"}},
		{"second object", "two samples in one message are not accepted", seedSample + seedSample, []string{"trailing data"}},
		{"missing service", "every sample belongs to a service", `{"timestamp":"2026-11-26T17:00:00Z","error_rate":0.01}`, []string{"service is missing"}},
		{"empty service", "an empty name is no service", `{"service":"","timestamp":"2026-11-26T17:00:00Z","error_rate":0.01}`, []string{"service is missing or empty"}},
		{"blank service", "a name of spaces is trimmed to nothing", `{"service":"  \t ","timestamp":"2026-11-26T17:00:00Z","error_rate":0.01}`, []string{"service is missing or empty"}},
		{"service with control character", "a newline in a name breaks logs and keys", `{"service":"ap\ni","timestamp":"2026-11-26T17:00:00Z","error_rate":0.01}`, []string{"control characters"}},
		{"missing timestamp", "event time is the sample's own timestamp", `{"service":"api","error_rate":0.01}`, []string{"timestamp is missing"}},
		{"null timestamp", "null is as good as missing", `{"service":"api","timestamp":null,"error_rate":0.01}`, []string{"timestamp is missing"}},
		{"bad timestamp string", "only RFC 3339 strings are dates", `{"service":"api","timestamp":"yesterday","error_rate":0.01}`, []string{`timestamp "yesterday" is not RFC 3339`}},
		{"timestamp without zone", "a local time without offset is ambiguous", `{"service":"api","timestamp":"2026-11-26T17:00:00","error_rate":0.01}`, []string{"not RFC 3339"}},
		{"negative unix timestamp", "before 1970 is no sample of ours", `{"service":"api","timestamp":-5,"error_rate":0.01}`, []string{"neither RFC 3339 nor Unix seconds"}},
		{"unix timestamp in milliseconds", "milliseconds would land in the year 58000", `{"service":"api","timestamp":1795712400000,"error_rate":0.01}`, []string{"neither RFC 3339 nor Unix seconds"}},
		{"timestamp out of range", "1970 is before any service existed", `{"service":"api","timestamp":0,"error_rate":0.01}`, []string{"out of range"}},
		{"boolean timestamp", "a timestamp is a string or a number", `{"service":"api","timestamp":true,"error_rate":0.01}`, []string{"neither RFC 3339 nor Unix seconds"}},
		{"NaN written as string", "JSON has no NaN; a string is not a number", `{"service":"api","timestamp":"2026-11-26T17:00:00Z","error_rate":"NaN"}`, []string{"error_rate"}},
		{"huge number", "1e400 overflows float64", `{"service":"api","timestamp":"2026-11-26T17:00:00Z","latency_p95":1e400}`, []string{"latency_p95"}},
		{"huge number in metrics", "an overflow among the extra metrics too", `{"service":"api","timestamp":"2026-11-26T17:00:00Z","metrics":{"cpu":1e400}}`, []string{"1e400"}},
		{"negative request_count", "a count cannot be negative", `{"service":"api","timestamp":"2026-11-26T17:00:00Z","request_count":-5}`, []string{"request_count -5 is negative"}},
		{"error_rate above 1", "a rate is a fraction", `{"service":"api","timestamp":"2026-11-26T17:00:00Z","error_rate":1.5}`, []string{"error_rate 1.5 is outside [0,1]"}},
		{"error_rate below 0", "a rate is a fraction", `{"service":"api","timestamp":"2026-11-26T17:00:00Z","error_rate":-0.1}`, []string{"error_rate -0.1 is outside [0,1]"}},
		{"negative latency", "a duration cannot be negative", `{"service":"api","timestamp":"2026-11-26T17:00:00Z","latency_p95":-1}`, []string{"latency_p95 -1 is negative"}},
		{"unknown top-level field", "a misspelt metric must not vanish silently", `{"service":"api","timestamp":"2026-11-26T17:00:00Z","latency_p59":182.5}`, []string{`unknown field "latency_p59"`}},
		{"duplicate metric", "one value per metric, not two that disagree", `{"service":"api","timestamp":"2026-11-26T17:00:00Z","error_rate":0.01,"metrics":{"error_rate":0.02}}`, []string{"error_rate given both at top level and in metrics"}},
		{"duplicate key at top level", "encoding/json would silently keep the last of two values", `{"service":"api","timestamp":"2026-11-26T17:00:00Z","error_rate":0.01,"error_rate":0.9}`, []string{`"error_rate" given twice at top level`}},
		{"duplicate key in metrics", "encoding/json would silently keep the last of two values", `{"service":"api","timestamp":"2026-11-26T17:00:00Z","metrics":{"cpu":0.1,"cpu":0.9}}`, []string{`"cpu" given twice in "metrics"`}},
		{"duplicate service", "which service a sample belongs to must not be a guess", `{"service":"api","service":"db","timestamp":"2026-11-26T17:00:00Z","error_rate":0.01}`, []string{`"service" given twice at top level`}},
		{"bad metric name", "names become model features and labels", `{"service":"api","timestamp":"2026-11-26T17:00:00Z","metrics":{"cpu load":0.7}}`, []string{`metric name "cpu load"`}},
		{"oversized payload", "the size limit holds before any parsing", string(oversized), []string{"exceeds 65536"}},
		{"65 metrics", "a service's state is bounded by the metrics one sample may carry", `{"service":"api","timestamp":"2026-11-26T17:00:00Z","metrics":{` + many.String() + `}}`, []string{"65 metrics, at most 64"}},
		{"empty metrics", "a sample without values says nothing", `{"service":"api","timestamp":"2026-11-26T17:00:00Z","metrics":{}}`, []string{"no metrics"}},
		{"no metrics at all", "service and time alone say nothing", `{"service":"api","timestamp":"2026-11-26T17:00:00Z"}`, []string{"no metrics"}},
		{"case-variant service", "encoding/json alone would take Service for service, the last one winning", `{"service":"api","Service":"db","timestamp":"2026-11-26T17:00:00Z","error_rate":0.01}`, []string{`"Service" is not a field`}},
		{"case-variant metric", "ERROR_RATE beside error_rate would overwrite it", `{"service":"api","timestamp":"2026-11-26T17:00:00Z","error_rate":0.01,"ERROR_RATE":0.5}`, []string{`"ERROR_RATE" is not a field`}},
		{"one-digit hour", "time.Parse takes it, RFC 3339 does not", `{"service":"api","timestamp":"2026-11-26T7:00:00Z","error_rate":0.01}`, []string{"not RFC 3339"}},
		{"service with a C1 control", "NEL breaks terminals and logs", "{\"service\":\"ap\u0085i\",\"timestamp\":\"2026-11-26T17:00:00Z\",\"error_rate\":0.01}", []string{"service name"}},
		{"service with a bidi override", "it reverses what an operator reads", "{\"service\":\"api\u202egnp\",\"timestamp\":\"2026-11-26T17:00:00Z\",\"error_rate\":0.01}", []string{"service name"}},
		{"service with a zero-width space", "two names that look alike", "{\"service\":\"a\u200bpi\",\"timestamp\":\"2026-11-26T17:00:00Z\",\"error_rate\":0.01}", []string{"service name"}},
		{"service with markup", "names reach the dashboard and Slack", `{"service":"<b>api</b>","timestamp":"2026-11-26T17:00:00Z","error_rate":0.01}`, []string{"service name"}},
		{"service with a path separator", "names reach URLs and file names", `{"service":"../api","timestamp":"2026-11-26T17:00:00Z","error_rate":0.01}`, []string{"service name"}},
		{"service not UTF-8", "invalid bytes would be rewritten to U+FFFD, silently", "{\"service\":\"ap\xffi\",\"timestamp\":\"2026-11-26T17:00:00Z\",\"error_rate\":0.01}", []string{"service name"}},
		{"every problem reported", "a producer fixes all its mistakes at once", `{"service":"","timestamp":"soon","error_rate":2}`, []string{"service is missing", `timestamp "soon"`, "error_rate 2 is outside"}},
	}
	h := handlers.NewDecodeHandler(nil)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, err := h.Handle(message.NewMessage("in-1", []byte(tc.payload)))
			if !errors.Is(err, handlers.ErrPermanent) {
				t.Fatalf("%s: got error %v, want a permanent one", tc.reason, err)
			}
			if !errors.Is(err, sample.ErrInvalid) {
				t.Errorf("%s: error %v does not wrap sample.ErrInvalid", tc.reason, err)
			}
			if out != nil {
				t.Errorf("%s: got %d output messages, want none", tc.reason, len(out))
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%s: error %q does not name the problem %q", tc.reason, err, w)
				}
			}
		})
	}
}

func TestDecodeAcceptsValidSamples(t *testing.T) {
	t.Parallel()
	broker := time.Date(2026, 11, 26, 18, 0, 2, 500_000_000, time.FixedZone("CET", 3600))
	fromBroker := func(*message.Message) (time.Time, bool) { return broker, true }
	brokerUnknown := func(*message.Message) (time.Time, bool) { return time.Time{}, false }
	seedMetrics := map[string]float64{"error_rate": 0.012, "latency_p95": 182.5, "request_count": 1043}
	cases := []struct {
		name       string
		reason     string
		payload    string
		receivedAt func(*message.Message) (time.Time, bool)
		want       handlers.DecodedSample
	}{
		{
			name: "seed example", reason: "what every seed service sends",
			payload: seedSample,
			want:    handlers.DecodedSample{Service: "api", Timestamp: seedAt, Metrics: seedMetrics, ReceivedAt: seedAt},
		},
		{
			name: "broker time given", reason: "ReceivedAt is the broker's time, in UTC",
			payload: seedSample, receivedAt: fromBroker,
			want: handlers.DecodedSample{Service: "api", Timestamp: seedAt, Metrics: seedMetrics, ReceivedAt: broker.UTC()},
		},
		{
			name: "broker time unknown", reason: "without a broker time the sample time stands in",
			payload: seedSample, receivedAt: brokerUnknown,
			want: handlers.DecodedSample{Service: "api", Timestamp: seedAt, Metrics: seedMetrics, ReceivedAt: seedAt},
		},
		{
			name: "unix seconds", reason: "producers may send epoch seconds",
			payload: fmt.Sprintf(`{"service":"api","timestamp":%d,"error_rate":0.012}`, seedAt.Unix()),
			want:    handlers.DecodedSample{Service: "api", Timestamp: seedAt, Metrics: map[string]float64{"error_rate": 0.012}, ReceivedAt: seedAt},
		},
		{
			name: "fractional unix seconds", reason: "sub-second epoch times keep their fraction",
			payload: fmt.Sprintf(`{"service":"api","timestamp":%d.25,"error_rate":0.012}`, seedAt.Unix()),
			want:    handlers.DecodedSample{Service: "api", Timestamp: seedAt.Add(250 * time.Millisecond), Metrics: map[string]float64{"error_rate": 0.012}, ReceivedAt: seedAt.Add(250 * time.Millisecond)},
		},
		{
			name: "offset and nanoseconds", reason: "timestamps are normalised to UTC microseconds, the database's precision",
			payload: `{"service":"api","timestamp":"2026-11-26T18:00:00.123456789+01:00","error_rate":0.012}`,
			want:    handlers.DecodedSample{Service: "api", Timestamp: seedAt.Add(123456 * time.Microsecond), Metrics: map[string]float64{"error_rate": 0.012}, ReceivedAt: seedAt.Add(123456 * time.Microsecond)},
		},
		{
			name: "extra metrics", reason: `"metrics" carries any further numeric metric`,
			payload: `{"service":"db","timestamp":"2026-11-26T17:00:00Z","error_rate":0.012,"metrics":{"cpu":0.7,"queue_depth":12}}`,
			want:    handlers.DecodedSample{Service: "db", Timestamp: seedAt, Metrics: map[string]float64{"error_rate": 0.012, "cpu": 0.7, "queue_depth": 12}, ReceivedAt: seedAt},
		},
		{
			name: "only extra metrics", reason: "the three named metrics are optional",
			payload: `{"service":"auth","timestamp":"2026-11-26T17:00:00Z","metrics":{"login_failures_total":3}}`,
			want:    handlers.DecodedSample{Service: "auth", Timestamp: seedAt, Metrics: map[string]float64{"login_failures_total": 3}, ReceivedAt: seedAt},
		},
		{
			name: "metric named like a top-level field", reason: "keys are unique per object, not across objects",
			payload: `{"service":"api","timestamp":"2026-11-26T17:00:00Z","metrics":{"service":1,"timestamp":2}}`,
			want:    handlers.DecodedSample{Service: "api", Timestamp: seedAt, Metrics: map[string]float64{"service": 1, "timestamp": 2}, ReceivedAt: seedAt},
		},
		{
			name: "service name trimmed", reason: "surrounding spaces are not part of the name",
			payload: `{"service":"  api ","timestamp":"2026-11-26T17:00:00Z","error_rate":0}`,
			want:    handlers.DecodedSample{Service: "api", Timestamp: seedAt, Metrics: map[string]float64{"error_rate": 0}, ReceivedAt: seedAt},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, err := handlers.NewDecodeHandler(tc.receivedAt).Handle(message.NewMessage("in-1", []byte(tc.payload)))
			if err != nil {
				t.Fatalf("%s: %v", tc.reason, err)
			}
			if len(out) != 1 {
				t.Fatalf("%s: got %d messages, want 1", tc.reason, len(out))
			}
			if got := out[0].Metadata.Get(handlers.MetadataService); got != tc.want.Service {
				t.Errorf("%s: metadata service = %q, want %q", tc.reason, got, tc.want.Service)
			}
			got := decodeBody[handlers.DecodedSample](t, out[0].Payload)
			if got.Service != tc.want.Service || !got.Timestamp.Equal(tc.want.Timestamp) || !got.ReceivedAt.Equal(tc.want.ReceivedAt) {
				t.Errorf("%s: got %s at %s received %s, want %s at %s received %s", tc.reason,
					got.Service, got.Timestamp, got.ReceivedAt, tc.want.Service, tc.want.Timestamp, tc.want.ReceivedAt)
			}
			if !equalMetrics(got.Metrics, tc.want.Metrics) {
				t.Errorf("%s: metrics %v, want %v", tc.reason, got.Metrics, tc.want.Metrics)
			}
		})
	}
}

func TestDecodeMessageIDIsDeterministic(t *testing.T) {
	t.Parallel()
	id := func(t *testing.T, payload string) string {
		t.Helper()
		out, err := handlers.NewDecodeHandler(nil).Handle(message.NewMessage("broker-id", []byte(payload)))
		if err != nil {
			t.Fatal(err)
		}
		return out[0].UUID
	}
	base := id(t, seedSample)
	cases := []struct {
		name    string
		reason  string
		payload string
		same    bool
	}{
		{"same input", "a redelivered sample must keep its id so later stages recognise it", seedSample, true},
		{"same instant, other offset", "the id names the instant, not its spelling", strings.Replace(seedSample, "2026-11-26T17:00:00Z", "2026-11-26T18:00:00+01:00", 1), true},
		{"same instant as unix seconds", "the id names the instant, not its spelling", fmt.Sprintf(`{"service":"api","timestamp":%d,"error_rate":0.5}`, seedAt.Unix()), true},
		{"other timestamp", "another sample of the service is another message", strings.Replace(seedSample, "17:00:00Z", "17:00:10Z", 1), false},
		{"other service", "the same time at another service is another message", strings.Replace(seedSample, `"api"`, `"db"`, 1), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := id(t, tc.payload)
			if (got == base) != tc.same {
				t.Errorf("%s: id %s vs seed %s, want same=%v", tc.reason, got, base, tc.same)
			}
			if got == "broker-id" {
				t.Errorf("%s: the output reuses the input's id", tc.reason)
			}
		})
	}
}

func decodeBody[T any](t *testing.T, payload []byte) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode %T from %s: %v", v, payload, err)
	}
	return v
}

func equalMetrics(a, b map[string]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestDecodeRejectsSamplesFromTheFuture checks the plausibility bound against the broker's
// clock: a timestamp minutes ahead (clock skew) passes, one an hour or centuries ahead is a
// permanent error naming the bound, since accepted it would blind its service for good.
func TestDecodeRejectsSamplesFromTheFuture(t *testing.T) {
	t.Parallel()
	received := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	h := handlers.NewDecodeHandler(func(*message.Message) (time.Time, bool) { return received, true })
	for _, tc := range []struct {
		at  string
		ok  bool
		why string
	}{
		{"2026-12-02T12:05:00Z", true, "five minutes of clock skew"},
		{"2026-12-02T11:00:00Z", true, "an hour late: the watermark judges lateness"},
		{"2026-12-02T13:00:00Z", false, "an hour ahead"},
		{"2200-01-01T00:00:00Z", false, "the year 2200"},
	} {
		payload := fmt.Sprintf(`{"service":"api","timestamp":%q,"error_rate":0.01,"latency_p95":100,"request_count":10}`, tc.at)
		_, err := h.Handle(message.NewMessage("m", []byte(payload)))
		if tc.ok && err != nil {
			t.Errorf("%s (%s): %v, want it accepted", tc.at, tc.why, err)
		}
		if !tc.ok && (!errors.Is(err, handlers.ErrPermanent) || !strings.Contains(err.Error(), "ahead of the broker")) {
			t.Errorf("%s (%s): %v, want a permanent error saying it is ahead of the broker", tc.at, tc.why, err)
		}
	}
}

// With no tolerance (a negative bound), a sample a second ahead of the broker's receipt is
// refused and one at the receipt passes; a zero bound keeps the default.
func TestDecodeWithNoToleranceAhead(t *testing.T) {
	t.Parallel()
	received := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		bound time.Duration
		at    string
		ok    bool
	}{
		{-1, "2026-12-02T12:00:00Z", true},
		{-1, "2026-12-02T12:00:01Z", false},
		{0, "2026-12-02T12:05:00Z", true},
	} {
		h := handlers.NewDecodeHandler(func(*message.Message) (time.Time, bool) { return received, true })
		h.SetMaxAhead(tc.bound)
		payload := fmt.Sprintf(`{"service":"api","timestamp":%q,"error_rate":0.01,"latency_p95":100,"request_count":10}`, tc.at)
		if _, err := h.Handle(message.NewMessage("m", []byte(payload))); (err == nil) != tc.ok {
			t.Errorf("bound %s, sample at %s: %v, want accepted %v", tc.bound, tc.at, err, tc.ok)
		}
	}
}

// TestDecodeRejectsAKeyOfAnotherService checks that a sample keyed as another service is
// rejected: the key decides the partition, so the sample would be ordered among that
// service's; a sample keyed by its own service, or not keyed, passes.
func TestDecodeRejectsAKeyOfAnotherService(t *testing.T) {
	t.Parallel()
	h := handlers.NewDecodeHandler(nil)
	for key, ok := range map[string]bool{"": true, "api": true, "db": false} {
		m := message.NewMessage("in", []byte(seedSample))
		if key != "" {
			m.Metadata.Set(handlers.MetadataService, key)
		}
		_, err := h.Handle(m)
		if ok != (err == nil) || (!ok && !strings.Contains(err.Error(), "keyed")) {
			t.Errorf("key %q: %v, want accepted %v", key, err, ok)
		}
	}
}

// TestDecodeAcceptsABatch checks that a batch of one service's samples decodes into one
// message, keyed by the service, of the samples in order, each exactly what the sample alone
// gives, and that one sample too far ahead of the broker's receipt rejects the batch naming it.
func TestDecodeAcceptsABatch(t *testing.T) {
	t.Parallel()
	received := seedAt.Add(time.Hour)
	h := handlers.NewDecodeHandler(func(*message.Message) (time.Time, bool) { return received, true })
	var singles []string
	for i := range 3 {
		singles = append(singles, strings.Replace(seedSample, "17:00:00Z", fmt.Sprintf("17:0%d:00Z", i), 1))
	}
	in := message.NewMessage("batch", []byte(" [\n"+strings.Join(singles, ",\n")+"]"))
	in.Metadata.Set(handlers.MetadataService, "api")
	out, err := h.Handle(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || out[0].Metadata.Get(handlers.MetadataService) != "api" {
		t.Fatalf("%d messages out of a batch (keyed %q), want one keyed api", len(out), out[0].Metadata.Get(handlers.MetadataService))
	}
	var batch []json.RawMessage
	if err := json.Unmarshal(out[0].Payload, &batch); err != nil || len(batch) != len(singles) {
		t.Fatalf("output %s: %d samples (%v), want an array of %d", out[0].Payload, len(batch), err, len(singles))
	}
	for i, single := range singles {
		alone, err := h.Handle(message.NewMessage("single", []byte(single)))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(batch[i], alone[0].Payload) {
			t.Errorf("sample %d of the batch gives %s, alone %s", i+1, batch[i], alone[0].Payload)
		}
	}
	ahead := strings.Replace(seedSample, "17:00:00Z", "19:00:00Z", 1)
	_, err = h.Handle(message.NewMessage("batch", []byte("["+singles[0]+","+ahead+"]")))
	if !errors.Is(err, handlers.ErrPermanent) || !strings.Contains(err.Error(), "sample 2 of 2") || !strings.Contains(err.Error(), "ahead of the broker") {
		t.Errorf("a batch with a sample from the future: %v, want a permanent error naming sample 2 of 2", err)
	}
}
