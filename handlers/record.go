package handlers

import (
	"context"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/incident-engine/engine/domain/sample"
)

// SampleStore keeps scored samples; infra/postgres.Samples is the real one.
type SampleStore interface {
	// Save stores samples; storing the same service and time again changes nothing.
	Save(ctx context.Context, batch ...sample.Scored) error
}

// RecordHandler is the record stage: it keeps every scored sample, with its score, threshold
// and flag, so the dashboard can chart a service's metrics and anomaly score around an
// incident. It runs beside correlate on the same topic, in its own consumer group, and
// decides nothing.
type RecordHandler struct {
	store SampleStore
}

// NewRecordHandler returns the record stage.
func NewRecordHandler(store SampleStore) *RecordHandler { return &RecordHandler{store: store} }

// Handle stores one scored sample.
func (h *RecordHandler) Handle(msg *message.Message) error {
	in, err := decodeJSON[ScoredSample](msg.Payload, "scored sample")
	if err != nil {
		return err
	}
	s, err := in.Sample()
	if err != nil {
		return Permanent(err)
	}
	return h.store.Save(msg.Context(), sample.Scored{
		Sample: s, Judged: in.Judged, Score: in.Score, Threshold: in.Threshold,
		Anomalous: in.Anomalous, ModelVersion: in.ModelVersion,
	})
}
