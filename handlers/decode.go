package handlers

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	fastjson "github.com/segmentio/encoding/json"

	"github.com/incident-engine/engine/domain/sample"
)

// MaxPayload is the largest input message decode accepts, in bytes.
const MaxPayload = 64 << 10

// MaxBatch is the most samples one input message may carry.
const MaxBatch = 1_000

// DecodeHandler is the decode stage: it validates the services' raw JSON samples and
// normalises them. The input format is
//
//	{"service":"api","timestamp":"2026-11-26T17:00:00Z",
//	 "error_rate":0.012,"latency_p95":182.5,"request_count":1043,
//	 "metrics":{"cpu":0.7,"queue_depth":12}}
//
// where timestamp is RFC 3339 or Unix seconds, the three named metrics are optional, and
// "metrics" carries any further numeric metrics. Unknown top-level fields are rejected, so a
// misspelt metric is reported instead of silently ignored. A message may also carry a batch:
// a JSON array of up to MaxBatch samples of one service, in time order, each in the format
// above (a shipper that buffers, or a backlog sent after an outage, costs the broker and the
// engine one message instead of one a sample). Invalid messages fail with a Permanent error
// naming every problem found; a batch with an invalid sample fails whole, with the sample's
// place in it, so it goes to the dead letters as it came and can be replayed once fixed.
type DecodeHandler struct {
	receivedAt func(*message.Message) (time.Time, bool)
	maxAhead   time.Duration
	metrics    Metrics
}

// DefaultMaxAhead is how far a sample's timestamp may lie ahead of the broker's receipt of it
// (clock skew) unless SetMaxAhead says otherwise.
const DefaultMaxAhead = 10 * time.Minute

// SetMaxAhead bounds how far ahead of the broker's receipt a sample's timestamp may lie (zero
// keeps DefaultMaxAhead; negative: not at all). A sample beyond it is rejected: accepted, it
// would move its service's watermark into the future and every real sample after it would be
// dropped as late.
func (h *DecodeHandler) SetMaxAhead(d time.Duration) {
	switch {
	case d < 0: // none
		h.maxAhead = 0
	case d > 0:
		h.maxAhead = d
	}
}

// SetMetrics makes the stage count decoded samples; nil counts nothing.
func (h *DecodeHandler) SetMetrics(m Metrics) { h.metrics = m }

// NewDecodeHandler returns the decode stage. receivedAt tells when the broker received a
// message; it may be nil, and then the sample's own timestamp stands in for it.
func NewDecodeHandler(receivedAt func(*message.Message) (time.Time, bool)) *DecodeHandler {
	return &DecodeHandler{receivedAt: receivedAt, maxAhead: DefaultMaxAhead}
}

type wireSample struct {
	Service      *string            `json:"service"`
	Timestamp    json.RawMessage    `json:"timestamp"`
	ErrorRate    *float64           `json:"error_rate"`
	LatencyP95   *float64           `json:"latency_p95"`
	RequestCount *float64           `json:"request_count"`
	Metrics      map[string]float64 `json:"metrics"`
}

// Handle decodes one message, a sample or a batch of one service's samples, into one
// message keyed by service: a DecodedSample, or the batch's in the order given (see
// encodeBatch).
func (h *DecodeHandler) Handle(msg *message.Message) ([]*message.Message, error) {
	samples, err := DecodeMessage(msg.Payload)
	if err != nil {
		return nil, err
	}
	service := samples[0].Service
	if key := msg.Metadata.Get(MetadataService); key != "" && key != service {
		// The key decides the partition, so the service's order: a sample keyed as another
		// service would be ordered among that one's.
		return nil, Permanent(fmt.Errorf("%w: the message is keyed %q but its service is %q; key each sample by its service", sample.ErrInvalid, strings.ToValidUTF8(key, "\ufffd"), service))
	}
	var received time.Time
	if h.receivedAt != nil {
		if at, ok := h.receivedAt(msg); ok && !at.IsZero() {
			received = at.UTC()
		}
	}
	out := make([]DecodedSample, len(samples))
	for i, s := range samples {
		d := DecodedSample{Service: s.Service, Timestamp: s.At, Metrics: make(map[string]float64, len(s.Metrics)), ReceivedAt: s.At}
		for _, m := range s.Metrics {
			d.Metrics[m.Name] = m.Value
		}
		if !received.IsZero() {
			d.ReceivedAt = received
			if ahead := s.At.Sub(received); ahead > h.maxAhead {
				return nil, Permanent(inBatch(i, len(samples), fmt.Errorf("%w: timestamp %s is %s ahead of the broker's receipt (%s), beyond the %s allowed",
					sample.ErrInvalid, s.At.Format(time.RFC3339), ahead.Round(time.Second), received.Format(time.RFC3339), h.maxAhead)))
			}
		}
		out[i] = d
	}
	payload, err := encodeBatch(out)
	if err != nil {
		return nil, fmt.Errorf("encode decoded sample: %w", err)
	}
	m := message.NewMessage(batchID(service, samples[0].At, samples[len(samples)-1].At, len(samples)), payload)
	m.Metadata.Set(MetadataService, service)
	// Counted once the whole message passed.
	for range out {
		metricsOrNone(h.metrics).Decoded(service)
	}
	return []*message.Message{m}, nil
}

