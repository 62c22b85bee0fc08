package main

import (
	"bufio"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/incident-engine/engine/domain/detect"
	"github.com/incident-engine/engine/domain/evaluate"
	"github.com/incident-engine/engine/domain/incident"
)

const backtestUsage = `usage: incidentctl backtest [flags] PATH

Replays metrics through the worker's own detector (domain/detect) and correlator
(domain/incident), one service at a time, in time order, with the worker's defaults
(retraining included), and scores what they did against the labels.

PATH is one of:
  - a CSV file, or a directory of *.csv files, one per service: a header, a "timestamp"
    column (RFC 3339, "YYYY-MM-DD hh:mm:ss" in UTC, or Unix seconds), numeric metric columns
    and optionally a 0/1 "label" column; the first --warm-up rows train the first model and
    the rest are evaluated. Rows with a missing or non-finite value, or a timestamp not after
    the previous row's, are dropped (the worker would dead-letter or ignore them);
  - a directory in the ASD layout (train/, test/, test_label/, interpretation_label/), as
    ASD and SMD are published: rows get timestamps --interval apart, train/ first; columns
    are m1, m2, ...; train/ is the service's history: its first --asd-warm-up rows train the
    first model, the rest are judged and retrained on as in the worker; test/ rows are
    evaluated;
  - a directory in the NAB layout (data/<category>/<file>.csv, labels/combined_windows.json):
    every file the labels name, each window one labelled segment; the first --warm-up rows
    train, NAB's probationary rows (15%, at most 750) are judged but not evaluated.

An input too short to evaluate is reported and left out; the others go on.

It prints, per input and averaged over them (and pooled: every input's rows ranked
together), the ranking of the rows by score (ROC-AUC, PR-AUC, best F1 over all thresholds,
without point adjustment); precision, recall and F1 of the engine's own flags; alarms
(incidents opened and reopened: each pages someone), the false ones (an episode from opening
to resolution that overlaps no labelled segment) per day of data, and how long incidents
stayed open outside labelled segments; labelled segments an incident opened inside and the
mean delay to that; beside each, the expectation of the same alarms at random times;
HitRate@100% and @150% of the explanations against interpretation labels (ASD, SMD) beside
a random ranking's and the distance from the training median's; and the scoring throughput.

flags:
`

// backtestFlags are the settings of one backtest run.
type backtestFlags struct {
	out, scores, openings, summary string
	warmUp, asdWarmUp              int
	interval                       time.Duration
	top                            int
	explain                        string
	shape                          detect.Shape
	detect                         detect.Config // the detector's other settings; zero fields take its defaults
	correlate                      incident.CorrelationConfig
	quiet                          bool
}

