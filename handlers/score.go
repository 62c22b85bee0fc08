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

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/incident-engine/engine/domain/detect"
	"github.com/incident-engine/engine/domain/incident"
)

// ModelRegistry stores trained models, so that a restarted worker, or one that takes over a
// service after a Kafka rebalance, scores at once instead of warming up again.
// infra/postgres.Models is the real one.
type ModelRegistry interface {
	// Latest returns the service's newest model, false when it has none.
	Latest(ctx context.Context, service string) (detect.Model, bool, error)
	// Save stores a model; saving the same service and version twice is harmless.
	Save(ctx context.Context, m detect.Model) error
}

// ExplainTop is the number of metrics an anomaly's explanation names at most; it names those
// with at least 1% of the share.
const ExplainTop = 5

// ScoreHandler is the score stage: each service's samples are judged by that service's own
// Isolation Forest (domain/detect). A service's first samples train its model (the warm-up)
// and pass on unjudged; later samples carry a score, the service's calibrated threshold,
// whether they are anomalous, the model version, and for anomalies the metrics that drove
// the score with their shares. Models are retrained on a schedule by the detector; every new
// model goes to the registry, and a service seen for the first time starts from the
// registry's latest model when there is one.
type ScoreHandler struct {
	cfg      detect.Config
	registry ModelRegistry
	logger   *slog.Logger
	metrics  Metrics

	mu        sync.Mutex
	detectors map[string]*serviceDetector
}

type serviceDetector struct {
	mu     sync.Mutex
	d      *detect.Detector
	shares []float64
}

// NewScoreHandler returns the score stage, or an error when cfg is invalid. registry may be
// nil: models then live in memory only.
func NewScoreHandler(cfg detect.Config, registry ModelRegistry, logger *slog.Logger) (*ScoreHandler, error) {
	if _, err := detect.New("check", cfg); err != nil {
		return nil, err
	}
	return &ScoreHandler{cfg: cfg, registry: registry, logger: logger, detectors: make(map[string]*serviceDetector)}, nil
}

func (h *ScoreHandler) detector(ctx context.Context, service string) (*serviceDetector, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if sd, ok := h.detectors[service]; ok {
		return sd, nil
	}
	d, err := detect.New(service, h.cfg)
	if err != nil {
		return nil, err
	}
	if h.registry != nil {
		m, ok, err := h.registry.Latest(ctx, service)
		if err != nil {
			return nil, err
		}
		if ok {
			if err := d.Restore(m); err != nil {
				// A model that cannot be restored is not fatal: the service warms up again.
				h.logger.Error("stored model unusable, warming up again", "stage", "score", "service", service, "version", m.Version, "err", err)
			} else {
				h.logger.Info("model loaded from the registry", "stage", "score", "service", service, "version", m.Version)
			}
		}
	}
	sd := &serviceDetector{d: d}
	h.detectors[service] = sd
	return sd, nil
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
	sd, err := h.detector(msg.Context(), s.Service)
	if err != nil {
		return nil, err
	}
	sd.mu.Lock()
	res, err := sd.d.Observe(s)
	var explanation []incident.Contribution
	if err == nil && res.Anomalous {
		explanation = sd.explain()
	}
	var model detect.Model
	var modelErr error
	if err == nil && res.Trained && h.registry != nil {
		model, modelErr = sd.d.Model()
	}
	sd.mu.Unlock()
	if errors.Is(err, detect.ErrOutOfOrder) {
		// A redelivery of a sample already passed on (after a rebalance, say) or a sample that
		// came too late to judge in order: correlation would ignore it either way.
		h.logger.Warn("sample older than the service's last one ignored", "stage", "score", "service", s.Service, "timestamp", s.At)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("score %s: %w", s.Service, err)
	}
	if res.Trained && h.registry != nil {
		if modelErr != nil {
			return nil, modelErr
		}
		if err := h.registry.Save(msg.Context(), model); err != nil {
			return nil, err
		}
		h.logger.Info("model trained", "stage", "score", "service", s.Service, "version", model.Version, "relearned", res.Relearned,
			"rows", model.Rows, "threshold", model.Threshold, "window_from", model.WindowFrom, "window_to", model.WindowTo)
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