// DecodeMessage parses and validates one input message: one sample, or a batch of one
// service's samples in time order (see DecodeHandler). Its errors are Permanent.
func DecodeMessage(payload []byte) ([]sample.Sample, error) {
	if len(payload) > MaxPayload {
		return nil, Permanent(fmt.Errorf("%w: payload of %d bytes exceeds %d", sample.ErrInvalid, len(payload), MaxPayload))
	}
	if !isArray(payload) {
		s, err := decodeSample(payload)
		if err != nil {
			return nil, Permanent(err)
		}
		return []sample.Sample{s}, nil
	}
	var raws []json.RawMessage
	if err := fastjson.Unmarshal(payload, &raws); err != nil {
		return nil, Permanent(fmt.Errorf("%w: not a JSON array of samples: %w", sample.ErrInvalid, err))
	}
	if len(raws) == 0 || len(raws) > MaxBatch {
		return nil, Permanent(fmt.Errorf("%w: a batch of %d samples; send 1 to %d", sample.ErrInvalid, len(raws), MaxBatch))
	}
	out := make([]sample.Sample, len(raws))
	for i, raw := range raws {
		s, err := decodeSample(raw)
		if err == nil && i > 0 {
			err = follows(out[i-1], s)
		}
		if err != nil {
			return nil, Permanent(inBatch(i, len(raws), err))
		}
		out[i] = s
	}
	return out, nil
}

// follows reports why s cannot follow prev in a batch: another service, or not later.
func follows(prev, s sample.Sample) error {
	if s.Service != prev.Service {
		return fmt.Errorf("%w: service %q in a batch of %q; a batch holds one service's samples", sample.ErrInvalid, s.Service, prev.Service)
	}
	if !s.At.After(prev.At) {
		return fmt.Errorf("%w: timestamp %s is not after the previous sample's (%s); a batch is in time order",
			sample.ErrInvalid, s.At.Format(time.RFC3339Nano), prev.At.Format(time.RFC3339Nano))
	}
	return nil
}

// inBatch names the place in its batch of a sample's error; a lone sample's error is as it is.
func inBatch(i, n int, err error) error {
	if n == 1 {
		return err
	}
	return fmt.Errorf("sample %d of %d: %w", i+1, n, err)
}

// decodeSample parses and validates one sample.
func decodeSample(payload []byte) (sample.Sample, error) {
	var w wireSample
	rest, err := fastjson.Parse(payload, &w, fastjson.DisallowUnknownFields)
	if err != nil {
		return sample.Sample{}, fmt.Errorf("%w: not a JSON sample: %w", sample.ErrInvalid, err)
	}
	if len(rest) != 0 {
		return sample.Sample{}, fmt.Errorf("%w: trailing data after the JSON object", sample.ErrInvalid)
	}
	var errs []error
	if err := duplicateKey(payload); err != nil {
		errs = append(errs, err)
	}
	var service string
	if w.Service != nil {
		service = *w.Service
		// An empty name is sample.New's to report.
		if name := strings.TrimSpace(service); name != "" {
			if err := validServiceName(name); err != nil {
				errs = append(errs, err)
			}
		}
	}
	at, err := parseTimestamp(w.Timestamp)
	if err != nil {
		errs = append(errs, err)
	}
	metrics := make([]sample.Metric, 0, 3+len(w.Metrics))
	for _, named := range []struct {
		name string
		v    *float64
	}{{sample.ErrorRate, w.ErrorRate}, {sample.LatencyP95, w.LatencyP95}, {sample.RequestCount, w.RequestCount}} {
		if named.v == nil {
			continue
		}
		if _, dup := w.Metrics[named.name]; dup {
			errs = append(errs, fmt.Errorf("%w: %s given both at top level and in metrics", sample.ErrInvalid, named.name))
		}
		metrics = append(metrics, sample.Metric{Name: named.name, Value: *named.v})
	}
	for name, v := range w.Metrics {
		metrics = append(metrics, sample.Metric{Name: name, Value: v})
	}
	s, err := sample.New(service, at, metrics)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return sample.Sample{}, errors.Join(errs...)
	}
	return s, nil
}