func (f *backtestFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.out, "out", "", "write one CSV per input into this directory: timestamp, score, threshold, anomalous, incident_open, label, top metrics")
	fs.StringVar(&f.scores, "scores", "", "write the score of every row as CSV file,timestamp,score to this file (NAB layout and CSV input: every row of the file, its timestamp as written there, unjudged rows 0: the input of NAB's scorer)")
	fs.StringVar(&f.openings, "openings", "", "write, in the layout of --scores, 1 at every row where an incident opened or reopened and 0 elsewhere: the engine's own decisions, for NAB's scorer with a fixed threshold")
	fs.StringVar(&f.summary, "summary", "", "write the per-input figures, their mean and the pooled ranking as CSV to this file")
	fs.IntVar(&f.warmUp, "warm-up", 256, "CSV and NAB input: leading rows of each file the first model trains on (the worker's warm-up); they are not evaluated")
	fs.IntVar(&f.asdWarmUp, "asd-warm-up", 1440, "ASD layout: train/ rows the first model trains on, at most all of them; raises the retraining window to match")
	fs.DurationVar(&f.interval, "interval", asdInterval, "ASD layout: the time between two rows (ASD 5m, SMD 1m)")
	fs.IntVar(&f.top, "top", 3, "metrics named per anomalous row in --out")
	fs.StringVar(&f.explain, "explain", "", "explanation method: deviation (default), isolation (forest.Attribute) or path (forest.PathFeatures)")
	fs.IntVar(&f.shape.Volatility, "volatility", 0, "derived feature: spread of each metric over this many previous samples and the current one; 0 is the detector's default, -1 leaves it out")
	fs.IntVar(&f.shape.Change, "change", 0, "derived feature: each metric's difference to the mean of this many previous samples; 0 leaves it out")
	fs.Uint64Var(&f.detect.Forest.Seed, "seed", 0, "the forests' seed, mixed with each input's name and model version (0: the worker's); another seed shows how much of a figure is chance")
	fs.Float64Var(&f.detect.FalseAlarmsPerDay, "false-alarms-per-day", 0, "the detector's noise budget (0: its default)")
	fs.DurationVar(&f.detect.RetrainSpan, "retrain-span", 0, "time the retraining window covers once full (0: the detector's default)")
	fs.IntVar(&f.detect.Context, "context", 0, "samples whose mean surprise is the evidence (0: the detector's default)")
	fs.Float64Var(&f.detect.Slack, "slack", 0, "surprise in nats a sample must itself exceed to be anomalous when the evidence is at the alarm level (0: the detector's default, ln 100)")
	fs.DurationVar(&f.detect.RelearnAfter, "relearn-after", 0, "steady anomalous time after which new behaviour is learned as normal (0: the detector's default, negative: never)")
	fs.Float64Var(&f.detect.StableSpread, "stable-spread", 0, "how far a metric's median may move between the halves of the relearning span, in spreads, for it to count as steady (0: the detector's default)")
	fs.IntVar(&f.correlate.OpenAfter, "open-after", 0, "anomalies among the last --window samples that open an incident (0: the correlator's default)")
	fs.IntVar(&f.correlate.Window, "window", 0, "samples --open-after counts in (0: the correlator's default)")
	fs.DurationVar(&f.correlate.OpenSpan, "open-span", 0, "sample time the open rule also looks at: when it holds more than --window samples, the same share of them must be anomalous (0: the correlator's default, negative: samples only)")
	fs.DurationVar(&f.correlate.Recovery, "recovery", 0, "healthy time before an incident resolves (0: the correlator's default)")
	fs.IntVar(&f.correlate.RecoverySamples, "recovery-samples", 0, "healthy samples in a row a recovery also needs (0: the correlator's default)")
	fs.BoolVar(&f.quiet, "quiet", false, "print only the mean row")
}

// check reports flag values that cannot work.
func (f *backtestFlags) check() error {
	if f.warmUp < 16 || f.asdWarmUp < 16 || f.top < 1 || f.interval <= 0 {
		return fmt.Errorf("%w: backtest: --warm-up and --asd-warm-up must be at least 16, --top at least 1, --interval positive", errUsage)
	}
	if _, err := detect.ParseExplanation(f.explain); err != nil {
		return fmt.Errorf("%w: backtest: %v", errUsage, err)
	}
	if err := f.shape.Validate(); err != nil {
		return fmt.Errorf("%w: backtest: %v", errUsage, err)
	}
	return nil
}

// detectConfig is the detector's configuration for series s.
func (f *backtestFlags) detectConfig(s *series) detect.Config {
	explain, _ := detect.ParseExplanation(f.explain)
	cfg := f.detect
	cfg.WarmUp, cfg.Explanation, cfg.Shape = f.warmUp, explain, f.shape
	if s.train > 0 {
		cfg.WarmUp = min(f.asdWarmUp, s.train)
	}
	// A warm-up beyond the worker's retraining window (1,440 samples) widens it to match.
	cfg.RetrainWindow = max(cfg.WarmUp, 1440)
	return cfg
}

// backtestRun is what one backtest made of its inputs.
type backtestRun struct {
	runs []*replayed
	// every holds a run per input in input order, those too short to evaluate included
	// (scoring 0 everywhere): NAB's scorer wants every file.
	every   []*replayed
	all     []fileMetrics
	mean    fileMetrics
	pooled  rankFigures
	skipped []string // inputs too short to evaluate, with the reason
}

// runBacktest replays every input of path.
func backtestAll(path string, f *backtestFlags) (*backtestRun, error) {
	inputs, err := loadInputs(path, loadOptions{interval: f.interval})
	if err != nil {
		return nil, err
	}
	var b backtestRun
	for _, s := range inputs {
		r, err := replay(s, f.detectConfig(s), f.correlate, f.top)
		if errors.Is(err, errTooShort) {
			b.skipped = append(b.skipped, err.Error())
			b.every = append(b.every, &replayed{s: s, first: len(s.rows), rowScore: make([]float64, len(s.rows)), rowOpened: make([]bool, len(s.rows))})
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("backtest %s: %w", s.name, err)
		}
		b.runs = append(b.runs, r)
		b.every = append(b.every, r)
		b.all = append(b.all, measure(r))
	}
	if len(b.runs) == 0 {
		return nil, fmt.Errorf("backtest %s: no input long enough to evaluate: %s", path, strings.Join(b.skipped, "; "))
	}
	b.mean = meanMetrics(b.all)
	b.pooled = pooledRank(b.runs, func(r *replayed) []float64 { return r.score })
	return &b, nil
}

