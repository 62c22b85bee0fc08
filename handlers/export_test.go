package handlers

// PendingInBatch reports how many samples wait for the correlate stage's next batch.
func (h *CorrelateHandler[T]) PendingInBatch() int { return h.batch.waiting() }

// PendingInBatch reports how many samples wait for the record stage's next batch.
func (h *RecordHandler) PendingInBatch() int { return h.batch.waiting() }
