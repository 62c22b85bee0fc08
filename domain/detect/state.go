package detect

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/incident-engine/engine/domain/forest"
	"github.com/incident-engine/engine/domain/sample"
)

// ErrStateMismatch is returned by RestoreState for a state saved for another service or under
// another configuration (a different warm-up, retraining window, context or Shape), which this
// detector cannot continue exactly.
var ErrStateMismatch = errors.New("detector state does not fit this detector")

// Binary form of a detector's state (little-endian): "DSTA", format version, then every field
// the detector's judgements depend on, in the order MarshalState writes them. The forest is not
// in it: the state names its model's version, and RestoreState takes the model from the
// registry, which stores every version. Version 2 keeps a window's rows as they are held: a
// reference per dimension and float32 offsets from it (see window); version 1, whose rows
// were float64 values, is still read, each window's rows then kept from its oldest row.
const (
	stateMagic   = "DSTA"
	stateVersion = 2
)

// MarshalState encodes everything the detector's future judgements depend on: its warm-up or
// retraining window, the recent rows, count levels and metric history, its calibration with
// every live value in arrival order, the recent surprises, its schedule and its last result.
// A detector restored from it (RestoreState) judges the samples that follow exactly as this
// one would. It allocates the encoding.
func (d *Detector) MarshalState() []byte { return d.marshalState(stateVersion) }

// marshalState encodes the state in format version.
func (d *Detector) marshalState(version int) []byte {
	e := stateEncoder{version: version}
	e.b = append(e.b, stateMagic...)
	e.u64(uint64(version))
	e.str(d.service)
	e.bool(d.hasFirst)
	e.time(d.lastAt)
	e.result(d.lastRes)
	e.u64(uint64(d.version))
	e.u64(uint64(len(d.names)))
	for _, n := range d.names {
		e.str(n)
	}
	if len(d.names) == 0 {
		return e.b
	}
	// The sizes a configuration gives, checked on restore.
	for _, n := range []int{len(d.owner), len(d.hist), d.win.capacity, d.recent.capacity, len(d.recentMean.v)} {
		e.u64(uint64(n))
	}
	e.floats(d.typical)
	e.floats(d.fast)
	e.floats(d.level)
	e.bool(d.hasLvl)
	e.floats(d.hist)
	e.u64(uint64(d.histPos))
	e.u64(uint64(d.histLen))
	for _, w := range []*window{&d.win, &d.recent} {
		e.window(w)
	}
	e.bool(d.model != nil)
	e.calibration(&d.cal)
	e.floats(d.surprise)
	e.floats(d.x)
	e.time(d.trainedAt)
	e.time(d.trainSpan[0])
	e.time(d.trainSpan[1])
	e.u64(uint64(d.trainRows))
	e.time(d.lastAnom)
	e.f64(d.evidence)
	e.f64(d.alarm)
	e.time(d.alarmFrom)
	e.floats(d.recentMean.v)
	e.u64(uint64(d.recentMean.next))
	e.u64(uint64(d.recentMean.n))
	e.f64(d.recentMean.sum)
	return e.b
}

// RestoreState replaces the detector's state with one MarshalState saved, for this service and
// under the same configuration. model returns the stored model of a version (with its
// forest); it is called once, when the state had a trained model.
func (d *Detector) RestoreState(state []byte, model func(version int) (Model, error)) error {
	var next Detector
	next.service, next.cfg = d.service, d.cfg
	if err := next.decodeState(state, model); err != nil {
		return err
	}
	*d = next
	return nil
}

