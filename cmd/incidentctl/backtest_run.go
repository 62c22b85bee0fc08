package main

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/incident-engine/engine/domain/detect"
	"github.com/incident-engine/engine/domain/evaluate"
	"github.com/incident-engine/engine/domain/incident"
	"github.com/incident-engine/engine/domain/sample"
)

// replayed is what the detector and the correlator made of the evaluated rows of one series.
type replayed struct {
	s     *series
	first int // index in s of the first evaluated row

	score, threshold []float64
	anomalous, open  []bool
	top              []string // the explanation of each anomalous row, "m7:0.41;m3:0.22"
	openings         []int    // evaluated rows at which an incident opened or reopened
	spans            []evaluate.Segment
	observe          time.Duration // time spent in Detector.Observe on the evaluated rows that trained no model
	scored           int           // those rows
	retrain          time.Duration // time spent in Detector.Observe on the rows that trained one
	hits             explanationHits
}

// explanationHits accumulates the explanation hit-rates of one replay: the engine's on the
// labelled rows it flagged and on every labelled row, and two references on the flagged rows.
type explanationHits struct {
	engine    hitRates // the engine's explanation, over the labelled rows it flagged
	deviation hitRates // distance from the training median, over the same rows
	chance    hitRates // a random ranking (expected value), over the same rows
	engineAll hitRates // the engine's explanation over every labelled row, flagged or not
}

// hitRates accumulates HitRate@100% and @150% over explained rows.
type hitRates struct {
	sum100, sum150 float64
	n              int
}

func (h *hitRates) add(shares []float64, truth []int) {
	h.sum100 += evaluate.HitRate(shares, truth, 1)
	h.sum150 += evaluate.HitRate(shares, truth, 1.5)
	h.n++
}

func (h *hitRates) addChance(dims int, truth []int) {
	h.sum100 += evaluate.ChanceHitRate(dims, len(truth), 1)
	h.sum150 += evaluate.ChanceHitRate(dims, len(truth), 1.5)
	h.n++
}

func (h hitRates) mean() hitFigures {
	if h.n == 0 {
		return hitFigures{math.NaN(), math.NaN()}
	}
	return hitFigures{h.sum100 / float64(h.n), h.sum150 / float64(h.n)}
}

// hitFigures are HitRate@100% and HitRate@150%.
type hitFigures struct {
	at100, at150 float64
}

