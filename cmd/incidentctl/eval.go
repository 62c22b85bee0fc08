package main

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const evalUsage = `usage: incidentctl eval [flags] DATA

Measures detection on every benchmark set under DATA, the engine beside scikit-learn's
IsolationForest in the same run, and prints the results as Markdown (docs/results.md shows
them). DATA holds some of:
  asd/      the ASD layout, one row every 5 minutes
  smd-*/    the ASD layout (SMD), one row a minute
  nab-*/    the NAB layout, scored by NAB's scorer as well (--nab-scorer)
Any other directory in the ASD layout is read at --interval.

For each set: the engine's backtest with its defaults (incidentctl backtest); scikit-learn's
scores of the same rows (scripts/sklearn_baseline.py, run with --python), measured by the
same code; what a user gets from the engine (alarms, false ones per service-day, segments
found, delay, time open outside labels) beside the same alarms placed at random; the ranking
of the rows per input (mean) and pooled, beside chance; explanation hit-rates beside a
random ranking and the distance from the training median; for NAB, the NAB score (three
profiles) of the engine's incident openings as a fixed 0/1, of its score and of
scikit-learn's with NAB's threshold search, and of as many openings at random rows.

It needs Debian's python3 with python3-sklearn and python3-pandas.

flags:
`

// evalFlags are the settings of one evaluation.
type evalFlags struct {
	python, scorer, scripts, out string
	interval                     time.Duration
	chanceDraws                  int
	seed                         uint64
}

func evalCmd(args []string, stdout io.Writer) error {
	var f evalFlags
	fs := flag.NewFlagSet("eval", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&f.python, "python", "/usr/bin/python3", "the Python with scikit-learn and pandas")
	fs.StringVar(&f.scorer, "nab-scorer", "", "NAB's scorer (default DATA/../tools/nab_score.py)")
	fs.StringVar(&f.scripts, "scripts", "scripts", "the directory holding sklearn_baseline.py")
	fs.StringVar(&f.out, "out", "", "keep every score file and summary in this directory")
	fs.DurationVar(&f.interval, "interval", asdInterval, "row spacing of an ASD-layout set that is neither asd nor smd-*")
	fs.IntVar(&f.chanceDraws, "chance-draws", 5, "NAB: draws of random openings averaged for the chance score")
	fs.Uint64Var(&f.seed, "seed", 0, "the engine's forest seed (0: the worker's); the figures of another seed show how much of them is chance")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, evalUsage)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return nil
		}
		return fmt.Errorf("%w: eval: %v", errUsage, err)
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: eval needs exactly one DATA directory", errUsage)
	}
	data := fs.Arg(0)
	if f.scorer == "" {
		f.scorer = filepath.Join(data, "..", "tools", "nab_score.py")
	}
	if err := exec.Command(f.python, "-c", "import sklearn, pandas").Run(); err != nil {
		return fmt.Errorf("eval needs %s with scikit-learn and pandas (apt-get install -y python3-sklearn python3-pandas): %w", f.python, err)
	}
	out := f.out
	if out == "" {
		tmp, err := os.MkdirTemp("", "incidentctl-eval-")
		if err != nil {
			return fmt.Errorf("eval: %w", err)
		}
		defer os.RemoveAll(tmp)
		out = tmp
	} else if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	entries, err := os.ReadDir(data)
	if err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	done := 0
	for _, e := range entries {
		dir := filepath.Join(data, e.Name())
		if !e.IsDir() {
			continue
		}
		bf := backtestFlags{warmUp: 256, asdWarmUp: 1440, interval: f.interval, top: 3}
		bf.detect.Forest.Seed = f.seed
		switch {
		case e.Name() == "asd":
			bf.interval = 5 * time.Minute
		case strings.HasPrefix(e.Name(), "smd"):
			bf.interval = time.Minute
		}
		nab := isDir(filepath.Join(dir, "data")) && isFile(filepath.Join(dir, "labels", "combined_windows.json"))
		asdLayout := isDir(filepath.Join(dir, "train")) && isDir(filepath.Join(dir, "test"))
		if !nab && !asdLayout {
			continue
		}
		start := time.Now()
		rep, err := evalSet(e.Name(), dir, filepath.Join(out, e.Name()), nab, &bf, &f)
		if err != nil {
			return fmt.Errorf("eval %s: %w", e.Name(), err)
		}
		rep.took = time.Since(start)
		rep.print(stdout)
		done++
	}
	if done == 0 {
		return fmt.Errorf("eval: no set in the ASD or NAB layout under %s", data)
	}
	return nil
}

