package handlers

// PendingInBatch reports how many samples wait for the correlate stage's next batch.
func (h *CorrelateHandler[T]) PendingInBatch() int {
	h.batch.mu.Lock()
	defer h.batch.mu.Unlock()
	return len(h.batch.pending)
}

// PendingInBatch reports how many samples wait for the record stage's next batch.
func (h *RecordHandler) PendingInBatch() int {
	h.batch.mu.Lock()
	defer h.batch.mu.Unlock()
	return len(h.batch.pending)
}