func backtest(args []string, stdout io.Writer) error {
	var f backtestFlags
	fs := flag.NewFlagSet("backtest", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f.register(fs)
	var paths []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				printBacktestUsage(stdout, fs)
				return nil
			}
			return fmt.Errorf("%w: backtest: %v", errUsage, err)
		}
		if fs.NArg() == 0 {
			break
		}
		paths = append(paths, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(paths) != 1 {
		return fmt.Errorf("%w: backtest needs exactly one PATH, got %d", errUsage, len(paths))
	}
	if err := f.check(); err != nil {
		return err
	}
	b, err := backtestAll(paths[0], &f)
	if err != nil {
		return err
	}
	if f.out != "" {
		for _, r := range b.runs {
			if err := writeRows(f.out, r); err != nil {
				return err
			}
		}
	}
	if f.scores != "" {
		if err := writeRowValues(f.scores, b.every, func(r *replayed, i int) float64 { return r.rowScore[i] }); err != nil {
			return err
		}
	}
	if f.openings != "" {
		if err := writeRowValues(f.openings, b.every, func(r *replayed, i int) float64 {
			if r.rowOpened[i] {
				return 1
			}
			return 0
		}); err != nil {
			return err
		}
	}
	if f.summary != "" {
		if err := writeSummary(f.summary, b); err != nil {
			return err
		}
	}
	printMetrics(stdout, b, f.quiet)
	return nil
}

func printBacktestUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, backtestUsage)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// meanMetrics averages every figure over the inputs, skipping those where it is undefined;
// counts are summed, rates per day are over the summed days, and the throughput is the
// overall rate.
func meanMetrics(all []fileMetrics) fileMetrics {
	m := fileMetrics{name: "mean"}
	avg := func(get func(fileMetrics) float64) float64 { return meanOf(all, get) }
	for _, x := range all {
		m.rows += x.rows
		m.positives += x.positives
		m.dropped += x.dropped
		m.incidents += x.incidents
		m.alarms += x.alarms
		m.falseAlarms += x.falseAlarms
		m.openOutside += x.openOutside
		m.days += x.days
		m.segments += x.segments
		m.found += x.found
		m.chance.Found += x.chance.Found
		m.chance.False += x.chance.False
		m.hitRows += x.hitRows
		m.labelled = m.labelled || x.labelled
		m.scored += x.scored
		m.scoreTime += x.scoreTime
		m.allTime += x.allTime
	}
	ranks := make([]rankFigures, len(all))
	for i, x := range all {
		ranks[i] = x.ranking
	}
	m.ranking = meanRank(ranks)
	m.precision = avg(func(x fileMetrics) float64 { return x.precision })
	m.recall = avg(func(x fileMetrics) float64 { return x.recall })
	m.f1 = avg(func(x fileMetrics) float64 { return x.f1 })
	m.falsePerDay = float64(m.falseAlarms) / m.days
	m.segRecall = math.NaN()
	if m.segments > 0 {
		m.segRecall = float64(m.found) / float64(m.segments)
	}
	m.delayRows = avg(func(x fileMetrics) float64 { return x.delayRows })
	m.delayMinutes = avg(func(x fileMetrics) float64 { return x.delayMinutes })
	hits := func(get func(fileMetrics) hitFigures) hitFigures {
		return hitFigures{
			avg(func(x fileMetrics) float64 { return get(x).at100 }),
			avg(func(x fileMetrics) float64 { return get(x).at150 }),
		}
	}
	m.hit = hits(func(x fileMetrics) hitFigures { return x.hit })
	m.hitDeviation = hits(func(x fileMetrics) hitFigures { return x.hitDeviation })
	m.hitChance = hits(func(x fileMetrics) hitFigures { return x.hitChance })
	m.hitAll = hits(func(x fileMetrics) hitFigures { return x.hitAll })
	m.samplesPerSec = float64(m.scored) / m.scoreTime.Seconds()
	m.withRetrain = float64(m.rows) / m.allTime.Seconds()
	return m
}

// meanOf is the mean of get over xs, skipping the NaNs (NaN when all are).
func meanOf[T any](xs []T, get func(T) float64) float64 {
	v := make([]float64, len(xs))
	for i, x := range xs {
		v[i] = get(x)
	}
	m, _ := evaluate.Mean(v)
	return m
}