// setReport is the evaluation of one benchmark set.
type setReport struct {
	name     string
	interval time.Duration
	b        *backtestRun
	sklearn  []rankFigures // per run of b
	skMean   rankFigures
	skPooled rankFigures
	chance   rankFigures // mean over the runs
	pooledCh rankFigures
	nab      map[string]nabResult // "engine openings", "engine score", "scikit-learn score", "random openings"
	took     time.Duration
}

// nabResult is NAB's normalised score per profile.
type nabResult map[string]float64

var nabProfiles = []string{"standard", "reward_low_FP_rate", "reward_low_FN_rate"}

func evalSet(name, dir, out string, nab bool, bf *backtestFlags, f *evalFlags) (*setReport, error) {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	b, err := backtestAll(dir, bf)
	if err != nil {
		return nil, err
	}
	rep := &setReport{name: name, interval: bf.interval, b: b}
	if err := writeSummary(filepath.Join(out, "engine-summary.csv"), b); err != nil {
		return nil, err
	}
	skFile := filepath.Join(out, "sklearn-rows.csv")
	cmd := exec.Command(f.python, filepath.Join(f.scripts, "sklearn_baseline.py"), dir, "--out", skFile)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("scikit-learn baseline: %w\n%s", err, msg)
	}
	sk, err := readRowScores(skFile)
	if err != nil {
		return nil, err
	}
	// scikit-learn's score of every evaluated row of every run, aligned with the engine's.
	skScores := make(map[*replayed][]float64)
	for _, r := range b.runs {
		rows, ok := sk[r.s.name]
		if !ok {
			return nil, fmt.Errorf("scikit-learn scored no rows of %s", r.s.name)
		}
		scores, err := alignRows(r, rows)
		if err != nil {
			return nil, err
		}
		skScores[r] = scores
		rep.sklearn = append(rep.sklearn, rank(scores, r.labels))
	}
	rep.skMean = meanRank(rep.sklearn)
	rep.skPooled = pooledRank(b.runs, func(r *replayed) []float64 { return skScores[r] })
	chance := make([]rankFigures, len(b.all))
	pos, rows := 0, 0 // over the labelled inputs, as pooledRank ranks them
	for i, m := range b.all {
		chance[i] = chanceRank(m.positives, m.rows)
		if m.labelled {
			pos, rows = pos+m.positives, rows+m.rows
		}
	}
	rep.chance = meanRank(chance)
	rep.pooledCh = chanceRank(pos, rows)
	if !nab {
		return rep, nil
	}

	rep.nab = map[string]nabResult{}
	score := func(label, file string, threshold bool) error {
		res, err := nabScore(f, dir, file, threshold)
		if err != nil {
			return fmt.Errorf("nab score of %s: %w", label, err)
		}
		rep.nab[label] = res
		return nil
	}
	opened := filepath.Join(out, "engine-openings.csv")
	if err := writeRowValues(opened, b.every, func(r *replayed, i int) float64 { return bitf(r.rowOpened[i]) }); err != nil {
		return nil, err
	}
	if err := score("engine openings", opened, true); err != nil {
		return nil, err
	}
	raw := filepath.Join(out, "engine-scores.csv")
	if err := writeRowValues(raw, b.every, func(r *replayed, i int) float64 { return r.rowScore[i] }); err != nil {
		return nil, err
	}
	if err := score("engine score", raw, false); err != nil {
		return nil, err
	}
	skNAB := filepath.Join(out, "sklearn-scores.csv")
	if err := writeNABRows(skNAB, b.every, func(r *replayed, fileRow int) float64 { return sk[r.s.name][fileRow] }); err != nil {
		return nil, err
	}
	if err := score("scikit-learn score", skNAB, false); err != nil {
		return nil, err
	}
	// As many openings per file as the engine made, at random rows after the warm-up.
	sum := nabResult{}
	for d := range f.chanceDraws {
		rng := rand.New(rand.NewPCG(uint64(d), 0xC0FFEE))
		picked := map[*replayed]map[int]bool{}
		for _, r := range b.every {
			n := 0
			for _, o := range r.rowOpened {
				if o {
					n++
				}
			}
			m := map[int]bool{}
			for range min(n, len(r.s.rows)-r.first) {
				m[r.first+rng.IntN(len(r.s.rows)-r.first)] = true
			}
			picked[r] = m
		}
		file := filepath.Join(out, fmt.Sprintf("random-openings-%d.csv", d))
		if err := writeRowValues(file, b.every, func(r *replayed, i int) float64 { return bitf(picked[r][i]) }); err != nil {
			return nil, err
		}
		res, err := nabScore(f, dir, file, true)
		if err != nil {
			return nil, fmt.Errorf("nab score of random openings: %w", err)
		}
		for p, v := range res {
			sum[p] += v / float64(f.chanceDraws)
		}
	}
	rep.nab["random openings"] = sum
	return rep, nil
}

