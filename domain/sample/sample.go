// Package sample defines a service's metric sample and the rules that make one valid.
//
// A Sample is what the decode stage produces from the wire format: a service name, the
// sample's own timestamp (event time) and a set of named numeric metrics. The package checks
// values and normalises names; it does not parse JSON (that is the decode stage's job) and it
// does not judge whether values are unusual (that is the detector's).
package sample

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Names of the metrics every service of the seed reports. Any other name is allowed as well.
const (
	// ErrorRate is the fraction of failed requests in the interval, in [0, 1].
	ErrorRate = "error_rate"
	// LatencyP95 is the 95th percentile of request latency in milliseconds.
	LatencyP95 = "latency_p95"
	// RequestCount is the number of requests served in the interval.
	RequestCount = "request_count"
)

// ServiceKey is the name a sample's service goes by outside the domain: its field in the
// input JSON, the message metadata key that carries it between stages, and what becomes the
// Kafka record key, so that all of one service's messages share a partition and stay in
// order. It is the one definition of that name.
const ServiceKey = "service"

// Limits on what one sample may carry.
const (
	// MaxServiceLen is the longest accepted service name, in bytes.
	MaxServiceLen = 128
	// MaxMetrics is the largest number of metrics one sample may carry.
	MaxMetrics = 64
	// MaxNameLen is the longest accepted metric name, in bytes.
	MaxNameLen = 64
)

var (
	// ErrInvalid is wrapped by every validation error: the sample can never become valid, so
	// it is a permanent error and belongs on the dead-letter topic.
	ErrInvalid = errors.New("invalid sample")
)

// Metric is one named value of a sample.
type Metric struct {
	Name  string
	Value float64
}

// Sample is one validated observation of a service at a point in event time. Metrics are
// sorted by name and unique.
type Sample struct {
	Service string
	At      time.Time
	Metrics []Metric
}

// Value returns the named metric and whether the sample carries it.
func (s Sample) Value(name string) (float64, bool) {
	i, ok := slices.BinarySearchFunc(s.Metrics, name, func(m Metric, n string) int { return strings.Compare(m.Name, n) })
	if !ok {
		return 0, false
	}
	return s.Metrics[i].Value, true
}

// Names returns the sample's metric names in order.
func (s Sample) Names() []string {
	names := make([]string, len(s.Metrics))
	for i, m := range s.Metrics {
		names[i] = m.Name
	}
	return names
}

// lastYear is the last year of a sample's timestamp (see New).
const lastYear = 2261

// New validates and normalises a sample: the service name is trimmed, the timestamp converted
// to UTC and truncated to microseconds (the database's precision), metrics sorted by name.
// Timestamps lie in the years 2000 to 2261 (UTC): earlier is a clock error, and the detector
// keeps sample times as Unix nanoseconds, which end in April 2262. Every problem found is
// reported, joined, each wrapping ErrInvalid.
func New(service string, at time.Time, metrics []Metric) (Sample, error) {
	var errs []error
	service = strings.TrimSpace(service)
	switch {
	case service == "":
		errs = append(errs, fmt.Errorf("%w: service is missing or empty", ErrInvalid))
	case len(service) > MaxServiceLen:
		errs = append(errs, fmt.Errorf("%w: service name longer than %d bytes", ErrInvalid, MaxServiceLen))
	case strings.ContainsFunc(service, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		errs = append(errs, fmt.Errorf("%w: service name contains control characters", ErrInvalid))
	}
	if at.IsZero() {
		errs = append(errs, fmt.Errorf("%w: timestamp is missing", ErrInvalid))
	} else if y := at.UTC().Year(); y < 2000 || y > lastYear {
		errs = append(errs, fmt.Errorf("%w: timestamp %s is out of range", ErrInvalid, at.UTC().Format(time.RFC3339)))
	}
	if len(metrics) == 0 {
		errs = append(errs, fmt.Errorf("%w: no metrics", ErrInvalid))
	}
	if len(metrics) > MaxMetrics {
		errs = append(errs, fmt.Errorf("%w: %d metrics, at most %d allowed", ErrInvalid, len(metrics), MaxMetrics))
	}
	out := slices.Clone(metrics)
	slices.SortFunc(out, func(a, b Metric) int { return strings.Compare(a.Name, b.Name) })
	for i, m := range out {
		if err := checkMetric(m); err != nil {
			errs = append(errs, err)
		}
		if i > 0 && out[i-1].Name == m.Name {
			errs = append(errs, fmt.Errorf("%w: metric %q appears twice", ErrInvalid, m.Name))
		}
	}
	if len(errs) > 0 {
		return Sample{}, errors.Join(errs...)
	}
	return Sample{Service: service, At: at.UTC().Truncate(time.Microsecond), Metrics: out}, nil
}

func checkMetric(m Metric) error {
	if m.Name == "" || len(m.Name) > MaxNameLen {
		return fmt.Errorf("%w: metric name %q must be 1 to %d bytes", ErrInvalid, m.Name, MaxNameLen)
	}
	for _, r := range m.Name {
		if !(r == '_' || r == '.' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return fmt.Errorf("%w: metric name %q may hold only letters, digits, '_', '.', '-'", ErrInvalid, m.Name)
		}
	}
	if math.IsNaN(m.Value) || math.IsInf(m.Value, 0) {
		return fmt.Errorf("%w: %s is not a finite number", ErrInvalid, m.Name)
	}
	switch m.Name {
	case ErrorRate:
		if m.Value < 0 || m.Value > 1 {
			return fmt.Errorf("%w: error_rate %g is outside [0,1]", ErrInvalid, m.Value)
		}
	case LatencyP95:
		if m.Value < 0 {
			return fmt.Errorf("%w: latency_p95 %g is negative", ErrInvalid, m.Value)
		}
	case RequestCount:
		if m.Value < 0 {
			return fmt.Errorf("%w: request_count %g is negative", ErrInvalid, m.Value)
		}
	}
	return nil
}

// Scored is a sample with its model's judgement, as the engine records it.
type Scored struct {
	Sample
	// Judged is false while the service's model warms up; Score and Threshold are then zero.
	Judged       bool
	Score        float64
	Threshold    float64
	Anomalous    bool
	ModelVersion int
}
