package detect

import "time"

// window is a fixed-capacity ring of feature rows with their sample times. Pushing copies the
// row into preallocated storage, so the scoring path does not allocate.
type window struct {
	dims  int
	data  []float64
	ats   []time.Time
	next  int
	count int
}

func newWindow(capacity, dims int) window {
	return window{dims: dims, data: make([]float64, capacity*dims), ats: make([]time.Time, capacity)}
}

func (w *window) len() int { return w.count }

func (w *window) push(row []float64, at time.Time) {
	if len(w.ats) == 0 {
		return
	}
	copy(w.data[w.next*w.dims:(w.next+1)*w.dims], row)
	w.ats[w.next] = at
	w.next = (w.next + 1) % len(w.ats)
	w.count = min(w.count+1, len(w.ats))
}

// rows returns the rows oldest first, as fresh copies.
func (w *window) rows() [][]float64 {
	out := make([][]float64, w.count)
	start := (w.next - w.count + len(w.ats)) % len(w.ats)
	for i := range out {
		k := (start + i) % len(w.ats)
		out[i] = append([]float64(nil), w.data[k*w.dims:(k+1)*w.dims]...)
	}
	return out
}

// span returns the sample times of the oldest and newest rows.
func (w *window) span() (from, to time.Time) {
	if w.count == 0 {
		return time.Time{}, time.Time{}
	}
	start := (w.next - w.count + len(w.ats)) % len(w.ats)
	last := (w.next - 1 + len(w.ats)) % len(w.ats)
	return w.ats[start], w.ats[last]
}
