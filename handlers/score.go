package handlers

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/incident-engine/engine/domain/detect"
)

// ScoreHandler is the score stage: each service's samples are judged by that service's own
// Isolation Forest (domain/detect). The first samples of a service train its model (the
// warm-up) and are passed on unjudged; later samples carry a score, the service's calibrated
// threshold and whether they are anomalous. Models live in memory.
type ScoreHandler struct {
	cfg    detect.Config
	logger *slog.Logger

	mu        sync.Mutex
	detectors map[string]*serviceDetector
}

type serviceDetector struct {
	mu sync.Mutex
	d  *detect.Detector
}

// NewScoreHandler returns the score stage, or an error when cfg is invalid.
func NewScoreHandler(cfg detect.Config, logger *slog.Logger) (*ScoreHandler, error) {
	if _, err := detect.New("check", cfg); err != nil {
		return nil, err
	}
	return &ScoreHandler{cfg: cfg, logger: logger, detectors: make(map[string]*serviceDetector)}, nil
}

func (h *ScoreHandler) detector(service string) (*serviceDetector, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if sd, ok := h.detectors[service]; ok {
		return sd, nil
	}
	d, err := detect.New(service, h.cfg)
	if err != nil {
		return nil, err
	}
	sd := &serviceDetector{d: d}
	h.detectors[service] = sd
	return sd, nil
}

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
	sd, err := h.detector(s.Service)
	if err != nil {
		return nil, err
	}
	sd.mu.Lock()
	res, err := sd.d.Observe(s)
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
	out := ScoredSample{
		DecodedSample: in, Score: res.Score, Threshold: res.Threshold, Judged: res.Judged,
		Anomalous: res.Anomalous, ModelVersion: res.ModelVersion, WarmUpLeft: res.WarmUpLeft,
	}
	payload, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("encode scored sample: %w", err)
	}
	m := message.NewMessage(sampleID(s.Service, s.At), payload)
	m.Metadata.Set(MetadataService, s.Service)
	return []*message.Message{m}, nil
}