// decodeState fills d, whose service and cfg are set, from state.
func (d *Detector) decodeState(state []byte, model func(version int) (Model, error)) error {
	dec := stateDecoder{b: state}
	if !dec.header() {
		return fmt.Errorf("%w: not a detector state", ErrStateMismatch)
	}
	if svc := dec.str(); svc != d.service {
		return fmt.Errorf("%w: saved for %q, restored into %q", ErrStateMismatch, svc, d.service)
	}
	d.hasFirst = dec.bool()
	d.lastAt = dec.time()
	d.lastRes = dec.result()
	d.version = int(dec.u64())
	names := make([]string, min(dec.u64(), 1<<16))
	for i := range names {
		names[i] = dec.str()
	}
	if dec.err != nil {
		return dec.err
	}
	if len(names) == 0 {
		return dec.end()
	}
	ms := metricsNamed(names)
	d.reset(ms)
	want := []int{len(d.owner), len(d.hist), d.win.capacity, d.recent.capacity, len(d.recentMean.v)}
	if got := dec.sizes(5); dec.err != nil || !slices.Equal(got, want) {
		return fmt.Errorf("%w: sizes %v saved, this configuration makes %v", ErrStateMismatch, got, want)
	}
	dec.floatsInto(d.typical)
	dec.floatsInto(d.fast)
	dec.floatsInto(d.level)
	d.hasLvl = dec.bool()
	dec.floatsInto(d.hist)
	d.histPos, d.histLen = dec.int(len(d.hist)/max(1, len(names))), dec.int(len(d.hist)/max(1, len(names)))
	for _, w := range []*window{&d.win, &d.recent} {
		dec.window(w)
	}
	hasModel := dec.bool()
	dec.calibration(&d.cal)
	dec.floatsInto(d.surprise)
	dec.floatsInto(d.x)
	d.trainedAt = dec.time()
	d.trainSpan = [2]time.Time{dec.time(), dec.time()}
	d.trainRows = dec.int(math.MaxInt32)
	d.lastAnom = dec.time()
	d.evidence = dec.f64()
	d.alarm = dec.f64()
	d.alarmFrom = dec.time()
	dec.floatsInto(d.recentMean.v)
	d.recentMean.next = dec.int(len(d.recentMean.v) - 1)
	d.recentMean.n = dec.int(len(d.recentMean.v))
	d.recentMean.sum = dec.f64()
	if err := dec.end(); err != nil {
		return err
	}
	if !hasModel {
		return nil
	}
	if model == nil {
		return fmt.Errorf("%w: the state has model v%d and no registry was given", ErrStateMismatch, d.version)
	}
	m, err := model(d.version)
	if err != nil {
		return fmt.Errorf("model v%d of %s for its state: %w", d.version, d.service, err)
	}
	if m.Service != d.service || m.Version != d.version || !slices.Equal(m.Features, d.names) {
		return fmt.Errorf("%w: model %s v%d does not match the state's v%d", ErrStateMismatch, m.Service, m.Version, d.version)
	}
	var f forest.Forest
	if err := f.UnmarshalBinary(m.Forest); err != nil {
		// Unreadable, it cannot be continued: the caller starts again from what it can read.
		return fmt.Errorf("%w: model %s v%d for its state: %w", ErrStateMismatch, m.Service, m.Version, err)
	}
	if f.Dims() != len(d.owner) {
		return fmt.Errorf("%w: model %s v%d has %d features, the state %d", ErrStateMismatch, m.Service, m.Version, f.Dims(), len(d.owner))
	}
	d.model = &f
	return nil
}

// metricsNamed returns metrics with these names and no values, to size a detector by.
func metricsNamed(names []string) []sample.Metric {
	ms := make([]sample.Metric, len(names))
	for i, name := range names {
		ms[i] = sample.Metric{Name: name}
	}
	return ms
}

// stateEncoder appends a state's fields in the format version (0: stateVersion; the tests
// write version 1 to check that it is still read).
type stateEncoder struct {
	b       []byte
	version int
}

