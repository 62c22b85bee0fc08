package main

import (
	"errors"
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
	top              []string           // the explanation of each anomalous row, "m7:0.41;m3:0.22"
	openings         []int              // evaluated rows at which an incident opened or reopened
	spans            []evaluate.Segment // per incident, its first opening to its last open row
	episodes         []evaluate.Segment // per opening or reopening, to the resolution
	labels           []bool             // per evaluated row, nil without labels
	rowScore         []float64          // per row of the series, 0 while unjudged
	rowOpened        []bool             // per row of the series: an incident opened or reopened
	segments         []evaluate.Segment // the labelled segments, in evaluated rows
	observe          time.Duration      // time spent in Detector.Observe on the evaluated rows that trained no model
	scored           int                // those rows
	retrain          time.Duration      // time spent in Detector.Observe on the rows that trained one
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
func replay(s *series, cfg detect.Config, ccfg incident.CorrelationConfig, top int) (*replayed, error) {
	d, err := detect.New(s.name, cfg)
	if err != nil {
		return nil, err
	}
	cfg.SetDefaults()
	corr, err := incident.NewCorrelator(ccfg)
	if err != nil {
		return nil, err
	}
	first := s.train
	if first == 0 {
		first = cfg.WarmUp
	}
	first = max(first, s.evalFrom)
	if first >= len(s.rows) {
		return nil, fmt.Errorf("%s: %d rows, none left to evaluate after the first %d: %w", s.name, len(s.rows), first, errTooShort)
	}
	n := len(s.rows) - first
	r := &replayed{
		s: s, first: first,
		score: make([]float64, n), threshold: make([]float64, n),
		anomalous: make([]bool, n), open: make([]bool, n), top: make([]string, n),
		rowScore: make([]float64, len(s.rows)), rowOpened: make([]bool, len(s.rows)),
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
		w      = incident.NewWatch(s.name)
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
		r.rowScore[i], r.rowOpened[i] = res.Score, opened
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
			r.episodes = append(r.episodes, evaluate.Segment{Start: k, End: k + 1})
		}
		if cur != nil && cur.Status() == incident.StatusOpen {
			r.open[k] = true
			if len(r.episodes) > 0 && r.episodes[len(r.episodes)-1].End == k {
				r.episodes[len(r.episodes)-1].End = k + 1
			}
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
	if s.labels != nil {
		r.labels = s.labels[first:]
		r.segments = evaluate.Segments(r.labels)
		if s.segments != nil {
			r.segments = r.segments[:0]
			for _, sg := range s.segments {
				if sg.End > first {
					r.segments = append(r.segments, evaluate.Segment{Start: max(0, sg.Start-first), End: sg.End - first})
				}
			}
		}
	}
	return r, nil
}

// errTooShort marks an input with no row left to evaluate: the backtest reports it and goes
// on with the others.
var errTooShort = errors.New("too short to evaluate")

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
	name                     string
	rows, positives, dropped int
	interval                 time.Duration // the series' median row spacing
	ranking                  rankFigures
	precision, recall, f1    float64
	// alarms counts openings and reopenings (each pages someone); falseAlarms those whose
	// episode, from the opening to the resolution, overlaps no labelled segment.
	incidents, alarms, falseAlarms int
	days, falsePerDay              float64
	// openOutside is the time an incident was open on rows outside every labelled segment.
	openOutside                  time.Duration
	segments, found              int
	segRecall                    float64
	delayRows, delayMinutes      float64
	chance                       evaluate.ChanceFigures // the same episodes at random places
	hit, hitDeviation, hitChance hitFigures             // over the labelled rows the engine flagged
	hitRows                      int
	hitAll                       hitFigures // over every labelled row with an interpretation
	samplesPerSec                float64    // scoring: Observe on samples that trained no model
	withRetrain                  float64    // Observe on every sample, retraining included
	scored                       int        // samples that trained no model
	scoreTime, allTime           time.Duration
	labelled                     bool
}

// rankFigures judge a score's ranking of the rows: ROC-AUC, PR-AUC (average precision) and
// the best F1 over all thresholds, without point adjustment. NaN when undefined (one class).
type rankFigures struct {
	rocAUC, prAUC, bestF1 float64
}

// rank computes the ranking figures of scores against labels.
func rank(scores []float64, labels []bool) rankFigures {
	if labels == nil {
		return rankFigures{math.NaN(), math.NaN(), math.NaN()}
	}
	var f rankFigures
	f.rocAUC, _ = evaluate.ROCAUC(scores, labels)
	f.prAUC, _ = evaluate.AveragePrecision(scores, labels)
	f.bestF1, _, _ = evaluate.BestF1(scores, labels)
	return f
}

// chanceRank is what a random score reaches in expectation: ROC-AUC 0.5, PR-AUC the share of
// anomalous rows, best F1 that of flagging every row.
func chanceRank(positives, rows int) rankFigures {
	if positives == 0 || positives == rows {
		return rankFigures{math.NaN(), math.NaN(), math.NaN()}
	}
	p := float64(positives) / float64(rows)
	return rankFigures{0.5, p, 2 * p / (1 + p)}
}

// medianStep is the median time between consecutive rows.
func medianStep(at []time.Time) time.Duration {
	if len(at) < 2 {
		return 0
	}
	d := make([]time.Duration, len(at)-1)
	for i := range d {
		d[i] = at[i+1].Sub(at[i])
	}
	slices.Sort(d)
	return d[len(d)/2]
}

// measure computes the figures of one replay.
func measure(r *replayed) fileMetrics {
	s := r.s
	n := len(r.score)
	m := fileMetrics{name: s.name, rows: n, dropped: s.dropped}
	m.scored, m.scoreTime, m.allTime = r.scored, r.observe, r.observe+r.retrain
	m.samplesPerSec = float64(m.scored) / m.scoreTime.Seconds()
	m.withRetrain = float64(n) / m.allTime.Seconds()
	at := s.at[r.first:]
	m.interval = medianStep(s.at)
	// A day of data is a day of sample time: each row stands for the spacing to the next.
	m.days = (at[len(at)-1].Sub(at[0]) + m.interval).Hours() / 24
	m.incidents, m.alarms = len(r.spans), len(r.openings)
	m.ranking = rank(r.score, r.labels)
	if r.labels != nil {
		m.labelled = true
		for _, l := range r.labels {
			if l {
				m.positives++
			}
		}
		c, _ := evaluate.Confusion(r.anomalous, r.labels)
		m.precision, m.recall, m.f1 = c.Precision(), c.Recall(), c.F1()
		det := evaluate.Detect(r.segments, r.openings)
		m.segments, m.found = len(r.segments), det.Found
		m.segRecall, m.delayRows = det.Recall(len(r.segments)), det.MeanDelay()
		// Minutes from each found segment's start to the first opening inside it (openings
		// are in row order).
		var mins float64
		for _, sg := range r.segments {
			if k, _ := slices.BinarySearch(r.openings, sg.Start); k < len(r.openings) && r.openings[k] < sg.End {
				mins += at[r.openings[k]].Sub(at[sg.Start]).Minutes()
			}
		}
		m.delayMinutes = math.NaN()
		if det.Found > 0 {
			m.delayMinutes = mins / float64(det.Found)
		}
	} else {
		m.precision, m.recall, m.f1 = math.NaN(), math.NaN(), math.NaN()
		m.segRecall, m.delayRows, m.delayMinutes = math.NaN(), math.NaN(), math.NaN()
	}
	m.falseAlarms = evaluate.FalseAlarms(r.episodes, r.segments)
	m.falsePerDay = float64(m.falseAlarms) / m.days
	inside := make([]bool, n)
	for _, sg := range r.segments {
		for i := sg.Start; i < sg.End; i++ {
			inside[i] = true
		}
	}
	for k, open := range r.open {
		if open && !inside[k] {
			m.openOutside += m.interval
		}
	}
	m.chance = evaluate.Chance(n, r.segments, r.episodes, 200, fnv(s.name))
	m.hit, m.hitDeviation, m.hitChance = r.hits.engine.mean(), r.hits.deviation.mean(), r.hits.chance.mean()
	m.hitRows = r.hits.engine.n
	m.hitAll = r.hits.engineAll.mean()
	return m
}

// fnv hashes a name into a seed.
func fnv(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * 1099511628211
	}
	return h
}
