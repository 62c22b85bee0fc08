package handlers

import (
	"bytes"
	"fmt"
	"time"

	"github.com/google/uuid"
	fastjson "github.com/segmentio/encoding/json"

	"github.com/incident-engine/engine/domain/incident"
	"github.com/incident-engine/engine/domain/sample"
)

// The JSON bodies that travel between stages. The external input format (topic metrics) is
// described with DecodeHandler. A message between stages carries what one input message
// carried: one sample as a JSON object, or a batch of one service's samples, in time order,
// as a JSON array of them (see encodeBatch), so a batch costs each stage one message.

// DecodedSample is decode's output: a validated, normalised sample.
type DecodedSample struct {
	Service   string             `json:"service"`
	Timestamp time.Time          `json:"timestamp"`
	Metrics   map[string]float64 `json:"metrics"`
	// ReceivedAt is when the broker received the original message.
	ReceivedAt time.Time `json:"received_at"`
}

// Sample converts the message body back into a domain sample.
func (d DecodedSample) Sample() (sample.Sample, error) {
	ms := make([]sample.Metric, 0, len(d.Metrics))
	for name, v := range d.Metrics {
		ms = append(ms, sample.Metric{Name: name, Value: v})
	}
	return sample.New(d.Service, d.Timestamp, ms)
}

// samplesOf converts the samples of one message (decoded or scored) into domain samples,
// checking that they are one service's in time order; an error names the sample's place.
func samplesOf[T interface{ Sample() (sample.Sample, error) }](ins []T) ([]sample.Sample, error) {
	out := make([]sample.Sample, len(ins))
	for i, in := range ins {
		s, err := in.Sample()
		if err == nil && i > 0 {
			err = follows(out[i-1], s)
		}
		if err != nil {
			return nil, inBatch(i, len(ins), err)
		}
		out[i] = s
	}
	return out, nil
}

// ScoredSample is score's output: the sample with its model's judgement.
type ScoredSample struct {
	DecodedSample
	Score        float64 `json:"score"`
	Threshold    float64 `json:"threshold"`
	Judged       bool    `json:"judged"`
	Anomalous    bool    `json:"anomalous"`
	ModelVersion int     `json:"model_version"`
	WarmUpLeft   int     `json:"warm_up_left,omitempty"`
	// Relearned is true for the sample at which the model learned the service's steady new
	// behaviour as its normal.
	Relearned bool `json:"relearned,omitempty"`
	// Explanation names, for an anomaly, the metrics that drove its score.
	Explanation []incident.Contribution `json:"explanation,omitempty"`
}

// IncidentEvent is one change of an incident: what correlate, escalate and resolve emit and
// persist delivers to Kafka (see incident.Event).
type IncidentEvent = incident.Event

// ResolutionCheck is the ticker's message: check open incidents as of wall-clock time Now.
// Whether a service's data stopped is judged against what the broker holds: Pending maps each
// partition of the input (of Partitions) that still has samples on their way to correlation
// to the broker's receipt time of the oldest of them, so a service on a lagging partition is
// judged as of that time, not as of Now. BacklogUnknown means the broker could not be asked;
// no service is then judged stale.
type ResolutionCheck struct {
	Now            time.Time           `json:"now"`
	Pending        map[int32]time.Time `json:"pending,omitempty"`
	Partitions     int32               `json:"partitions,omitempty"`
	BacklogUnknown bool                `json:"backlog_unknown,omitempty"`
}

// heardUpTo returns the time up to which every sample of service the broker received has
// been correlated: Now, or the oldest pending sample's receipt on the service's partition
// (on any partition, when partitionOf is nil).
func (c ResolutionCheck) heardUpTo(service string, partitionOf func(string, int32) int32) time.Time {
	heard := c.Now
	for p, at := range c.Pending {
		if (partitionOf == nil || p == partitionOf(service, c.Partitions)) && at.Before(heard) {
			heard = at
		}
	}
	return heard
}

var idSpace = uuid.MustParse("6f1c2a8e-4b7d-5e0f-9a3c-2d8e1b7f4c60")

