package detect

import (
	"math"
	"slices"
	"time"
)

// window is a ring of at most capacity of the latest feature rows with their sample times,
// each marked when it is left out of training (an anomaly and its aftermath). Once full it
// can thin out what it takes (see push), so that its rows span more time than its capacity
// of consecutive samples would. Its storage grows with the rows it holds, doubling up to the
// capacity, so a service that has sent little holds little; once grown, pushing copies the
// row into place and the scoring path does not allocate. Sample times are kept as Unix
// nanoseconds (a third of a time.Time's bytes) and read back in UTC.
//
// A row is kept in half the bytes of its float64 values: each value as a float32 offset from
// a reference per dimension (the first row's values, then the training medians: see rebase).
// A float32 keeps 24 bits, so a value is off by at most one part in 16 million of its
// distance from the reference, never of its magnitude: a large counter whose variation lies
// below a float32's resolution at its size keeps that variation. An offset beyond ±3.4e38
// (float32's range, which the forest's thresholds keep to as well) is kept at that bound.
type window struct {
	dims     int
	capacity int
	ref      []float64 // per dimension: what the offsets are from
	data     []float32 // offsets from ref, row after row
	ats      []int64   // Unix nanoseconds; noTime in a slot no row has reached (see fill)
	out      []bool    // left out of training
	next     int
	count    int
	clean    int // rows not left out
	last     time.Time
}

// noTime marks a slot of a filled window that holds no row yet (see fill).
const noTime = math.MinInt64

func newWindow(capacity, dims int) window { return window{dims: dims, capacity: capacity} }

func (w *window) len() int { return w.count }

// push appends a row, dropping the oldest when full; leaveOut marks it as not for training.
// Once the window is full, a row less than gap after the last one taken is not taken.
func (w *window) push(row []float64, at time.Time, leaveOut bool, gap time.Duration) {
	if w.capacity == 0 || (w.count == w.capacity && at.Sub(w.last) < gap) {
		return
	}
	w.last = at
	if len(w.ats) < w.capacity {
		// Still growing: the rows are in order, the next one goes at the end.
		if len(w.ats) == cap(w.ats) {
			w.grow(min(w.capacity, max(64, 2*len(w.ats))))
		}
		if w.ref == nil {
			w.ref = append([]float64(nil), row...)
		}
		for j, v := range row {
			w.data = append(w.data, offset(v, w.ref[j]))
		}
		w.ats = append(w.ats, at.UnixNano())
		w.out = append(w.out, leaveOut)
		if !leaveOut {
			w.clean++
		}
		w.count++
		w.next = w.count % w.capacity
		return
	}
	if w.count == len(w.ats) && !w.out[w.next] {
		w.clean--
	}
	w.store(w.next, row)
	w.ats[w.next] = at.UnixNano()
	w.out[w.next] = leaveOut
	if !leaveOut {
		w.clean++
	}
	w.next = (w.next + 1) % len(w.ats)
	w.count = min(w.count+1, len(w.ats))
}

// store writes row into slot i, as offsets from the reference.
func (w *window) store(i int, row []float64) {
	dst := w.data[i*w.dims : (i+1)*w.dims]
	for j, v := range row {
		dst[j] = offset(v, w.ref[j])
	}
}

// offset returns v's offset from ref as a float32, at most ±math.MaxFloat32 (3.4e38) away,
// as far as the forest's own thresholds reach.
func offset(v, ref float64) float32 {
	return float32(max(-math.MaxFloat32, min(math.MaxFloat32, v-ref)))
}

// rebase makes ref the reference the rows are kept from, rewriting every row: the training
// calls it with the medians it learned, so the offsets stay small as a metric's level moves.
func (w *window) rebase(ref []float64) {
	if w.ref == nil {
		return // no row yet: the first one sets the reference
	}
	for i, ns := range w.ats {
		if ns == noTime {
			continue // an empty slot of a restored window stays zero, as saved
		}
		for j, off := range w.data[i*w.dims : (i+1)*w.dims] {
			w.data[i*w.dims+j] = offset(w.ref[j]+float64(off), ref[j])
		}
	}
	copy(w.ref, ref)
}

// grow gives the window room for rows rows, keeping those it holds.
func (w *window) grow(rows int) {
	w.data = append(make([]float32, 0, rows*w.dims), w.data...)
	w.ats = append(make([]int64, 0, rows), w.ats...)
	w.out = append(make([]bool, 0, rows), w.out...)
}

// fill extends the storage to the whole capacity, the empty slots zero: the layout a saved
// state holds.
func (w *window) fill() {
	if n := len(w.ats); n < w.capacity {
		w.grow(w.capacity)
		w.data = w.data[:w.capacity*w.dims]
		w.ats = w.ats[:w.capacity]
		w.out = w.out[:w.capacity]
		for i := n; i < w.capacity; i++ {
			w.ats[i] = noTime
		}
	}
}

// slot returns the ring index of the k-th oldest row.
func (w *window) slot(k int) int {
	return (w.next - w.count + k + 2*len(w.ats)) % len(w.ats)
}

// value returns dimension j of the k-th oldest row.
func (w *window) value(k, j int) float64 {
	return w.ref[j] + float64(w.data[w.slot(k)*w.dims+j])
}

// row returns a copy of the k-th oldest row.
func (w *window) row(k int) []float64 { return w.rowAt(w.slot(k)) }

// rowAt returns a copy of the row in slot i.
func (w *window) rowAt(i int) []float64 {
	row := make([]float64, w.dims)
	for j, off := range w.data[i*w.dims : (i+1)*w.dims] {
		row[j] = w.ref[j] + float64(off)
	}
	return row
}

// at returns the sample time of the k-th oldest row.
func (w *window) at(k int) time.Time { return timeOf(w.ats[w.slot(k)]) }

// timeOf returns the time of a slot's Unix nanoseconds, in UTC (the zero time for noTime).
func timeOf(ns int64) time.Time {
	if ns == noTime {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

// trainingRows returns copies of the rows not left out, oldest first, and their first and
// last sample times.
func (w *window) trainingRows() (rows [][]float64, from, to time.Time) {
	rows = make([][]float64, 0, w.clean)
	for k := range w.count {
		i := w.slot(k)
		if w.out[i] {
			continue
		}
		if len(rows) == 0 {
			from = timeOf(w.ats[i])
		}
		to = timeOf(w.ats[i])
		rows = append(rows, w.rowAt(i))
	}
	return rows, from, to
}

// since returns the index of the oldest row at or after t (w.len() if none).
func (w *window) since(t time.Time) int {
	k, ns := w.count, t.UnixNano()
	for k > 0 && w.ats[w.slot(k-1)] >= ns {
		k--
	}
	return k
}

// admit makes every row at or after t a training row.
func (w *window) admit(t time.Time) {
	for k := w.since(t); k < w.count; k++ {
		if i := w.slot(k); w.out[i] {
			w.out[i] = false
			w.clean++
		}
	}
}

// spacing returns the median time between consecutive rows (0 with fewer than two).
func (w *window) spacing() time.Duration {
	if w.count < 2 {
		return 0
	}
	gaps := make([]time.Duration, w.count-1)
	for k := range gaps {
		gaps[k] = time.Duration(w.ats[w.slot(k+1)] - w.ats[w.slot(k)])
	}
	slices.Sort(gaps)
	return gaps[len(gaps)/2]
}
