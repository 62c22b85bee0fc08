package handlers

// Metrics receives what the stages count; infra/metrics.Engine exports it to Prometheus. A
// stage without one counts nothing.
type Metrics interface {
	// Decoded counts a sample that passed decode.
	Decoded(service string)
	// Scored counts a scored sample, with its score when a model judged it.
	Scored(service string, score float64, judged, anomalous bool)
	// Delivered counts a notification outcome.
	Delivered(receiver string, ok bool)
}

type noMetrics struct{}

func (noMetrics) Decoded(string)                     {}
func (noMetrics) Scored(string, float64, bool, bool) {}
func (noMetrics) Delivered(string, bool)             {}

func metricsOrNone(m Metrics) Metrics {
	if m == nil {
		return noMetrics{}
	}
	return m
}
