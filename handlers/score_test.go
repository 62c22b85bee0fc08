package handlers_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/incident-engine/engine/domain/detect"
	"github.com/incident-engine/engine/handlers"
)

const testWarmUp = 32

var scoreStart = time.Date(2026, 11, 26, 17, 0, 0, 0, time.UTC)

func newScoreHandler(t testing.TB) *handlers.ScoreHandler {
	t.Helper()
	h, err := handlers.NewScoreHandler(detect.Config{WarmUp: testWarmUp}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// decodedMsg builds decode's output for one sample, as the score stage receives it.
func decodedMsg(t testing.TB, service string, at time.Time, metrics map[string]float64) *message.Message {
	t.Helper()
	payload, err := json.Marshal(handlers.DecodedSample{Service: service, Timestamp: at, Metrics: metrics, ReceivedAt: at})
	if err != nil {
		t.Fatal(err)
	}
	m := message.NewMessage("decoded-"+service+"-"+at.Format(time.RFC3339), payload)
	m.Metadata.Set(handlers.MetadataService, service)
	return m
}

// normalMetrics returns a healthy sample of the seed's shape, varied by rng.
func normalMetrics(rng *rand.Rand) map[string]float64 {
	return map[string]float64{
		"error_rate":    0.01 + 0.004*rng.Float64(),
		"latency_p95":   175 + 15*rng.Float64(),
		"request_count": float64(1000 + rng.IntN(80)),
	}
}

// meltdown is far outside anything the warm-up saw.
var meltdown = map[string]float64{"error_rate": 0.95, "latency_p95": 9000, "request_count": 3}

// score runs one message through h and returns its single output.
func score(t *testing.T, h *handlers.ScoreHandler, in *message.Message) (handlers.ScoredSample, *message.Message) {
	t.Helper()
	out, err := h.Handle(in)
	if err != nil {
		t.Fatalf("score %s: %v", in.UUID, err)
	}
	if len(out) != 1 {
		t.Fatalf("score %s: got %d messages, want 1", in.UUID, len(out))
	}
	return decodeBody[handlers.ScoredSample](t, out[0].Payload), out[0]
}

// warmUp feeds a service the warm-up samples, one a minute from scoreStart, checking each
// comes out unjudged with the warm-up count going down. It returns the time of the last one.
func warmUp(t *testing.T, h *handlers.ScoreHandler, service string, rng *rand.Rand) time.Time {
	t.Helper()
	var at time.Time
	for i := 1; i <= testWarmUp; i++ {
		at = scoreStart.Add(time.Duration(i) * time.Minute)
		got, _ := score(t, h, decodedMsg(t, service, at, normalMetrics(rng)))
		if got.Judged || got.Anomalous {
			t.Fatalf("%s warm-up sample %d: judged=%v anomalous=%v, want an unjudged sample", service, i, got.Judged, got.Anomalous)
		}
		// The last warm-up sample trains the model and reports 0 left.
		if want := testWarmUp - i; got.WarmUpLeft != want {
			t.Fatalf("%s warm-up sample %d: %d left, want %d", service, i, got.WarmUpLeft, want)
		}
		if wantModel := i / testWarmUp; got.ModelVersion != wantModel {
			t.Fatalf("%s warm-up sample %d: model version %d, want %d", service, i, got.ModelVersion, wantModel)
		}
		if got.Service != service || !got.Timestamp.Equal(at) {
			t.Fatalf("%s warm-up sample %d: carries %s at %s", service, i, got.Service, got.Timestamp)
		}
	}
	return at
}

func TestScoreWarmsUpThenJudges(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	h := newScoreHandler(t)
	last := warmUp(t, h, "api", rng)

	cases := []struct {
		name          string
		reason        string
		settle        int // normal samples sent first
		metrics       map[string]float64
		wantAnomalous bool
	}{
		{"normal sample", "a sample like the warm-up is judged and healthy", 0, normalMetrics(rng), false},
		{"another normal sample", "the model keeps judging normal traffic healthy", 0, normalMetrics(rng), false},
		{"meltdown", "errors, latency and traffic far from normal are anomalous", 0, meltdown, true},
		{"normal again", "one anomaly does not poison the model: once the evidence of the last ten samples has passed, normal is normal", 12, normalMetrics(rng), false},
	}
	at := last
	for _, tc := range cases { // sequential: each case is the next sample of the same model
		for range tc.settle {
			at = at.Add(time.Minute)
			score(t, h, decodedMsg(t, "api", at, normalMetrics(rng)))
		}
		at = at.Add(time.Minute)
		got, out := score(t, h, decodedMsg(t, "api", at, tc.metrics))
		if !got.Judged || got.ModelVersion != 1 || got.WarmUpLeft != 0 {
			t.Errorf("%s: %s: judged=%v model=%d left=%d, want judged by model 1", tc.name, tc.reason, got.Judged, got.ModelVersion, got.WarmUpLeft)
		}
		if got.Anomalous != tc.wantAnomalous {
			t.Errorf("%s: %s: anomalous=%v (score %.3f, threshold %.3f), want %v", tc.name, tc.reason, got.Anomalous, got.Score, got.Threshold, tc.wantAnomalous)
		}
		if got.Threshold <= 0 || got.Threshold >= 1 || got.Score < 0 || got.Score >= 1 {
			t.Errorf("%s: score %.3f should lie in [0,1) and threshold %.3f in (0,1)", tc.name, got.Score, got.Threshold)
		}
		if out.Metadata.Get(handlers.MetadataService) != "api" {
			t.Errorf("%s: metadata service = %q", tc.name, out.Metadata.Get(handlers.MetadataService))
		}
		if !equalMetrics(got.Metrics, tc.metrics) || !got.ReceivedAt.Equal(at) {
			t.Errorf("%s: the decoded sample is not carried through: %+v", tc.name, got.DecodedSample)
		}
	}
}

func TestScoreRedeliveryGivesTheSameOutput(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	h := newScoreHandler(t)
	first := decodedMsg(t, "api", scoreStart, normalMetrics(rng))
	last := warmUp(t, h, "api", rng) // warmUp starts a minute after scoreStart
	judged := decodedMsg(t, "api", last.Add(time.Minute), meltdown)

	cases := []struct {
		name   string
		reason string
		h      *handlers.ScoreHandler
		msg    *message.Message
	}{
		{"during warm-up", "a redelivered warm-up sample must not count twice", newScoreHandler(t), first},
		{"judged sample", "a redelivered sample gets the judgement it got the first time", h, judged},
	}
	for _, tc := range cases {
		_, a := score(t, tc.h, tc.msg)
		_, b := score(t, tc.h, tc.msg.Copy())
		if a.UUID != b.UUID || !bytes.Equal(a.Payload, b.Payload) {
			t.Errorf("%s: %s:\nfirst  %s %s\nsecond %s %s", tc.name, tc.reason, a.UUID, a.Payload, b.UUID, b.Payload)
		}
	}
	// The warm-up count did not move on redelivery.
	next, _ := score(t, cases[0].h, decodedMsg(t, "api", scoreStart.Add(time.Second), normalMetrics(rng)))
	if next.WarmUpLeft != testWarmUp-2 {
		t.Errorf("after a redelivered first sample, %d warm-up samples left, want %d", next.WarmUpLeft, testWarmUp-2)
	}
}

func TestScoreServicesHaveIndependentModels(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 6))
	h := newScoreHandler(t)
	last := warmUp(t, h, "api", rng)

	got, _ := score(t, h, decodedMsg(t, "db", last.Add(time.Minute), normalMetrics(rng)))
	if got.Judged || got.WarmUpLeft != testWarmUp-1 || got.ModelVersion != 0 {
		t.Errorf("first db sample after api warmed up: judged=%v left=%d model=%d, want db's own warm-up to start", got.Judged, got.WarmUpLeft, got.ModelVersion)
	}
	// An older sample is out of order only within its own service.
	got, _ = score(t, h, decodedMsg(t, "auth", scoreStart, normalMetrics(rng)))
	if got.Judged || got.WarmUpLeft != testWarmUp-1 {
		t.Errorf("auth sample older than api's latest: judged=%v left=%d, want auth's first warm-up sample", got.Judged, got.WarmUpLeft)
	}
	got, _ = score(t, h, decodedMsg(t, "api", last.Add(2*time.Minute), normalMetrics(rng)))
	if !got.Judged {
		t.Errorf("api after db and auth started: judged=%v, want api's model untouched", got.Judged)
	}
}

