package handlers

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/incident-engine/engine/domain/detect"
	"github.com/incident-engine/engine/domain/incident"
	"github.com/incident-engine/engine/domain/sample"
)

// ModelRegistry stores trained models, so that a restarted worker, or one that takes over a
// service after a Kafka rebalance, scores at once instead of warming up again.
// infra/postgres.Models is the real one.
type ModelRegistry interface {
	// Latest returns the service's newest model, false when it has none.
	Latest(ctx context.Context, service string) (detect.Model, bool, error)
	// Version returns one stored model of the service, false when the registry no longer
	// has it (old versions are pruned).
	Version(ctx context.Context, service string, version int) (detect.Model, bool, error)
	// Save stores a model; saving the same service and version twice is harmless.
	Save(ctx context.Context, m detect.Model) error
}

// DetectorStates keeps each service's detector state (detect.Detector.MarshalState) with the
// position of the last sample it includes, so that a restarted worker, or one that takes a
// service over after a Kafka rebalance, continues exactly where the last one stopped.
// infra/postgres.DetectorStates is the real one.
type DetectorStates interface {
	// Load returns the service's latest saved state, false when it has none.
	Load(ctx context.Context, service string) (DetectorState, bool, error)
	// Save stores a state unless one of a later position on the same partition is stored.
	Save(ctx context.Context, st DetectorState) error
}

// DetectorState is one service's saved detector state and the position in the score stage's
// input of the last sample it includes (Offset -1 for none: the service's first sample is the
// next one).
type DetectorState struct {
	Service string
	At      Position
	State   []byte
}

// Position is where a message sits in the score stage's input topic.
type Position struct {
	Partition int32
	Offset    int64
}

// SampleLog reads back the score stage's input (infra/kafka.PartitionLog).
type SampleLog interface {
	// Read returns the messages of partition at offsets from up to, not including, to, in
	// order, each with its service's metadata.
	Read(ctx context.Context, partition int32, from, to int64) ([]*message.Message, error)
}

// Durability makes the score stage's judgements survive a crash or a rebalance. Each
// service's detector state is saved every CheckpointEvery samples, and at its first sample,
// always covering samples whose output has already been published (the previous sample of a
// partition is acknowledged before the next one arrives). A worker that meets a service it
// does not hold, or finds that its partition moved on without it, restores the saved state
// and replays the samples after it from the input topic into the detector, so its next
// judgement is exactly the one an uninterrupted worker would make; a redelivered sample the
// state already includes is passed over, since its output was published.
type Durability struct {
	States DetectorStates
	Log    SampleLog
	// Position returns where a message sits in the input topic (infra/kafka.Position).
	Position func(*message.Message) (Position, bool)
	// CheckpointEvery is how many of a service's samples pass between two saves of its
	// state (default 256): the most a restore replays per service.
	CheckpointEvery int
	// IdleAfter is how long (wall clock) a service may send nothing before its detector is
	// saved and dropped from memory (default 30m); its next sample restores it exactly. Memory
	// follows the services that are sending, not every service ever seen.
	IdleAfter time.Duration
	// MaxServices caps the detectors held in memory (default 1,000, about 0.22 GB: an active
	// service of three metrics holds about 0.22 MB, its forest half of it): past it, the
	// one used longest ago is saved and dropped to make room.
	MaxServices int
	// Now reads the wall clock for IdleAfter (default time.Now): eviction manages memory and
	// decides nothing, so it may.
	Now func() time.Time
}

// ExplainTop is the number of metrics an anomaly's explanation names at most; it names those
// with at least 1% of the share.
const ExplainTop = 5