// pooledRank ranks the evaluated rows of every labelled run together, with the scores score
// gives: a detector whose scores mean the same for every service ranks as well pooled as per
// service.
func pooledRank(runs []*replayed, score func(*replayed) []float64) rankFigures {
	var scores []float64
	var labels []bool
	for _, r := range runs {
		if r.labels == nil {
			continue
		}
		scores = append(scores, score(r)...)
		labels = append(labels, r.labels...)
	}
	if labels == nil {
		return rank(nil, nil)
	}
	return rank(scores, labels)
}

// summaryHeader names the columns of --summary.
var summaryHeader = []string{
	"file", "rows", "anomalous_rows", "interval_s", "roc_auc", "pr_auc", "best_f1", "precision", "recall", "f1",
	"incidents", "alarms", "false_alarms", "false_per_day", "chance_false_alarms", "open_outside_hours",
	"segments", "segments_found", "segment_recall", "chance_segments_found",
	"delay_rows", "delay_minutes", "hit100", "hit150", "hit_rows", "hit100_deviation",
	"hit150_deviation", "hit100_chance", "hit150_chance", "hit100_all_labelled", "hit150_all_labelled", "samples_per_s",
	"samples_per_s_with_retraining",
}

func fmtFloat(v float64, prec int) string {
	if math.IsNaN(v) {
		return ""
	}
	return strconv.FormatFloat(v, 'f', prec, 64)
}

func (m fileMetrics) record() []string {
	f := func(v float64) string { return fmtFloat(v, 4) }
	i := strconv.Itoa
	return []string{
		m.name, i(m.rows), i(m.positives), strconv.FormatFloat(m.interval.Seconds(), 'f', 0, 64),
		f(m.ranking.rocAUC), f(m.ranking.prAUC), f(m.ranking.bestF1), f(m.precision), f(m.recall), f(m.f1),
		i(m.incidents), i(m.alarms), i(m.falseAlarms), f(m.falsePerDay), f(m.chance.False), f(m.openOutside.Hours()),
		i(m.segments), i(m.found), f(m.segRecall), f(m.chance.Found),
		f(m.delayRows), f(m.delayMinutes), f(m.hit.at100), f(m.hit.at150), i(m.hitRows), f(m.hitDeviation.at100),
		f(m.hitDeviation.at150), f(m.hitChance.at100), f(m.hitChance.at150), f(m.hitAll.at100), f(m.hitAll.at150),
		strconv.FormatFloat(m.samplesPerSec, 'f', 0, 64),
		strconv.FormatFloat(m.withRetrain, 'f', 0, 64),
	}
}

func printMetrics(w io.Writer, b *backtestRun, quiet bool) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "file\trows\tROC-AUC\tPR-AUC\tbestF1\tP\tR\tF1\talarms\tfalse\t(chance)\tfalse/day\topen outside h\tfound\t(chance)\tdelay rows\tdelay min\tHit@100%\tHit@150%\tsamples/s\t")
	f := func(v float64) string {
		if math.IsNaN(v) {
			return "-"
		}
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
	line := func(m fileMetrics) {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%.1f\t%s\t%.1f\t%d/%d\t%.1f\t%s\t%s\t%s\t%s\t%.0f\t\n",
			m.name, m.rows, f(m.ranking.rocAUC), f(m.ranking.prAUC), f(m.ranking.bestF1), f(m.precision), f(m.recall), f(m.f1),
			m.alarms, m.falseAlarms, m.chance.False, f(m.falsePerDay), m.openOutside.Hours(), m.found, m.segments, m.chance.Found,
			f(m.delayRows), f(m.delayMinutes), f(m.hit.at100), f(m.hit.at150), m.samplesPerSec)
	}
	if !quiet {
		for _, m := range b.all {
			line(m)
		}
	}
	line(b.mean)
	tw.Flush()
	mean := b.mean
	fmt.Fprintf(w, "pooled ranking (every input's rows together): ROC-AUC %s, PR-AUC %s, best F1 %s\n", f(b.pooled.rocAUC), f(b.pooled.prAUC), f(b.pooled.bestF1))
	fmt.Fprintf(w, "alarms: %d openings and reopenings over %.1f service-days, %d false (%.3f a day; %.1f expected of as many at random times), %.1f hours open outside labelled segments\n",
		mean.alarms, mean.days, mean.falseAlarms, mean.falsePerDay, mean.chance.False, mean.openOutside.Hours())
	fmt.Fprintf(w, "explanations, HitRate@100%%/150%% over the labelled rows the engine flagged (%d in all; mean over inputs): engine %s/%s, distance from the training median %s/%s, random ranking %s/%s; engine over every labelled row %s/%s\n",
		mean.hitRows, f(mean.hit.at100), f(mean.hit.at150), f(mean.hitDeviation.at100), f(mean.hitDeviation.at150),
		f(mean.hitChance.at100), f(mean.hitChance.at150), f(mean.hitAll.at100), f(mean.hitAll.at150))
	fmt.Fprintf(w, "throughput: %.0f samples/s scoring (Detector.Observe on the evaluated samples that trained no model), %.0f samples/s with the daily retraining included\n",
		mean.samplesPerSec, mean.withRetrain)
	if mean.dropped > 0 {
		fmt.Fprintf(w, "%d rows dropped: a missing or non-finite value, or a timestamp not after the previous row's\n", mean.dropped)
	}
	for _, s := range b.skipped {
		fmt.Fprintf(w, "left out: %s\n", s)
	}
}