func TestScoreRejectsPermanently(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		reason  string
		payload string
	}{
		{"not JSON", "decode's output is JSON; anything else is corrupt", `scored?`},
		{"wrong JSON type", "a list is not a decoded sample", `[1,2,3]`},
		{"bad timestamp", "a timestamp that does not parse cannot be ordered", `{"service":"api","timestamp":"later","metrics":{"cpu":1}}`},
		{"no service", "a sample without service has no model", `{"service":"","timestamp":"2026-11-26T17:00:00Z","metrics":{"cpu":1}}`},
		{"no metrics", "a sample without values cannot be scored", `{"service":"api","timestamp":"2026-11-26T17:00:00Z","metrics":{}}`},
		{"invalid metric", "decode's rules hold at score too", `{"service":"api","timestamp":"2026-11-26T17:00:00Z","metrics":{"error_rate":7}}`},
	}
	h := newScoreHandler(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, err := h.Handle(message.NewMessage("bad", []byte(tc.payload)))
			if !errors.Is(err, handlers.ErrPermanent) || out != nil {
				t.Errorf("%s: got %d messages and error %v, want a permanent error", tc.reason, len(out), err)
			}
		})
	}
}

func TestScoreOlderSampleIsDropped(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(9, 10))
	h := newScoreHandler(t)
	score(t, h, decodedMsg(t, "api", scoreStart.Add(time.Minute), normalMetrics(rng)))
	score(t, h, decodedMsg(t, "api", scoreStart.Add(2*time.Minute), normalMetrics(rng)))

	out, err := h.Handle(decodedMsg(t, "api", scoreStart.Add(time.Minute), normalMetrics(rng)))
	if err != nil || out != nil {
		t.Fatalf("a sample older than the service's last (a redelivery after a rebalance): got %d messages and error %v, want it dropped without error", len(out), err)
	}
	// The rejected sample changed nothing: the warm-up goes on where it was.
	got, _ := score(t, h, decodedMsg(t, "api", scoreStart.Add(3*time.Minute), normalMetrics(rng)))
	if got.WarmUpLeft != testWarmUp-3 {
		t.Errorf("after a rejected sample, %d warm-up samples left, want %d", got.WarmUpLeft, testWarmUp-3)
	}
}