func (e *stateEncoder) u64(v uint64)  { e.b = binary.LittleEndian.AppendUint64(e.b, v) }
func (e *stateEncoder) f64(v float64) { e.u64(math.Float64bits(v)) }
func (e *stateEncoder) f32(v float32) {
	e.b = binary.LittleEndian.AppendUint32(e.b, math.Float32bits(v))
}
func (e *stateEncoder) bool(v bool) {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}
func (e *stateEncoder) str(s string) { e.u64(uint64(len(s))); e.b = append(e.b, s...) }
func (e *stateEncoder) time(t time.Time) {
	e.bool(t.IsZero())
	if !t.IsZero() {
		e.u64(uint64(t.UnixNano()))
	}
}
func (e *stateEncoder) floats(v []float64) {
	e.u64(uint64(len(v)))
	for _, x := range v {
		e.f64(x)
	}
}
func (e *stateEncoder) result(r Result) {
	e.f64(r.Score)
	e.f64(r.Threshold)
	e.bool(r.Judged)
	e.bool(r.Anomalous)
	e.u64(uint64(r.ModelVersion))
	e.u64(uint64(r.WarmUpLeft))
	e.bool(r.Trained)
	e.bool(r.Relearned)
}
func (e *stateEncoder) window(w *window) {
	// The whole capacity, the slots a growing window has not reached yet zero: the layout
	// does not depend on how much storage the window holds.
	pad := w.capacity - len(w.ats)
	if e.version == 1 {
		e.u64(uint64(w.capacity * w.dims))
		for i, off := range w.data {
			if w.ref == nil {
				e.f64(0) // no row yet
			} else {
				e.f64(w.ref[i%w.dims] + float64(off))
			}
		}
		for range pad * w.dims {
			e.f64(0)
		}
	} else {
		e.floats(w.ref)
		e.u64(uint64(w.capacity * w.dims))
		for _, x := range w.data {
			e.f32(x)
		}
		for range pad * w.dims {
			e.f32(0)
		}
	}
	for _, ns := range w.ats {
		e.time(timeOf(ns))
	}
	for range pad {
		e.time(time.Time{})
	}
	for _, o := range w.out {
		e.bool(o)
	}
	for range pad {
		e.bool(false)
	}
	e.u64(uint64(w.next))
	e.u64(uint64(w.count))
	e.u64(uint64(w.clean))
	e.time(w.last)
}
func (e *stateEncoder) calibration(c *calibration) {
	e.floats(c.median)
	e.floats(c.floor)
	for _, t := range c.tails {
		e.floats(t.d[:])
		e.u64(uint64(t.knots))
		e.f64(t.beta)
		e.f64(t.shape)
	}
	e.floats(c.lo)
	e.floats(c.hi)
	e.u64(uint64(c.step))
	for _, em := range []*empirical{&c.scores, &c.single, &c.means} {
		e.u64(uint64(em.n))
		for _, v := range em.ring[:em.n] {
			e.f64(float64(v))
		}
		e.u64(uint64(em.next))
	}
}

// stateDecoder reads what stateEncoder wrote; the first problem sticks in err.
type stateDecoder struct {
	b       []byte
	version uint64 // of the format, read by header
	err     error
}

func (d *stateDecoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrStateMismatch, fmt.Sprintf(format, args...))
	}
}

func (d *stateDecoder) header() bool {
	if len(d.b) < len(stateMagic)+8 || string(d.b[:len(stateMagic)]) != stateMagic {
		return false
	}
	d.b = d.b[len(stateMagic):]
	d.version = d.u64()
	return d.version == 1 || d.version == stateVersion
}

