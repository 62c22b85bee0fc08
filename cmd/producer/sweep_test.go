package main

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/incident-engine/engine/domain/detect"
	"github.com/incident-engine/engine/domain/incident"
	"github.com/incident-engine/engine/domain/sample"
)

// episode is one incident opening (or reopening) in a replay.
type episode struct {
	service string
	at      time.Time
	reopen  bool
}

// replayServices runs the producer's services from start for span at one sample a minute, with
// mode injected into failing from failFrom for failFor, through the worker's detector and
// correlator with their defaults, and returns every opening and reopening.
func replayServices(t testing.TB, seed uint64, start time.Time, span time.Duration, mode Mode, failing string, failFrom time.Time, failFor time.Duration) []episode {
	t.Helper()
	names := []string{"api", "db", "auth"}
	corr, err := incident.NewCorrelator(incident.CorrelationConfig{})
	if err != nil {
		t.Fatal(err)
	}
	type state struct {
		svc *service
		d   *detect.Detector
		w   incident.Watch
		cur *incident.Incident
	}
	var states []*state
	for _, n := range names {
		d, err := detect.New(n, detect.Config{})
		if err != nil {
			t.Fatal(err)
		}
		states = append(states, &state{svc: newService(n, seed), d: d, w: incident.NewWatch(n)})
	}
	newID := func(service string, at time.Time) string { return service + "-" + strconv.FormatInt(at.Unix(), 10) }
	var out []episode
	for i := 0; i < int(span/time.Minute); i++ {
		at := start.Add(time.Duration(i) * time.Minute)
		for _, st := range states {
			bad := st.svc.name == failing && !at.Before(failFrom) && at.Before(failFrom.Add(failFor))
			m := st.svc.sample(at, time.Minute, mode, bad)
			smp, err := sample.New(st.svc.name, at, []sample.Metric{
				{Name: sample.ErrorRate, Value: m.ErrorRate}, {Name: sample.LatencyP95, Value: m.LatencyP95}, {Name: sample.RequestCount, Value: m.RequestCount},
			})
			if err != nil {
				t.Fatal(err)
			}
			res, err := st.d.Observe(smp)
			if err != nil {
				t.Fatal(err)
			}
			reopens := -1
			if st.cur != nil {
				reopens = st.cur.Reopens()
			}
			inc, err := corr.Observe(&st.w, st.cur, incident.Observation{
				At: at, ReceivedAt: at, Score: res.Score, Threshold: res.Threshold, Judged: res.Judged, Anomalous: res.Anomalous, ModelVersion: res.ModelVersion,
			}, newID)
			if err != nil {
				t.Fatal(err)
			}
			if inc != nil && inc.Status() == incident.StatusOpen && (inc != st.cur || inc.Reopens() != reopens) {
				out = append(out, episode{st.svc.name, at, inc == st.cur})
			}
			if inc != nil {
				st.cur = inc
			}
			if err := corr.Settle(&st.w, st.cur); err != nil {
				t.Fatal(err)
			}
		}
	}
	return out
}

// TestHealthyTrafficAtEveryHour replays a day and a half of the producer's healthy services
// starting at each of the 24 hours, with several seeds: a warm-up that sees only part of the
// daily cycle, at any hour, must open nothing.
func TestHealthyTrafficAtEveryHour(t *testing.T) {
	t.Parallel()
	day := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	for h := range 24 {
		for _, seed := range []uint64{1, 2, 3} {
			t.Run(fmt.Sprintf("%02dh-seed%d", h, seed), func(t *testing.T) {
				t.Parallel()
				got := replayServices(t, seed, day.Add(time.Duration(h)*time.Hour+40*time.Minute), 36*time.Hour, ModeNone, "", time.Time{}, 0)
				for _, e := range got {
					t.Errorf("healthy traffic opened an incident: %s at %s (reopen %v)", e.service, e.at.Format("Jan 2 15:04"), e.reopen)
				}
			})
		}
	}
}

// TestFailuresAtEveryHour injects each of the producer's failure modes for an hour into api,
// 300 samples after the start (just after the warm-up), starting at every third hour of the
// day: each opens exactly one incident, on api, within five minutes of the failure's start,
// and nothing else opens.
func TestFailuresAtEveryHour(t *testing.T) {
	t.Parallel()
	day := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	for _, mode := range []Mode{ModeLatency, ModeErrors, ModeMeltdown, ModeCollapse} {
		for h := 0; h < 24; h += 3 {
			t.Run(fmt.Sprintf("%s-%02dh", mode, h), func(t *testing.T) {
				t.Parallel()
				start := day.Add(time.Duration(h)*time.Hour + 20*time.Minute)
				failFrom := start.Add(300 * time.Minute)
				got := replayServices(t, 7, start, 12*time.Hour, mode, "api", failFrom, time.Hour)
				if len(got) != 1 || got[0].service != "api" || got[0].reopen {
					t.Fatalf("%s at %s: openings %+v, want one incident on api", mode, failFrom.Format("15:04"), got)
				}
				if d := got[0].at.Sub(failFrom); d < 0 || d > 5*time.Minute {
					t.Errorf("%s: incident opened %s after the failure began, want within 5m", mode, d)
				}
			})
		}
	}
}

// TestSingleMetricFailuresAreExplainedByTheirMetric replays the producer's failures that
// touch one metric and checks the explanations of the failing samples: the failing metric
// gets at least 80% of the share, the metrics that did not move next to nothing.
func TestSingleMetricFailuresAreExplainedByTheirMetric(t *testing.T) {
	t.Parallel()
	cases := []struct {
		mode   Mode
		metric string
	}{
		{ModeLatency, sample.LatencyP95},
		{ModeErrors, sample.ErrorRate},
		{ModeCollapse, sample.RequestCount},
	}
	for _, tc := range cases {
		t.Run(string(tc.mode), func(t *testing.T) {
			t.Parallel()
			start := time.Date(2026, 11, 2, 7, 20, 0, 0, time.UTC)
			svc := newService("api", 3)
			d, err := detect.New("api", detect.Config{})
			if err != nil {
				t.Fatal(err)
			}
			names := d.Features()
			shares := make([]float64, 3)
			failFrom := start.Add(300 * time.Minute)
			var sum float64
			n := 0
			for i := range 420 {
				at := start.Add(time.Duration(i) * time.Minute)
				m := svc.sample(at, time.Minute, tc.mode, !at.Before(failFrom) && at.Before(failFrom.Add(time.Hour)))
				smp, err := sample.New("api", at, []sample.Metric{
					{Name: sample.ErrorRate, Value: m.ErrorRate}, {Name: sample.LatencyP95, Value: m.LatencyP95}, {Name: sample.RequestCount, Value: m.RequestCount},
				})
				if err != nil {
					t.Fatal(err)
				}
				r, err := d.Observe(smp)
				if err != nil {
					t.Fatal(err)
				}
				names = d.Features()
				if !r.Anomalous || at.Before(failFrom) || !d.Explain(shares) {
					continue
				}
				for k, name := range names {
					if name == tc.metric {
						sum += shares[k]
					}
				}
				n++
			}
			if n < 30 {
				t.Fatalf("%d anomalous samples in an hour of %s, want most of the 60", n, tc.mode)
			}
			mean := sum / float64(n)
			t.Logf("%s failure: %s gets %.3f of the explanation on average over %d anomalies", tc.mode, tc.metric, mean, n)
			if mean < 0.8 {
				t.Errorf("%s failure: %s gets %.2f of the explanation on average over %d anomalies, want at least 0.8", tc.mode, tc.metric, mean, n)
			}
		})
	}
}