// replay feeds every row of s, in time order, through a detector and a correlator configured as
// the worker's, and records the judgement of each evaluated row. The first warm rows (or, with
// a training part, the whole training part) are not evaluated.
func replay(s *series, cfg detect.Config, top int) (*replayed, error) {
	d, err := detect.New(s.name, cfg)
	if err != nil {
		return nil, err
	}
	cfg.SetDefaults()
	corr, err := incident.NewCorrelator(incident.CorrelationConfig{})
	if err != nil {
		return nil, err
	}
	first := s.train
	if first == 0 {
		first = cfg.WarmUp
	}
	if first >= len(s.rows) {
		return nil, fmt.Errorf("%s: %d rows, none left to evaluate after the %d training rows", s.name, len(s.rows), first)
	}
	n := len(s.rows) - first
	r := &replayed{
		s: s, first: first,
		score: make([]float64, n), threshold: make([]float64, n),
		anomalous: make([]bool, n), open: make([]bool, n), top: make([]string, n),
	}

	// Rows of the truth, by row of the series, for the explanation hit-rates.
	truth := make(map[int][]int)
	for _, e := range s.explain {
		for i := e.seg.Start; i < e.seg.End; i++ {
			truth[i] = e.dims
		}
	}
	dev := newDeviation(s.rows[:first])

	ms := make([]sample.Metric, len(s.columns))
	var (
		perm   []int // the detector's metric k (see Features) is column perm[k]
		shares = make([]float64, len(s.columns))
		byCol  = make([]float64, len(s.columns))
		w      = incident.Watch{Service: s.name}
		cur    *incident.Incident
		spanOf = map[string]int{} // incident id -> index in r.spans
	)
	newID := func(service string, at time.Time) string { return service + "-" + strconv.FormatInt(at.Unix(), 10) }
	for i, row := range s.rows {
		for j, v := range row {
			ms[j] = sample.Metric{Name: s.columns[j], Value: v}
		}
		smp, err := sample.New(s.name, s.at[i], ms)
		if err != nil {
			return nil, fmt.Errorf("%s row %d: %w", s.name, i+1, err)
		}
		start := time.Now()
		res, err := d.Observe(smp)
		elapsed := time.Since(start)
		if err != nil {
			return nil, fmt.Errorf("%s row %d: %w", s.name, i+1, err)
		}
		if perm == nil {
			perm = columnOrder(d.Features(), s.columns)
		}
		prevReopens := -1
		if cur != nil {
			prevReopens = cur.Reopens()
		}
		inc, err := corr.Observe(&w, cur, incident.Observation{
			At: s.at[i], ReceivedAt: s.at[i], Score: res.Score, Threshold: res.Threshold,
			Judged: res.Judged, Anomalous: res.Anomalous, ModelVersion: res.ModelVersion,
		}, newID)
		if err != nil {
			return nil, fmt.Errorf("%s row %d: correlate: %w", s.name, i+1, err)
		}
		opened := inc != nil && (inc != cur || inc.Reopens() != prevReopens) && inc.Status() == incident.StatusOpen
		if inc != nil {
			cur = inc
		}
		// The worker's ticker settles a recovered incident at once; do the same.
		if err := corr.Settle(&w, cur); err != nil {
			return nil, fmt.Errorf("%s row %d: settle: %w", s.name, i+1, err)
		}
		if i < first {
			continue
		}
		k := i - first
		if res.Trained {
			r.retrain += elapsed
		} else {
			r.observe += elapsed
			r.scored++
		}
		r.score[k], r.threshold[k], r.anomalous[k] = res.Score, res.Threshold, res.Anomalous
		if opened {
			r.openings = append(r.openings, k)
		}
		if cur != nil && cur.Status() == incident.StatusOpen {
			r.open[k] = true
			// An incident counts from its first opening in the evaluated rows: one still open
			// from the training rows is not an incident of the evaluated data.
			idx, ok := spanOf[cur.ID()]
			if !ok && opened {
				idx, ok = len(r.spans), true
				spanOf[cur.ID()] = idx
				r.spans = append(r.spans, evaluate.Segment{Start: k})
			}
			if ok {
				r.spans[idx].End = k + 1
			}
		}
		gt, labelled := truth[i]
		if !res.Judged || (!res.Anomalous && !labelled) {
			continue
		}
		if !d.Explain(shares) {
			continue
		}
		for f, c := range perm {
			byCol[c] = shares[f]
		}
		if res.Anomalous {
			r.top[k] = topMetrics(byCol, s.columns, top)
		}
		if labelled {
			r.hits.engineAll.add(byCol, gt)
			if res.Anomalous {
				r.hits.engine.add(byCol, gt)
				r.hits.deviation.add(dev.shares(row, byCol), gt)
				r.hits.chance.addChance(len(byCol), gt)
			}
		}
	}
	return r, nil
}

// columnOrder maps the detector's features (metric names, sorted) to columns.
func columnOrder(features, columns []string) []int {
	perm := make([]int, len(features))
	for k, f := range features {
		perm[k] = slices.Index(columns, f)
	}
	return perm
}

// topMetrics formats the n largest shares as "m7:0.41;m3:0.22".
func topMetrics(shares []float64, names []string, n int) string {
	idx := make([]int, len(shares))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		switch {
		case shares[a] > shares[b]:
			return -1
		case shares[a] < shares[b]:
			return 1
		}
		return 0
	})
	var sb strings.Builder
	for _, i := range idx[:min(n, len(idx))] {
		if sb.Len() > 0 {
			sb.WriteByte(';')
		}
		fmt.Fprintf(&sb, "%s:%.2f", names[i], shares[i])
	}
	return sb.String()
}

// deviation is the explanation baseline that ignores the model: each metric's share is its
// distance from the training median in units of the training median absolute deviation.
type deviation struct {
	median, scale []float64
	out           []float64
}

func newDeviation(train [][]float64) deviation {
	if len(train) == 0 {
		return deviation{}
	}
	dims := len(train[0])
	d := deviation{median: make([]float64, dims), scale: make([]float64, dims), out: make([]float64, dims)}
	col := make([]float64, len(train))
	for j := range dims {
		for i, r := range train {
			col[i] = r[j]
		}
		slices.Sort(col)
		d.median[j] = col[len(col)/2]
		for i := range col {
			col[i] = math.Abs(col[i] - d.median[j])
		}
		slices.Sort(col)
		d.scale[j] = col[len(col)/2]
		if d.scale[j] == 0 {
			d.scale[j] = 1e-6 // a constant metric: any change is far
		}
	}
	return d
}