func (d *stateDecoder) u64() uint64 {
	if len(d.b) < 8 {
		d.fail("truncated")
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

// int reads a count that must lie in [0, limit].
func (d *stateDecoder) int(limit int) int {
	v := d.u64()
	if v > uint64(max(0, limit)) {
		d.fail("value %d beyond %d", v, limit)
		return 0
	}
	return int(v)
}

func (d *stateDecoder) f64() float64 { return math.Float64frombits(d.u64()) }

func (d *stateDecoder) f32() float32 {
	if len(d.b) < 4 {
		d.fail("truncated")
		return 0
	}
	v := math.Float32frombits(binary.LittleEndian.Uint32(d.b))
	d.b = d.b[4:]
	return v
}

func (d *stateDecoder) bool() bool {
	if len(d.b) < 1 || d.b[0] > 1 {
		d.fail("bad flag")
		return false
	}
	v := d.b[0] == 1
	d.b = d.b[1:]
	return v
}

func (d *stateDecoder) str() string {
	n := d.u64()
	if n > uint64(len(d.b)) {
		d.fail("truncated string")
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *stateDecoder) time() time.Time {
	if d.bool() {
		return time.Time{}
	}
	return time.Unix(0, int64(d.u64())).UTC()
}

func (d *stateDecoder) sizes(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = d.int(1 << 30)
	}
	return out
}

// floatsInto reads a slice of exactly len(dst) values into dst.
func (d *stateDecoder) floatsInto(dst []float64) {
	if n := d.u64(); n != uint64(len(dst)) {
		d.fail("%d values where %d fit", n, len(dst))
		return
	}
	for i := range dst {
		dst[i] = d.f64()
	}
}

// floatsUpTo reads a slice of at most limit values.
func (d *stateDecoder) floatsUpTo(limit int) []float64 {
	n := d.int(limit)
	out := make([]float64, n)
	for i := range out {
		out[i] = d.f64()
	}
	return out
}

func (d *stateDecoder) result() Result {
	return Result{
		Score: d.f64(), Threshold: d.f64(), Judged: d.bool(), Anomalous: d.bool(),
		ModelVersion: int(d.u64()), WarmUpLeft: d.int(1 << 30), Trained: d.bool(), Relearned: d.bool(),
	}
}

func (d *stateDecoder) window(w *window) {
	w.fill()
	var values []float64 // version 1: the rows' values
	if d.version == 1 {
		values = make([]float64, len(w.data))
		d.floatsInto(values)
	} else {
		if ref := d.floatsUpTo(w.dims); len(ref) == w.dims {
			w.ref = ref
		} else if len(ref) != 0 {
			d.fail("a reference of %d values for %d dimensions", len(ref), w.dims)
		}
		if n := d.u64(); n != uint64(len(w.data)) {
			d.fail("%d values where %d fit", n, len(w.data))
		}
		for i := range w.data {
			w.data[i] = d.f32()
		}
	}
	for i := range w.ats {
		if t := d.time(); t.IsZero() {
			w.ats[i] = noTime
		} else {
			w.ats[i] = t.UnixNano()
		}
	}
	for i := range w.out {
		w.out[i] = d.bool()
	}
	w.next = d.int(max(0, len(w.ats)-1))
	w.count = d.int(len(w.ats))
	w.clean = d.int(w.count)
	w.last = d.time()
	if values != nil {
		d.convertRows(w, values)
	}
	if d.err == nil && w.ref == nil && w.count > 0 {
		d.fail("a window of %d rows without a reference", w.count)
	}
}

// convertRows keeps a version-1 window's row values as offsets from its oldest row's.
func (d *stateDecoder) convertRows(w *window, values []float64) {
	if w.count == 0 || d.err != nil {
		return
	}
	first := w.slot(0)
	w.ref = slices.Clone(values[first*w.dims : (first+1)*w.dims])
	for i, ns := range w.ats {
		if ns != noTime {
			w.store(i, values[i*w.dims:(i+1)*w.dims])
		}
	}
}

func (d *stateDecoder) calibration(c *calibration) {
	d.floatsInto(c.median)
	d.floatsInto(c.floor)
	for j := range c.tails {
		t := &c.tails[j]
		d.floatsInto(t.d[:])
		t.knots = d.int(tailKnots)
		t.beta = d.f64()
		t.shape = d.f64()
	}
	d.floatsInto(c.lo)
	d.floatsInto(c.hi)
	c.step = time.Duration(d.int(math.MaxInt64))
	for _, em := range []*empirical{&c.scores, &c.single, &c.means} {
		vs := d.floatsUpTo(em.size)
		next := d.int(max(0, em.size-1))
		// The ring holds float32 numbers, never NaN (add drops it), and fills in order: a
		// value no float32 is, or a position a filling ring cannot have, was not written by
		// the encoder (and would not be written back as read).
		for _, v := range vs {
			if math.IsNaN(v) || float64(float32(v)) != v {
				d.fail("a calibration value %v that its float32 ring cannot hold", v)
			}
		}
		if len(vs) < em.size && next != len(vs) {
			d.fail("a calibration ring of %d values at position %d", len(vs), next)
		}
		em.seed(vs)
		em.next = next
	}
}

func (d *stateDecoder) end() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d bytes left over", len(d.b))
	}
	return d.err
}
