package handlers

// PendingInBatch reports how many samples wait for the correlate stage's next batch.
func (h *CorrelateHandler[T]) PendingInBatch() int { return h.batch.waiting() }