// shares returns the baseline's shares for row; it falls back to fallback without training rows.
func (d deviation) shares(row, fallback []float64) []float64 {
	if d.out == nil {
		return fallback
	}
	var total float64
	for j, v := range row {
		d.out[j] = math.Abs(v-d.median[j]) / d.scale[j]
		total += d.out[j]
	}
	if total > 0 {
		for j := range d.out {
			d.out[j] /= total
		}
	}
	return d.out
}

// fileMetrics are the figures the backtest reports for one series.
type fileMetrics struct {
	name                         string
	rows, positives, dropped     int
	rocAUC, prAUC, bestF1        float64
	precision, recall, f1        float64
	incidents, falseIncidents    int
	days, falsePerDay            float64
	segments, found              int
	segRecall                    float64
	delayRows, delayMinutes      float64
	hit, hitDeviation, hitChance hitFigures // over the labelled rows the engine flagged
	hitRows                      int
	hitAll                       hitFigures // over every labelled row with an interpretation
	samplesPerSec                float64    // scoring: Observe on samples that trained no model
	withRetrain                  float64    // Observe on every sample, retraining included
	scored                       int        // samples that trained no model
	scoreTime, allTime           time.Duration
	labelled                     bool
}

// measure computes the figures of one replay.
func measure(r *replayed) fileMetrics {
	s := r.s
	n := len(r.score)
	m := fileMetrics{name: s.name, rows: n, dropped: s.dropped}
	m.scored, m.scoreTime, m.allTime = r.scored, r.observe, r.observe+r.retrain
	m.samplesPerSec = float64(m.scored) / m.scoreTime.Seconds()
	m.withRetrain = float64(n) / m.allTime.Seconds()
	step := asdInterval
	if n > 1 {
		step = s.at[len(s.at)-1].Sub(s.at[r.first]) / time.Duration(n-1)
	}
	m.days = (time.Duration(n) * step).Hours() / 24
	m.incidents = len(r.spans)
	var segs []evaluate.Segment
	if s.labels != nil {
		m.labelled = true
		labels := s.labels[r.first:]
		for _, l := range labels {
			if l {
				m.positives++
			}
		}
		m.rocAUC, _ = evaluate.ROCAUC(r.score, labels)
		m.prAUC, _ = evaluate.AveragePrecision(r.score, labels)
		m.bestF1, _, _ = evaluate.BestF1(r.score, labels)
		c, _ := evaluate.Confusion(r.anomalous, labels)
		m.precision, m.recall, m.f1 = c.Precision(), c.Recall(), c.F1()
		segs = evaluate.Segments(labels)
		det := evaluate.Detect(segs, r.openings)
		m.segments, m.found = len(segs), det.Found
		m.segRecall, m.delayRows = det.Recall(len(segs)), det.MeanDelay()
		// Minutes from each found segment's start to the first opening inside it (openings
		// are in row order).
		var mins float64
		for _, sg := range segs {
			if k, _ := slices.BinarySearch(r.openings, sg.Start); k < len(r.openings) && r.openings[k] < sg.End {
				mins += s.at[r.first+r.openings[k]].Sub(s.at[r.first+sg.Start]).Minutes()
			}
		}
		m.delayMinutes = math.NaN()
		if det.Found > 0 {
			m.delayMinutes = mins / float64(det.Found)
		}
	} else {
		m.rocAUC, m.prAUC, m.bestF1 = math.NaN(), math.NaN(), math.NaN()
		m.precision, m.recall, m.f1 = math.NaN(), math.NaN(), math.NaN()
		m.segRecall, m.delayRows, m.delayMinutes = math.NaN(), math.NaN(), math.NaN()
	}
	m.falseIncidents = evaluate.FalseAlarms(r.spans, segs)
	m.falsePerDay = float64(m.falseIncidents) / m.days
	m.hit, m.hitDeviation, m.hitChance = r.hits.engine.mean(), r.hits.deviation.mean(), r.hits.chance.mean()
	m.hitRows = r.hits.engine.n
	m.hitAll = r.hits.engineAll.mean()
	return m
}
