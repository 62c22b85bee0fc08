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
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/incident-engine/engine/domain/detect"
	"github.com/incident-engine/engine/domain/evaluate"
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
  - a directory in the ASD layout (train/, test/, test_label/, interpretation_label/): rows
    get timestamps 5 minutes apart, train/ first; columns are m1, m2, ...; train/ is the
    service's history: its first --asd-warm-up rows train the first model, the rest are
    judged and retrained on daily as in the worker; test/ rows are evaluated.

It prints, per input and averaged over them: ROC-AUC, PR-AUC (average precision) and the best
F1 over all thresholds of the score, without point adjustment; precision, recall and F1 of the
engine's own flags; incidents opened, those overlapping no labelled segment per day of data;
labelled segments an incident opened inside and the mean delay to that; HitRate@100% and
@150% of the explanations against interpretation labels (ASD); and the scoring throughput of
the detector alone.

flags:
`

// backtestFlags are the settings of one backtest run.
type backtestFlags struct {
	out, scores, summary string
	warmUp, asdWarmUp    int
	top                  int
	explain              string
	shape                detect.Shape
	quiet                bool
}

func backtest(args []string, stdout io.Writer) error {
	var f backtestFlags
	fs := flag.NewFlagSet("backtest", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&f.out, "out", "", "write one CSV per input into this directory: timestamp, score, threshold, anomalous, incident_open, label, top metrics")
	fs.StringVar(&f.scores, "scores", "", "write one CSV of file,timestamp,score over every input to this file")
	fs.StringVar(&f.summary, "summary", "", "write the per-input figures and their mean as CSV to this file")
	fs.IntVar(&f.warmUp, "warm-up", 256, "CSV input: leading rows of each file the first model trains on (the worker's warm-up); they are not evaluated")
	fs.IntVar(&f.asdWarmUp, "asd-warm-up", 1440, "ASD input: train/ rows the first model trains on, at most all of them; raises the retraining window to match")
	fs.IntVar(&f.top, "top", 3, "metrics named per anomalous row in --out")
	fs.StringVar(&f.explain, "explain", "", "explanation method: isolation (default) or path (forest.PathFeatures)")
	fs.IntVar(&f.shape.Volatility, "volatility", 0, "derived feature: spread of each metric over this many previous samples and the current one; 0 is the detector's default, -1 leaves it out")
	fs.IntVar(&f.shape.Change, "change", 0, "derived feature: each metric's difference to the mean of this many previous samples; 0 leaves it out")
	fs.BoolVar(&f.quiet, "quiet", false, "print only the mean row")
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
	if f.warmUp < 16 || f.asdWarmUp < 16 || f.top < 1 {
		return fmt.Errorf("%w: backtest: --warm-up and --asd-warm-up must be at least 16, --top at least 1", errUsage)
	}
	explain, err := detect.ParseExplanation(f.explain)
	if err != nil {
		return fmt.Errorf("%w: backtest: %v", errUsage, err)
	}
	if err := f.shape.Validate(); err != nil {
		return fmt.Errorf("%w: backtest: %v", errUsage, err)
	}
	inputs, err := loadInputs(paths[0])
	if err != nil {
		return err
	}
	var all []fileMetrics
	var runs []*replayed
	for _, s := range inputs {
		cfg := detect.Config{WarmUp: f.warmUp, Explanation: explain, Shape: f.shape}
		if s.train > 0 {
			cfg.WarmUp = min(f.asdWarmUp, s.train)
		}
		// A warm-up beyond the worker's retraining window (1,440 samples) widens it to match.
		cfg.RetrainWindow = max(cfg.WarmUp, 1440)
		r, err := replay(s, cfg, f.top)
		if err != nil {
			return fmt.Errorf("backtest %s: %w", s.name, err)
		}
		runs = append(runs, r)
		all = append(all, measure(r))
		if f.out != "" {
			if err := writeRows(f.out, r); err != nil {
				return err
			}
		}
	}
	if f.scores != "" {
		if err := writeScores(f.scores, runs); err != nil {
			return err
		}
	}
	mean := meanMetrics(all)
	if f.summary != "" {
		if err := writeSummary(f.summary, append(all, mean)); err != nil {
			return err
		}
	}
	printMetrics(stdout, all, mean, f.quiet)
	return nil
}

func printBacktestUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, backtestUsage)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// meanMetrics averages every figure over the inputs, skipping those where it is undefined; the
// throughput is the overall rate.
func meanMetrics(all []fileMetrics) fileMetrics {
	m := fileMetrics{name: "mean"}
	avg := func(get func(fileMetrics) float64) float64 {
		v := make([]float64, len(all))
		for i, x := range all {
			v[i] = get(x)
		}
		mean, _ := evaluate.Mean(v)
		return mean
	}
	for _, x := range all {
		m.rows += x.rows
		m.positives += x.positives
		m.dropped += x.dropped
		m.incidents += x.incidents
		m.falseIncidents += x.falseIncidents
		m.days += x.days
		m.segments += x.segments
		m.found += x.found
		m.hitRows += x.hitRows
		m.labelled = m.labelled || x.labelled
		m.scored += x.scored
		m.scoreTime += x.scoreTime
		m.allTime += x.allTime
	}
	m.rocAUC = avg(func(x fileMetrics) float64 { return x.rocAUC })
	m.prAUC = avg(func(x fileMetrics) float64 { return x.prAUC })
	m.bestF1 = avg(func(x fileMetrics) float64 { return x.bestF1 })
	m.precision = avg(func(x fileMetrics) float64 { return x.precision })
	m.recall = avg(func(x fileMetrics) float64 { return x.recall })
	m.f1 = avg(func(x fileMetrics) float64 { return x.f1 })
	m.falsePerDay = float64(m.falseIncidents) / m.days
	m.segRecall = float64(m.found) / float64(m.segments)
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

// summaryHeader names the columns of --summary and of the printed table.
var summaryHeader = []string{
	"file", "rows", "anomalous_rows", "roc_auc", "pr_auc", "best_f1", "precision", "recall", "f1",
	"incidents", "false_incidents", "false_per_day", "segments", "segments_found", "segment_recall",
	"delay_rows", "delay_minutes", "hit100", "hit150", "hit_rows", "hit100_deviation",
	"hit150_deviation", "hit100_chance", "hit150_chance", "hit100_all_labelled", "hit150_all_labelled", "samples_per_s",
	"samples_per_s_with_retraining",
}

func (m fileMetrics) record() []string {
	f := func(v float64) string {
		if math.IsNaN(v) {
			return ""
		}
		return strconv.FormatFloat(v, 'f', 4, 64)
	}
	i := strconv.Itoa
	return []string{
		m.name, i(m.rows), i(m.positives), f(m.rocAUC), f(m.prAUC), f(m.bestF1), f(m.precision), f(m.recall), f(m.f1),
		i(m.incidents), i(m.falseIncidents), f(m.falsePerDay), i(m.segments), i(m.found), f(m.segRecall),
		f(m.delayRows), f(m.delayMinutes), f(m.hit.at100), f(m.hit.at150), i(m.hitRows), f(m.hitDeviation.at100),
		f(m.hitDeviation.at150), f(m.hitChance.at100), f(m.hitChance.at150), f(m.hitAll.at100), f(m.hitAll.at150),
		strconv.FormatFloat(m.samplesPerSec, 'f', 0, 64),
		strconv.FormatFloat(m.withRetrain, 'f', 0, 64),
	}
}

func printMetrics(w io.Writer, all []fileMetrics, mean fileMetrics, quiet bool) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "file\trows\tROC-AUC\tPR-AUC\tbestF1\tP\tR\tF1\tincidents\tfalse/day\tsegments found\tdelay rows\tdelay min\tHit@100%\tHit@150%\tsamples/s\t")
	f := func(v float64) string {
		if math.IsNaN(v) {
			return "-"
		}
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
	line := func(m fileMetrics) {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%d/%d\t%s\t%s\t%s\t%s\t%.0f\t\n",
			m.name, m.rows, f(m.rocAUC), f(m.prAUC), f(m.bestF1), f(m.precision), f(m.recall), f(m.f1),
			m.incidents, f(m.falsePerDay), m.found, m.segments, f(m.delayRows), f(m.delayMinutes),
			f(m.hit.at100), f(m.hit.at150), m.samplesPerSec)
	}
	if !quiet {
		for _, m := range all {
			line(m)
		}
	}
	line(mean)
	tw.Flush()
	fmt.Fprintf(w, "explanations, HitRate@100%%/150%% over the labelled rows the engine flagged (%d in all; mean over inputs): engine %s/%s, distance from the training median %s/%s, random ranking %s/%s; engine over every labelled row %s/%s\n",
		mean.hitRows, f(mean.hit.at100), f(mean.hit.at150), f(mean.hitDeviation.at100), f(mean.hitDeviation.at150),
		f(mean.hitChance.at100), f(mean.hitChance.at150), f(mean.hitAll.at100), f(mean.hitAll.at150))
	fmt.Fprintf(w, "throughput: %.0f samples/s scoring (Detector.Observe on the evaluated samples that trained no model), %.0f samples/s with the daily retraining included\n",
		mean.samplesPerSec, mean.withRetrain)
	if mean.dropped > 0 {
		fmt.Fprintf(w, "%d rows dropped: a missing or non-finite value, or a timestamp not after the previous row's\n", mean.dropped)
	}
}

func writeSummary(path string, rows []fileMetrics) error {
	return writeCSV(path, func(w *csv.Writer) error {
		if err := w.Write(summaryHeader); err != nil {
			return err
		}
		for _, m := range rows {
			if err := w.Write(m.record()); err != nil {
				return err
			}
		}
		return nil
	})
}

// writeRows writes the judgement of every evaluated row of one input to DIR/NAME.csv.
func writeRows(dir string, r *replayed) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("backtest output: %w", err)
	}
	s := r.s
	return writeCSV(filepath.Join(dir, s.name+".csv"), func(w *csv.Writer) error {
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

func writeScores(path string, runs []*replayed) error {
	return writeCSV(path, func(w *csv.Writer) error {
		if err := w.Write([]string{"file", "timestamp", "score"}); err != nil {
			return err
		}
		for _, r := range runs {
			for k, sc := range r.score {
				if err := w.Write([]string{r.s.name, r.s.at[r.first+k].Format(time.RFC3339), strconv.FormatFloat(sc, 'f', 6, 64)}); err != nil {
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