// duplicateKey reports a key given twice in one JSON object, which encoding/json would accept
// silently, keeping the last value, and a top-level key that is not a field of a sample. It
// leaves syntax errors to the decoder (which has passed the payload before it is called).
func duplicateKey(payload []byte) error {
	type object struct {
		name string
		keys map[string]bool
	}
	var stack []*object // nil for an array
	key := ""
	for t := fastjson.NewTokenizer(payload); t.Next(); {
		switch {
		case t.IsKey:
			k, obj := string(t.String()), stack[len(stack)-1]
			if len(stack) == 1 && !sampleFields[k] {
				return fmt.Errorf("%w: %q is not a field of a sample (fields are case-sensitive)", sample.ErrInvalid, k)
			}
			if obj.keys[k] {
				where := "at top level"
				if len(stack) > 1 {
					where = fmt.Sprintf("in %q", obj.name)
				}
				return fmt.Errorf("%w: %q given twice %s", sample.ErrInvalid, k, where)
			}
			obj.keys[k], key = true, k
		case t.Delim == '{':
			stack = append(stack, &object{name: key, keys: map[string]bool{}})
		case t.Delim == '[':
			stack = append(stack, nil)
		case t.Delim == '}' || t.Delim == ']':
			if stack = stack[:len(stack)-1]; len(stack) == 0 {
				return nil
			}
		}
	}
	return nil
}

// rfc3339 is the exact shape of an RFC 3339 timestamp: time.Parse alone also takes a one-digit
// hour.
var rfc3339 = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$`)

// serviceName is the character set of service names: they appear in URLs, file names, metric
// labels and terminals, so no spaces, markup, separators or control and invisible characters.
var serviceName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]*$`)

// validServiceName checks a service name against serviceName.
func validServiceName(s string) error {
	if !serviceName.MatchString(s) {
		return fmt.Errorf("%w: service name %q: use letters, digits and . _ : - (starting with a letter or digit)", sample.ErrInvalid, strings.ToValidUTF8(s, "\ufffd"))
	}
	return nil
}

// sampleFields are the top-level fields of a sample, spelt exactly (encoding/json alone
// would match "Service" or "ERROR_RATE" too).
var sampleFields = map[string]bool{"service": true, "timestamp": true, sample.ErrorRate: true, sample.LatencyP95: true, sample.RequestCount: true, "metrics": true}

func parseTimestamp(raw json.RawMessage) (time.Time, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return time.Time{}, nil // sample.New reports the missing timestamp
	}
	if raw[0] == '"' {
		var s string
		if err := fastjson.Unmarshal(raw, &s); err != nil {
			return time.Time{}, fmt.Errorf("%w: timestamp: %w", sample.ErrInvalid, err)
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil || !rfc3339.MatchString(s) {
			return time.Time{}, fmt.Errorf("%w: timestamp %q is not RFC 3339", sample.ErrInvalid, s)
		}
		return t, nil
	}
	secs, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsNaN(secs) || math.IsInf(secs, 0) || secs < 0 || secs > 1e11 {
		return time.Time{}, fmt.Errorf("%w: timestamp %s is neither RFC 3339 nor Unix seconds", sample.ErrInvalid, raw)
	}
	whole, frac := math.Modf(secs)
	return time.Unix(int64(whole), int64(frac*1e9)), nil
}
