package handlers

// PendingInBatch reports how many messages wait for the correlate stage's next batch.
func (h *CorrelateHandler[T]) PendingInBatch() int { return h.batch.waiting() }

// DecodedBatch decodes the samples of a decoded-sample message, one or a batch.
func DecodedBatch(payload []byte) ([]DecodedSample, error) {
	return decodeBatch[DecodedSample](payload, "decoded sample")
}