// ScoreHandler is the score stage: each service's samples are judged by that service's own
// Isolation Forest (domain/detect). A service's first samples train its model (the warm-up)
// and pass on unjudged; later samples carry a score, the service's calibrated threshold,
// whether they are anomalous, the model version, and for anomalies the metrics that drove
// the score with their shares. Models are retrained on a schedule by the detector; every new
// model goes to the registry. With Durability the detector's whole state is saved and
// restored (see Durability); without it a service seen for the first time starts from the
// registry's latest model when there is one.
type ScoreHandler struct {
	cfg      detect.Config
	registry ModelRegistry
	logger   *slog.Logger
	metrics  Metrics
	durable  Durability

	mu        sync.Mutex
	detectors map[string]*serviceDetector
	// reached is, per input partition, the latest offset this handler judged: a message
	// beyond the next one means another worker judged the ones between.
	reached map[int32]int64
	// handled counts messages, for the sweep of idle detectors every idleSweepEvery.
	handled int
}

// idleSweepEvery is how many messages pass between two sweeps of idle detectors.
const idleSweepEvery = 256

type serviceDetector struct {
	mu      sync.Mutex
	service string
	d       *detect.Detector
	shares  []float64
	// at is the position of the last sample in d's state, unsaved the samples since.
	at      Position
	placed  bool
	unsaved int
	// used is when (wall clock) the detector was last asked for, for eviction; guarded by
	// the handler's mu.
	used time.Time
}

// NewScoreHandler returns the score stage, or an error when cfg is invalid. registry may be
// nil: models then live in memory only.
func NewScoreHandler(cfg detect.Config, registry ModelRegistry, logger *slog.Logger) (*ScoreHandler, error) {
	if _, err := detect.New("check", cfg); err != nil {
		return nil, err
	}
	return &ScoreHandler{cfg: cfg, registry: registry, logger: logger, detectors: make(map[string]*serviceDetector), reached: make(map[int32]int64)}, nil
}

// SetDurability makes the stage save and restore its detectors' state (see Durability); it
// needs a model registry, and is called before the stage handles its first message.
func (h *ScoreHandler) SetDurability(d Durability) error {
	if d.CheckpointEvery == 0 {
		d.CheckpointEvery = 256
	}
	if d.IdleAfter == 0 {
		d.IdleAfter = 30 * time.Minute
	}
	if d.MaxServices == 0 {
		d.MaxServices = 1_000
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.States == nil || d.Log == nil || d.Position == nil || d.CheckpointEvery < 1 || d.IdleAfter < 0 || d.MaxServices < 1 || h.registry == nil {
		return errors.New("score: durability needs states, a sample log, positions, a model registry, a positive checkpoint interval and service cap")
	}
	h.durable = d
	return nil
}

// detector returns the service's detector. A service this handler does not hold is restored
// from its saved state (with the samples after it replayed) or from the registry's latest
// model, or starts its warm-up.
func (h *ScoreHandler) detector(ctx context.Context, service string, at Position, hasAt bool) (*serviceDetector, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.durable.States != nil {
		if h.handled++; h.handled%idleSweepEvery == 0 {
			if err := h.evictIdle(ctx); err != nil {
				return nil, err
			}
		}
	}
	if hasAt {
		if last, ok := h.reached[at.Partition]; ok && at.Offset > last+1 {
			// Another worker judged this partition's samples between: what is held of its
			// services is behind them.
			for name, sd := range h.detectors {
				if sd.placed && sd.at.Partition == at.Partition {
					delete(h.detectors, name)
				}
			}
		}
		h.reached[at.Partition] = max(at.Offset, h.reached[at.Partition])
	}
	if sd, ok := h.detectors[service]; ok {
		sd.used = h.now()
		return sd, nil
	}
	if h.durable.States != nil && len(h.detectors) >= h.durable.MaxServices {
		if err := h.evictOldest(ctx); err != nil {
			return nil, err
		}
	}
	d, err := detect.New(service, h.cfg)
	if err != nil {
		return nil, err
	}
	sd := &serviceDetector{service: service, d: d, used: h.now()}
	restored := false
	if h.durable.States != nil && hasAt {
		if restored, err = h.restore(ctx, sd, at); err != nil {
			return nil, err
		}
	}
	if !restored && h.registry != nil {
		if err := h.latestModel(ctx, sd.d, service); err != nil {
			return nil, err
		}
	}
	h.detectors[service] = sd
	return sd, nil
}

// evictOldest saves and drops the detector used longest ago. The caller holds h.mu.
func (h *ScoreHandler) evictOldest(ctx context.Context) error {
	var oldest *serviceDetector
	for _, sd := range h.detectors {
		if oldest == nil || sd.used.Before(oldest.used) {
			oldest = sd
		}
	}
	if oldest == nil {
		return nil
	}
	return h.evict(ctx, oldest)
}

// evictIdle saves and drops the detectors idle for IdleAfter. The caller holds h.mu.
func (h *ScoreHandler) evictIdle(ctx context.Context) error {
	cutoff := h.durable.Now().Add(-h.durable.IdleAfter)
	for _, sd := range h.detectors {
		if sd.used.Before(cutoff) {
			if err := h.evict(ctx, sd); err != nil {
				return err
			}
		}
	}
	return nil
}

// evict saves sd's state, when it holds samples not saved yet, and drops it; its service's
// next sample restores it. The state covers only published samples: the detector's last
// sample was handled, and acknowledged, before whatever made it the one to go.
func (h *ScoreHandler) evict(ctx context.Context, sd *serviceDetector) error {
	sd.mu.Lock()
	defer sd.mu.Unlock()
	if sd.placed && sd.unsaved > 0 {
		if err := h.save(ctx, sd.service, sd); err != nil {
			return err
		}
	}
	delete(h.detectors, sd.service)
	return nil
}

// now reads the eviction clock (see Durability.Now); zero without durability.
func (h *ScoreHandler) now() time.Time {
	if h.durable.Now == nil {
		return time.Time{}
	}
	return h.durable.Now()
}

// Active returns how many services' detectors the stage holds in memory.
func (h *ScoreHandler) Active() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.detectors)
}