func bitf(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// meanRank averages ranking figures, skipping undefined ones.
func meanRank(all []rankFigures) rankFigures {
	get := func(f func(rankFigures) float64) float64 { return meanOf(all, f) }
	return rankFigures{
		get(func(x rankFigures) float64 { return x.rocAUC }),
		get(func(x rankFigures) float64 { return x.prAUC }),
		get(func(x rankFigures) float64 { return x.bestF1 }),
	}
}

// readRowScores reads file,row,score into per-file slices indexed by row.
func readRowScores(path string) (map[string][]float64, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	r := csv.NewReader(bufio.NewReader(fh))
	r.ReuseRecord = true
	if _, err := r.Read(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := map[string][]float64{}
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		row, err1 := strconv.Atoi(rec[1])
		v, err2 := strconv.ParseFloat(rec[2], 64)
		if err1 != nil || err2 != nil || row != len(out[rec[0]]) {
			return nil, fmt.Errorf("%s: bad row %v", path, rec)
		}
		out[rec[0]] = append(out[rec[0]], v)
	}
}

// alignRows picks from rows (scikit-learn's scores by test row for the ASD layout, by data row
// of the file otherwise) the score of each evaluated row of r.
func alignRows(r *replayed, rows []float64) ([]float64, error) {
	s := r.s
	out := make([]float64, len(r.score))
	if s.fileTimes == nil {
		if len(rows) != len(s.rows)-s.train {
			return nil, fmt.Errorf("%s: scikit-learn scored %d rows, the test part has %d", s.name, len(rows), len(s.rows)-s.train)
		}
		for k := range out {
			out[k] = rows[r.first+k-s.train]
		}
		return out, nil
	}
	if len(rows) != len(s.fileTimes) {
		return nil, fmt.Errorf("%s: scikit-learn scored %d rows, the file has %d", s.name, len(rows), len(s.fileTimes))
	}
	seen := make([]bool, len(s.rows))
	for j, i := range s.fileRow {
		if i >= r.first && !seen[i] {
			out[i-r.first], seen[i] = rows[j], true
		}
	}
	return out, nil
}

// writeNABRows writes file,timestamp,score for every data row of every run's file.
func writeNABRows(path string, runs []*replayed, value func(r *replayed, fileRow int) float64) error {
	return writeValues(path, runs, nil, value)
}

// nabScore runs NAB's scorer on a scores file: with threshold, every row scoring at least 0.5
// is a detection (a fixed 0/1); without, NAB's own threshold search.
func nabScore(f *evalFlags, dir, file string, threshold bool) (nabResult, error) {
	js := file + ".nab.json"
	args := []string{f.scorer, file, "--nab-dir", dir, "--json", js}
	if threshold {
		args = append(args, "--threshold", "0.5")
	}
	if msg, err := exec.Command(f.python, args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%s: %w\n%s", f.scorer, err, msg)
	}
	raw, err := os.ReadFile(js)
	if err != nil {
		return nil, err
	}
	var res map[string]struct {
		Normalized float64 `json:"normalized"`
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		return nil, fmt.Errorf("%s: %w", js, err)
	}
	out := nabResult{}
	for p, r := range res {
		out[p] = r.Normalized
	}
	return out, nil
}

// print writes the set's results as Markdown.
func (rep *setReport) print(w io.Writer) {
	b, m := rep.b, rep.b.mean
	f := func(v float64) string {
		if math.IsNaN(v) {
			return "–"
		}
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
	fmt.Fprintf(w, "### %s\n\n", rep.name)
	fmt.Fprintf(w, "%d inputs, %d evaluated rows one every %s, %.1f service-days, %d labelled segments (%s; %.0fs)\n\n",
		len(b.runs), m.rows, rep.interval, m.days, m.segments, strings.Join(append([]string{"engine defaults"}, b.skipped...), "; "), rep.took.Seconds())
	fmt.Fprintln(w, "| what a user gets | engine | as many alarms at random times |")
	fmt.Fprintln(w, "|---|---|---|")
	fmt.Fprintf(w, "| alarms (incidents opened and reopened) | %d | |\n", m.alarms)
	fmt.Fprintf(w, "| false alarms (overlap no labelled segment) | %d | %.1f |\n", m.falseAlarms, m.chance.False)
	fmt.Fprintf(w, "| false alarms per service-day | %s | %s |\n", f(m.falsePerDay), f(m.chance.False/m.days))
	if m.segments > 0 {
		fmt.Fprintf(w, "| labelled segments an incident opened in | %d/%d (%s) | %.1f (%s) |\n", m.found, m.segments, f(m.segRecall), m.chance.Found, f(m.chance.Found/float64(m.segments)))
		fmt.Fprintf(w, "| mean delay to that opening | %s rows (%s min) | |\n", f(m.delayRows), strconv.FormatFloat(m.delayMinutes, 'f', 0, 64))
	}
	fmt.Fprintf(w, "| hours open outside labelled segments, per service-day | %s | |\n\n", f(m.openOutside.Hours()/m.days))

	fmt.Fprintln(w, "| ranking of the rows | engine | scikit-learn | chance |")
	fmt.Fprintln(w, "|---|---|---|---|")
	row := func(what string, e, s, c float64) {
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", what, f(e), f(s), f(c))
	}
	row("ROC-AUC, mean over inputs", m.ranking.rocAUC, rep.skMean.rocAUC, rep.chance.rocAUC)
	row("PR-AUC, mean", m.ranking.prAUC, rep.skMean.prAUC, rep.chance.prAUC)
	row("best F1, mean", m.ranking.bestF1, rep.skMean.bestF1, rep.chance.bestF1)
	row("ROC-AUC, pooled", b.pooled.rocAUC, rep.skPooled.rocAUC, rep.pooledCh.rocAUC)
	row("PR-AUC, pooled", b.pooled.prAUC, rep.skPooled.prAUC, rep.pooledCh.prAUC)
	row("best F1, pooled", b.pooled.bestF1, rep.skPooled.bestF1, rep.pooledCh.bestF1)
	fmt.Fprintln(w)
	if m.hitRows > 0 {
		fmt.Fprintln(w, "| explanations (labelled rows the engine flagged) | engine | distance from the training median | random ranking |")
		fmt.Fprintln(w, "|---|---|---|---|")
		fmt.Fprintf(w, "| HitRate@100%% (%d rows) | %s | %s | %s |\n", m.hitRows, f(m.hit.at100), f(m.hitDeviation.at100), f(m.hitChance.at100))
		fmt.Fprintf(w, "| HitRate@150%% | %s | %s | %s |\n\n", f(m.hit.at150), f(m.hitDeviation.at150), f(m.hitChance.at150))
	}
	if rep.nab != nil {
		fmt.Fprintln(w, "| NAB score (0: detect nothing, 100: perfect) | standard | reward low FP | reward low FN |")
		fmt.Fprintln(w, "|---|---|---|---|")
		for _, k := range []string{"engine openings", "random openings", "engine score", "scikit-learn score"} {
			res := rep.nab[k]
			what := map[string]string{
				"engine openings":    "engine: its incident openings, a fixed 0/1",
				"random openings":    "as many openings at random rows (chance)",
				"engine score":       "engine: its score, NAB's threshold search",
				"scikit-learn score": "scikit-learn: its score, NAB's threshold search",
			}[k]
			fmt.Fprintf(w, "| %s | %.1f | %.1f | %.1f |\n", what, res[nabProfiles[0]], res[nabProfiles[1]], res[nabProfiles[2]])
		}
		fmt.Fprintln(w)
	}
}
