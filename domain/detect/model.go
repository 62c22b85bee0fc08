package detect

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/incident-engine/engine/domain/forest"
)

// ErrNoModel is returned by Model while the detector is still warming up.
var ErrNoModel = errors.New("no trained model yet")

// Model is a trained model as the model registry stores it: enough to score again after a
// restart or on another worker, without a new warm-up.
type Model struct {
	Service string
	Version int
	// Features names the metrics the model judges, in order; the forest's features are
	// their values and what Shape derives from them.
	Features []string
	// Threshold is the alarm level on the score's scale (see Result.Score).
	Threshold float64
	// Typical holds, per feature, the training median used for one-sided metrics.
	Typical []float64
	// TrainedAt is the sample time at which the model was trained.
	TrainedAt time.Time
	// WindowFrom and WindowTo bound the samples it was trained on; Rows counts them.
	WindowFrom, WindowTo time.Time
	Rows                 int
	// Forest is the serialized Isolation Forest (forest.MarshalBinary).
	Forest []byte
	// Calibration is what the model learned of normal behaviour besides the forest: each
	// feature's median and the tail of its deviations, the forest's normal scores, each
	// metric's training range and the sample spacing (an opaque, versioned encoding).
	Calibration []byte
}

// Model returns the detector's current model for storage.
func (d *Detector) Model() (Model, error) {
	if d.model == nil {
		return Model{}, ErrNoModel
	}
	blob, err := d.model.MarshalBinary()
	if err != nil {
		return Model{}, fmt.Errorf("serialize model of %s: %w", d.service, err)
	}
	return Model{
		Service: d.service, Version: d.version, Features: slices.Clone(d.names), Threshold: squash(d.alarm),
		Typical: slices.Clone(d.typical), TrainedAt: d.trainedAt, WindowFrom: d.trainSpan[0], WindowTo: d.trainSpan[1],
		Rows: d.trainRows, Forest: blob, Calibration: d.cal.marshal(),
	}, nil
}

// Restore installs a stored model, replacing any warm-up in progress. Samples with the
// model's feature names are scored at once; the retraining window fills again from there, and
// the forest's calibration follows live scores again once enough have come. A model stored
// without a calibration (by an older version) cannot be restored.
func (d *Detector) Restore(m Model) error {
	if m.Service != d.service {
		return fmt.Errorf("restore model of %s into the detector of %s", m.Service, d.service)
	}
	if len(m.Features) == 0 || len(m.Typical) != len(m.Features) || m.Version < 1 || !(m.Threshold > 0 && m.Threshold <= 1) {
		return fmt.Errorf("restore model %s v%d: inconsistent model", m.Service, m.Version)
	}
	var f forest.Forest
	if err := f.UnmarshalBinary(m.Forest); err != nil {
		return fmt.Errorf("restore model %s v%d: %w", m.Service, m.Version, err)
	}
	// The forest sees each metric's value and the features Shape derives from it; a model
	// stored with another shape cannot score this detector's features.
	if want := len(d.cfg.Shape.layout(d.kindsOf(m.Features))); f.Dims() != want {
		return fmt.Errorf("restore model %s v%d: forest has %d features, the %d metrics make %d", m.Service, m.Version, f.Dims(), len(m.Features), want)
	}
	cal, err := unmarshalCalibration(m.Calibration, f.Dims(), len(m.Features))
	if err != nil {
		return fmt.Errorf("restore model %s v%d: %w", m.Service, m.Version, err)
	}
	d.reset(metricsNamed(m.Features))
	copy(d.typical, m.Typical)
	d.model = &f
	d.cal = cal
	d.alarm = cal.alarmLevel(d.cfg.FalseAlarmsPerDay)
	d.version = m.Version
	d.trainedAt = m.TrainedAt
	d.trainSpan = [2]time.Time{m.WindowFrom, m.WindowTo}
	d.trainRows = m.Rows
	return nil
}