// latestModel installs the registry's latest model of the service, if it has a usable one.
func (h *ScoreHandler) latestModel(ctx context.Context, d *detect.Detector, service string) error {
	m, ok, err := h.registry.Latest(ctx, service)
	if err != nil || !ok {
		return err
	}
	if err := d.Restore(m); err != nil {
		// A model that cannot be restored is not fatal: the service warms up again.
		h.logger.Error("stored model unusable, warming up again", "stage", "score", "service", service, "version", m.Version, "err", err)
		return nil
	}
	h.logger.Info("model loaded from the registry", "stage", "score", "service", service, "version", m.Version)
	return nil
}

// restore brings sd to the state an uninterrupted worker would have just before the sample at
// at: the saved state, then the service's samples after it replayed from the input. It
// reports false when the service has no usable saved state; its first sample is then marked
// as such, so a later restore knows nothing comes before it.
func (h *ScoreHandler) restore(ctx context.Context, sd *serviceDetector, at Position) (bool, error) {
	service := sd.service
	st, ok, err := h.durable.States.Load(ctx, service)
	if err != nil {
		return false, err
	}
	if !ok {
		sd.at, sd.placed = Position{Partition: at.Partition, Offset: at.Offset - 1}, true
		return false, h.save(ctx, service, sd)
	}
	model := func(version int) (detect.Model, error) {
		m, ok, err := h.registry.Version(ctx, service, version)
		if err == nil && !ok {
			// Pruned: the state cannot be continued exactly; start from the latest model.
			err = fmt.Errorf("%w: model v%d of %s is no longer stored", detect.ErrStateMismatch, version, service)
		}
		return m, err
	}
	if err := sd.d.RestoreState(st.State, model); err != nil {
		if !errors.Is(err, detect.ErrStateMismatch) {
			return false, err
		}
		// Saved under another configuration, say: start again from the latest model.
		h.logger.Error("saved detector state unusable, starting from the latest model", "stage", "score", "service", service, "err", err)
		sd.at, sd.placed, sd.unsaved = at, false, h.durable.CheckpointEvery
		return false, nil
	}
	sd.at, sd.placed = st.At, true
	if st.At.Partition != at.Partition {
		// The topic was repartitioned: offsets of the old partition say nothing here.
		h.logger.Warn("saved detector state is of another partition, nothing replayed", "stage", "score", "service", service,
			"saved_partition", st.At.Partition, "partition", at.Partition)
		sd.at = Position{Partition: at.Partition, Offset: at.Offset - 1}
		return true, nil
	}
	var msgs []*message.Message
	if st.At.Offset+1 < at.Offset {
		if msgs, err = h.durable.Log.Read(ctx, at.Partition, st.At.Offset+1, at.Offset); err != nil {
			return false, fmt.Errorf("replay %s from offset %d: %w", service, st.At.Offset+1, err)
		}
	}
	replayed := 0
	for _, m := range msgs {
		if m.Metadata.Get(MetadataService) != service {
			continue
		}
		in, err := decodeJSON[DecodedSample](m.Payload, "decoded sample")
		if err != nil {
			continue // dead-lettered when it came: it changed nothing
		}
		s, err := in.Sample()
		if err != nil {
			continue
		}
		res, err := sd.d.Observe(s)
		if errors.Is(err, detect.ErrOutOfOrder) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("replay %s: %w", service, err)
		}
		if res.Trained {
			if err := h.saveModel(ctx, sd.d, res); err != nil {
				return false, err
			}
		}
		sd.unsaved++
		replayed++
	}
	if st.At.Offset+1 < at.Offset {
		sd.at = Position{Partition: at.Partition, Offset: at.Offset - 1}
	}
	h.logger.Info("detector state restored", "stage", "score", "service", service, "offset", st.At.Offset, "replayed", replayed)
	return true, nil
}