func writeSummary(path string, b *backtestRun) error {
	pooled := fileMetrics{name: "pooled", ranking: b.pooled}
	return writeCSV(path, func(w *csv.Writer) error {
		if err := w.Write(summaryHeader); err != nil {
			return err
		}
		for _, m := range append(slices.Clone(b.all), b.mean) {
			if err := w.Write(m.record()); err != nil {
				return err
			}
		}
		rec := make([]string, len(summaryHeader))
		rec[0] = pooled.name
		copy(rec[4:7], pooled.record()[4:7])
		return w.Write(rec)
	})
}

// writeRows writes the judgement of every evaluated row of one input to DIR/NAME.csv.
func writeRows(dir string, r *replayed) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("backtest output: %w", err)
	}
	s := r.s
	path := filepath.Join(dir, strings.TrimSuffix(filepath.FromSlash(s.name), ".csv")+".csv")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("backtest output: %w", err)
	}
	return writeCSV(path, func(w *csv.Writer) error {
		header := []string{"timestamp", "score", "threshold", "anomalous", "incident_open", "top"}
		if s.labels != nil {
			header = append(header, "label")
		}
		if err := w.Write(header); err != nil {
			return err
		}
		rec := make([]string, len(header))
		for k := range r.score {
			i := r.first + k
			rec[0] = s.at[i].Format(time.RFC3339)
			rec[1] = strconv.FormatFloat(r.score[k], 'f', 6, 64)
			rec[2] = strconv.FormatFloat(r.threshold[k], 'f', 6, 64)
			rec[3], rec[4], rec[5] = bit(r.anomalous[k]), bit(r.open[k]), r.top[k]
			if s.labels != nil {
				rec[6] = bit(s.labels[i])
			}
			if err := w.Write(rec); err != nil {
				return err
			}
		}
		return nil
	})
}

// writeRowValues writes one value per row of every run as file,timestamp,score: for input
// read from CSV files (NAB's layout among them), every data row of the file with its
// timestamp as written there, a dropped row taking its kept predecessor's value, rows before
// the first value 0; for the ASD layout, the evaluated rows with their synthetic timestamps.
func writeRowValues(path string, runs []*replayed, value func(r *replayed, row int) float64) error {
	return writeValues(path, runs, value, func(r *replayed, fileRow int) float64 {
		if i := r.s.fileRow[fileRow]; i >= 0 {
			return value(r, i)
		}
		return 0
	})
}

// writeValues writes file,timestamp,score: for a run read from a file, fileValue of each of
// its data rows; for another (the ASD layout), rowValue of each evaluated row of the series.
func writeValues(path string, runs []*replayed, rowValue, fileValue func(r *replayed, row int) float64) error {
	return writeCSV(path, func(w *csv.Writer) error {
		if err := w.Write([]string{"file", "timestamp", "score"}); err != nil {
			return err
		}
		put := func(name, ts string, v float64) error {
			return w.Write([]string{name, ts, strconv.FormatFloat(v, 'f', 6, 64)})
		}
		for _, r := range runs {
			s := r.s
			if s.fileTimes == nil {
				for i := r.first; i < len(s.rows); i++ {
					if err := put(s.name, s.at[i].Format(time.RFC3339), rowValue(r, i)); err != nil {
						return err
					}
				}
				continue
			}
			for k, ts := range s.fileTimes {
				if err := put(s.name, ts, fileValue(r, k)); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

func writeCSV(path string, fill func(*csv.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("backtest output: %w", err)
	}
	bw := bufio.NewWriter(f)
	w := csv.NewWriter(bw)
	err = fill(w)
	w.Flush()
	err = errors.Join(err, w.Error(), bw.Flush(), f.Close())
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func bit(v bool) string {
	if v {
		return "1"
	}
	return "0"
}
