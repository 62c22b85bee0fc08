package handlers

import (
	"cmp"
	"context"
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
// service's detector state is saved once CheckpointEvery samples passed, at the start of a
// message, and at its first sample, always covering whole messages whose output has already
// been published (the previous message of a partition is acknowledged before the next one
// arrives). A worker that meets a service it does not hold, or finds that its partition moved
// on without it, restores the saved state and replays the messages after it from the input
// topic into the detector, so its next judgement is exactly the one an uninterrupted worker
// would make; a redelivered message the state already includes is passed over, since its
// output was published.
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
	// MaxServices caps the detectors held in memory (default 1,000, about 0.17 GB: an active
	// service of three metrics holds about 0.17 MB, its forest of 64 trees 74 KB of it): past it, the
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
	// handled counts samples, for the sweep of idle detectors every idleSweepEvery; swept is
	// its count at the last sweep.
	handled, swept int
}

// idleSweepEvery is how many samples pass between two sweeps of idle detectors.
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
	// judging is the message being judged, or the last one judged.
	judging judging
}

// judging is the scored samples of one message: all of them once it is judged (its output,
// given again should it be redelivered before the next message), those judged so far while an
// attempt failed part way through it (a model it trained could not be saved, say).
type judging struct {
	key  messageKey
	open bool
	outs []ScoredSample
}

// messageKey tells one message of the input from another.
type messageKey struct {
	id    string
	at    Position
	hasAt bool
}

// NewScoreHandler returns the score stage, or an error when cfg is invalid. registry may be
// nil: models then live in memory only.
func NewScoreHandler(cfg detect.Config, registry ModelRegistry, logger *slog.Logger) (*ScoreHandler, error) {
	if _, err := detect.New("check", cfg); err != nil {
		return nil, err
	}
	return &ScoreHandler{cfg: cfg, registry: registry, logger: logger, detectors: make(map[string]*serviceDetector), reached: make(map[int32]int64)}, nil
}

// DefaultCheckpointEvery is Durability.CheckpointEvery unless set: how many of a service's
// samples pass between two saves of its state.
const DefaultCheckpointEvery = 256