// save stores sd's state at its position.
func (h *ScoreHandler) save(ctx context.Context, service string, sd *serviceDetector) error {
	if err := h.durable.States.Save(ctx, DetectorState{Service: service, At: sd.at, State: sd.d.MarshalState()}); err != nil {
		return err
	}
	sd.unsaved = 0
	return nil
}

// saveModel stores the model the detector has just trained.
func (h *ScoreHandler) saveModel(ctx context.Context, d *detect.Detector, res detect.Result) error {
	model, err := d.Model()
	if err != nil {
		return err
	}
	if err := h.registry.Save(ctx, model); err != nil {
		return err
	}
	h.logger.Info("model trained", "stage", "score", "service", model.Service, "version", model.Version, "relearned", res.Relearned,
		"rows", model.Rows, "threshold", model.Threshold, "window_from", model.WindowFrom, "window_to", model.WindowTo)
	return nil
}

// SetMetrics makes the stage count scored samples and their scores; nil counts nothing.
func (h *ScoreHandler) SetMetrics(m Metrics) { h.metrics = m }

// Handle scores one decoded sample. A redelivered sample gets the same judgement again; a
// sample older than the service's last one is dropped with a warning.
func (h *ScoreHandler) Handle(msg *message.Message) ([]*message.Message, error) {
	in, err := decodeJSON[DecodedSample](msg.Payload, "decoded sample")
	if err != nil {
		return nil, err
	}
	s, err := in.Sample()
	if err != nil {
		return nil, Permanent(err)
	}
	var at Position
	var hasAt bool
	if h.durable.Position != nil {
		at, hasAt = h.durable.Position(msg)
	}
	ctx := msg.Context()
	sd, err := h.detector(ctx, s.Service, at, hasAt)
	if err != nil {
		return nil, err
	}
	sd.mu.Lock()
	defer sd.mu.Unlock()
	if hasAt && sd.placed && at.Partition == sd.at.Partition {
		if at.Offset < sd.at.Offset {
			// Redelivered after a restart: the state includes it and its output was published.
			return nil, nil
		}
		if last, ok := sd.d.Last(); ok && at.Offset > sd.at.Offset && !s.At.After(last) {
			// Not a redelivery (those are at an offset the state holds): a sample not after
			// its service's latest, a second run of a producer under the same names, say. It
			// cannot be judged in order, and it must not rewrite what was recorded at that
			// time: it goes to the dead letters with the reason rather than vanishing.
			sd.at = at
			return nil, lateSample(s, last)
		}
		// The previous sample's output is published (it was acknowledged before this one
		// came), so a state that includes it is safe to save.
		if at.Offset > sd.at.Offset && sd.unsaved >= h.durable.CheckpointEvery {
			if err := h.save(ctx, s.Service, sd); err != nil {
				return nil, err
			}
		}
	}
	res, err := sd.d.Observe(s)
	var explanation []incident.Contribution
	if err == nil && res.Anomalous {
		explanation = sd.explain()
	}
	if hasAt && (err == nil || errors.Is(err, detect.ErrOutOfOrder)) && at.Offset != sd.at.Offset {
		sd.at, sd.placed = at, true
		sd.unsaved++
	}
	if errors.Is(err, detect.ErrOutOfOrder) {
		if hasAt {
			// Not a redelivery (those are passed over by their offset), as above.
			last, _ := sd.d.Last()
			return nil, lateSample(s, last)
		}
		// Without positions a redelivery (after a rebalance, say) looks the same: correlation
		// would ignore it either way.
		h.logger.Warn("sample older than the service's last one ignored", "stage", "score", "service", s.Service, "timestamp", s.At)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("score %s: %w", s.Service, err)
	}
	if res.Trained && h.registry != nil {
		if err := h.saveModel(ctx, sd.d, res); err != nil {
			return nil, err
		}
	}
	out := ScoredSample{
		DecodedSample: in, Score: res.Score, Threshold: res.Threshold, Judged: res.Judged,
		Anomalous: res.Anomalous, ModelVersion: res.ModelVersion, WarmUpLeft: res.WarmUpLeft,
		Relearned: res.Relearned, Explanation: explanation,
	}
	payload, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("encode scored sample: %w", err)
	}
	m := message.NewMessage(sampleID(s.Service, s.At), payload)
	m.Metadata.Set(MetadataService, s.Service)
	metricsOrNone(h.metrics).Scored(s.Service, res.Score, res.Judged, res.Anomalous)
	return []*message.Message{m}, nil
}

// lateSample is the dead-letter reason of a sample not after its service's last one.
func lateSample(s sample.Sample, last time.Time) error {
	return Permanent(fmt.Errorf("%w: %s at %s is not after the service's last sample (%s): %w", sample.ErrInvalid,
		s.Service, s.At.Format(time.RFC3339), last.Format(time.RFC3339), detect.ErrOutOfOrder))
}

// explain returns the top metrics of the sample just observed, largest share first.
func (sd *serviceDetector) explain() []incident.Contribution {
	names := sd.d.Features()
	if len(sd.shares) != len(names) {
		sd.shares = make([]float64, len(names))
	}
	if !sd.d.Explain(sd.shares) {
		return nil
	}
	out := make([]incident.Contribution, len(names))
	for i, n := range names {
		out[i] = incident.Contribution{Metric: n, Share: sd.shares[i]}
	}
	slices.SortStableFunc(out, func(a, b incident.Contribution) int { return cmp.Compare(b.Share, a.Share) })
	// Metrics with no share in it are not part of the explanation; the first always is.
	n := 1
	for n < min(ExplainTop, len(out)) && out[n].Share >= minShare {
		n++
	}
	return out[:n]
}

// minShare is the smallest share an explanation names a metric for (1%).
const minShare = 0.01