// sampleID names a sample by service and event time, so the same sample always gets the
// same message id, however often it is delivered.
func sampleID(service string, at time.Time) string {
	return uuid.NewSHA1(idSpace, []byte("sample|"+service+"|"+at.UTC().Format(time.RFC3339Nano))).String()
}

// incidentID names an incident by service and first anomaly, so replaying a stream gives the
// same incident ids.
func incidentID(service string, firstSeen time.Time) string {
	return uuid.NewSHA1(idSpace, []byte("incident|"+service+"|"+firstSeen.UTC().Format(time.RFC3339Nano))).String()
}

// eventsFor builds the events of timeline entries just saved.
func eventsFor(entries []incident.Entry) []IncidentEvent {
	out := make([]IncidentEvent, 0, len(entries))
	for _, e := range entries {
		s := e.After
		ev := IncidentEvent{
			EventID:    uuid.NewSHA1(idSpace, fmt.Appendf(nil, "event|%s|%s|%s|%d|%s", s.ID, e.Kind, e.At.UTC().Format(time.RFC3339Nano), e.Details.Occurrences, e.Details.To)).String(),
			IncidentID: s.ID, Service: s.Service, Event: e.Kind, OccurredAt: e.At,
			Severity: s.Severity.String(), Status: s.Status.String(), OccurrenceCount: s.Occurrences,
			FirstSeen: s.FirstSeen, LastSeen: s.LastSeen, EpisodeStart: s.EpisodeStart,
			PeakExcess: s.PeakExcess, Reopens: s.Reopens, AckedBy: s.AckedBy, Details: e.Details,
		}
		if !s.ResolvedAt.IsZero() {
			r := s.ResolvedAt
			ev.ResolvedAt = &r
		}
		if !s.AckedAt.IsZero() {
			a := s.AckedAt
			ev.AckedAt = &a
		}
		out = append(out, ev)
	}
	return out
}

// encodeBatch encodes the samples of one message: a lone one as an object, several as an
// array.
func encodeBatch[T any](items []T) ([]byte, error) {
	if len(items) == 1 {
		return fastjson.Marshal(items[0])
	}
	return fastjson.Marshal(items)
}

// decodeBatch decodes the samples of one message (see encodeBatch); a message without any is
// poisoned.
func decodeBatch[T any](payload []byte, what string) ([]T, error) {
	if !isArray(payload) {
		one, err := decodeJSON[T](payload, what)
		return []T{one}, err
	}
	items, err := decodeJSON[[]T](payload, what+" batch")
	if err == nil && len(items) == 0 {
		err = Permanent(fmt.Errorf("decode %s batch: no samples", what))
	}
	return items, err
}

// isArray reports whether a JSON payload is an array (a batch), not an object (one sample).
func isArray(payload []byte) bool {
	trimmed := bytes.TrimLeft(payload, " \t\r\n") // JSON's whitespace
	return len(trimmed) > 0 && trimmed[0] == '['
}

// ReceivedAt returns when the broker received the input message of a decoded or scored
// sample, or of a batch of them (the same for each), false when the payload does not say.
func ReceivedAt(payload []byte) (time.Time, bool) {
	items, err := decodeBatch[DecodedSample](payload, "decoded sample")
	if err != nil || items[0].ReceivedAt.IsZero() {
		return time.Time{}, false
	}
	return items[0].ReceivedAt, true
}

// batchID names the message of a batch of service's samples from first to last (sampleID
// for a lone sample), the same however often it is delivered.
func batchID(service string, first, last time.Time, n int) string {
	if n == 1 {
		return sampleID(service, first)
	}
	return uuid.NewSHA1(idSpace, fmt.Appendf(nil, "batch|%s|%s|%s|%d", service, first.UTC().Format(time.RFC3339Nano), last.UTC().Format(time.RFC3339Nano), n)).String()
}

func decodeJSON[T any](payload []byte, what string) (T, error) {
	var v T
	if err := fastjson.Unmarshal(payload, &v); err != nil {
		return v, Permanent(fmt.Errorf("decode %s: %w", what, err))
	}
	return v, nil
}