// SetDurability makes the stage save and restore its detectors' state (see Durability); it
// needs a model registry, and is called before the stage handles its first message.
func (h *ScoreHandler) SetDurability(d Durability) error {
	if d.CheckpointEvery == 0 {
		d.CheckpointEvery = DefaultCheckpointEvery
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
// model, or starts its warm-up. n is the number of samples the caller is to judge.
func (h *ScoreHandler) detector(ctx context.Context, service string, at Position, hasAt bool, n int) (*serviceDetector, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.durable.States != nil {
		if h.handled += n; h.handled-h.swept >= idleSweepEvery {
			h.swept = h.handled
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
	// A detector part way through a message is not saved: its state includes samples of a
	// message after its position. Its service's next sample restores an earlier state and
	// replays up to that message, which is then judged whole.
	if sd.placed && sd.unsaved > 0 && !sd.judging.open {
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
		_, samples, err := decodedSamples(m.Payload)
		if err != nil {
			continue // dead-lettered when it came: it changed nothing
		}
		if _, late := sd.late(samples[0]); late {
			continue // dead-lettered when it came, as above
		}
		for _, s := range samples {
			res, err := sd.d.Observe(s)
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

// Handle scores one message of decoded samples, a lone sample or a batch of one service's,
// each judged in turn, into one message of scored samples (see encodeBatch). A message whose
// first sample is not after the service's last one is late: it goes to the dead letters whole,
// as it came. A redelivered message gets the same judgements again, or, once the saved state
// includes it (its output was published), nothing.
func (h *ScoreHandler) Handle(msg *message.Message) ([]*message.Message, error) {
	ins, samples, err := decodedSamples(msg.Payload)
	if err != nil {
		return nil, err
	}
	var at Position
	var hasAt bool
	if h.durable.Position != nil {
		at, hasAt = h.durable.Position(msg)
	}
	ctx := msg.Context()
	sd, err := h.detector(ctx, samples[0].Service, at, hasAt, len(samples))
	if err != nil {
		return nil, err
	}
	sd.mu.Lock()
	defer sd.mu.Unlock()
	j := &sd.judging
	if key := (messageKey{id: msg.UUID, at: at, hasAt: hasAt}); j.key != key {
		if done, err := h.begin(ctx, sd, samples[0], at, hasAt); done || err != nil {
			return nil, err
		}
		*j = judging{key: key, open: true, outs: j.outs[:0]}
	} else if !j.open {
		// Handled before, its output perhaps not published: the same again.
		return h.scoredMessage(j.outs)
	}
	// An attempt that failed part way through the message resumes at its first sample without
	// an output: that one, if the detector took it, is judged again as its last (the same
	// result again, see detect.Detector.Observe), so a model it trained is saved this time.
	for i := len(j.outs); i < len(samples); i++ {
		s := samples[i]
		res, err := sd.d.Observe(s)
		if err != nil {
			return nil, fmt.Errorf("score %s: %w", s.Service, err)
		}
		sd.unsaved++
		if res.Trained && h.registry != nil {
			if err := h.saveModel(ctx, sd.d, res); err != nil {
				return nil, err
			}
		}
		var explanation []incident.Contribution
		if res.Anomalous {
			explanation = sd.explain()
		}
		j.outs = append(j.outs, ScoredSample{
			DecodedSample: ins[i], Score: res.Score, Threshold: res.Threshold, Judged: res.Judged,
			Anomalous: res.Anomalous, ModelVersion: res.ModelVersion, WarmUpLeft: res.WarmUpLeft,
			Relearned: res.Relearned, Explanation: explanation,
		})
		metricsOrNone(h.metrics).Scored(s.Service, res.Score, res.Judged, res.Anomalous)
	}
	j.open = false
	if hasAt {
		sd.at, sd.placed = at, true
	}
	return h.scoredMessage(j.outs)
}

// begin readies sd for a message whose first sample is first, at position at: it reports
// done for a message that is not to be judged, a redelivery the saved state includes or, with
// an error, a late one; and saves sd's state when it is due.
func (h *ScoreHandler) begin(ctx context.Context, sd *serviceDetector, first sample.Sample, at Position, hasAt bool) (done bool, err error) {
	inPlace := hasAt && sd.placed && at.Partition == sd.at.Partition
	if inPlace && at.Offset <= sd.at.Offset {
		// Redelivered after a restart: the state includes it and its output was published.
		return true, nil
	}
	if last, late := sd.late(first); late {
		if !hasAt {
			// Without positions a redelivery (after a rebalance, say) looks the same:
			// correlation would ignore it either way.
			h.logger.Warn("sample older than the service's last one ignored", "stage", "score", "service", first.Service, "timestamp", first.At)
			return true, nil
		}
		// Not a redelivery (those are at an offset the state holds): a sample not after its
		// service's latest, a second run of a producer under the same names, say. It cannot be
		// judged in order, and it must not rewrite what was recorded at that time: it goes to
		// the dead letters with the reason rather than vanishing.
		sd.at, sd.placed = at, true
		return true, lateSample(first, last)
	}
	// The previous message's output is published (it was acknowledged before this one came),
	// so a state that includes it is safe to save.
	if inPlace && sd.unsaved >= h.durable.CheckpointEvery {
		if err := h.save(ctx, first.Service, sd); err != nil {
			return true, err
		}
	}
	return false, nil
}

// late reports whether a message whose first sample is first comes too late to be judged: it
// is not after the last sample sd judged, returned.
func (sd *serviceDetector) late(first sample.Sample) (time.Time, bool) {
	last, ok := sd.d.Last()
	return last, ok && !first.At.After(last)
}

// scoredMessage is the message of one input message's scored samples.
func (h *ScoreHandler) scoredMessage(outs []ScoredSample) ([]*message.Message, error) {
	payload, err := encodeBatch(outs)
	if err != nil {
		return nil, fmt.Errorf("encode scored sample: %w", err)
	}
	service, first, last := outs[0].Service, outs[0].Timestamp, outs[len(outs)-1].Timestamp
	m := message.NewMessage(batchID(service, first, last, len(outs)), payload)
	m.Metadata.Set(MetadataService, service)
	return []*message.Message{m}, nil
}

// decodedSamples decodes a message of decoded samples: one, or a batch of one service's in
// time order.
func decodedSamples(payload []byte) ([]DecodedSample, []sample.Sample, error) {
	ins, err := decodeBatch[DecodedSample](payload, "decoded sample")
	if err != nil {
		return nil, nil, err
	}
	samples, err := samplesOf(ins)
	if err != nil {
		return nil, nil, Permanent(err)
	}
	return ins, samples, nil
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
