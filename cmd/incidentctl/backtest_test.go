package main

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/incident-engine/engine/domain/detect"
	"github.com/incident-engine/engine/domain/sample"
)

// readCSV reads a CSV file written by the backtest into records keyed by column name.
func readCSV(t *testing.T, path string) []map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(recs) == 0 {
		t.Fatalf("%s is empty", path)
	}
	var out []map[string]string
	for _, r := range recs[1:] {
		m := map[string]string{}
		for i, h := range recs[0] {
			m[h] = r[i]
		}
		out = append(out, m)
	}
	return out
}

func num(t *testing.T, rec map[string]string, col string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(rec[col], 64)
	if err != nil {
		t.Fatalf("column %s = %q: %v", col, rec[col], err)
	}
	return v
}

// runBacktest runs the command as a user would and returns its output.
func runBacktest(t *testing.T, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := run(append([]string{"backtest"}, args...), &stdout, &stderr); code != 0 {
		t.Fatalf("incidentctl backtest %v: exit %d\n%s%s", args, code, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// TestBacktestASDSlice replays the ASD slice in testdata (two entities, 2,000 training and
// 1,500 test rows each) and checks the outputs and that the figures are in range and better
// than chance.
func TestBacktestASDSlice(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out, scores, summary := filepath.Join(dir, "out"), filepath.Join(dir, "scores.csv"), filepath.Join(dir, "summary.csv")
	printed := runBacktest(t, "--out", out, "--scores", scores, "--summary", summary, filepath.Join("..", "..", "testdata", "asd-slice"))
	for _, want := range []string{"omi-1", "omi-2", "mean", "HitRate@100%/150%", "samples/s"} {
		if !strings.Contains(printed, want) {
			t.Errorf("output does not mention %q:\n%s", want, printed)
		}
	}

	flagged, open := 0, 0
	for _, entity := range []string{"omi-1", "omi-2"} {
		rows := readCSV(t, filepath.Join(out, entity+".csv"))
		if len(rows) != 1500 {
			t.Fatalf("%s: %d rows, want the 1,500 test rows", entity, len(rows))
		}
		first, err := time.Parse(time.RFC3339, rows[0]["timestamp"])
		if want := asdStart.Add(2000 * asdInterval); err != nil || !first.Equal(want) {
			t.Errorf("%s: first timestamp %q, want %s: test rows follow the 2,000 training rows 5 minutes apart", entity, rows[0]["timestamp"], want.Format(time.RFC3339))
		}
		for _, r := range rows {
			score, thr := num(t, r, "score"), num(t, r, "threshold")
			anomalous := r["anomalous"] == "1"
			if !(score >= 0 && score < 1) || !(thr > 0 && thr < 1) || (anomalous && score < thr) {
				t.Fatalf("%s row %v: score outside [0,1), threshold outside (0,1), or an anomaly below the threshold", entity, r)
			}
			if anomalous {
				flagged++
				if !strings.Contains(r["top"], ":") {
					t.Errorf("%s: anomalous row without its top metrics: %v", entity, r)
				}
			}
			if r["incident_open"] == "1" {
				open++
			}
			if r["label"] != "0" && r["label"] != "1" {
				t.Fatalf("%s: label %q", entity, r["label"])
			}
		}
	}
	if flagged == 0 || open == 0 || flagged > 1000 {
		t.Errorf("%d rows flagged, %d with an incident open; want some of each and not a third of the rows", flagged, open)
	}
	if got := readCSV(t, scores); len(got) != 3000 || got[0]["file"] != "omi-1" || got[2999]["file"] != "omi-2" {
		t.Errorf("scores file: %d rows, want both entities' 1,500 test rows in order", len(got))
	}

	sum := readCSV(t, summary)
	if len(sum) != 4 || sum[2]["file"] != "mean" || sum[3]["file"] != "pooled" {
		t.Fatalf("summary %v: want omi-1, omi-2, mean and pooled", sum)
	}
	if v := num(t, sum[3], "roc_auc"); !(v > 0.6 && v <= 1) {
		t.Errorf("pooled ROC-AUC %v: want clearly above chance", v)
	}
	for i, r := range sum[:3] {
		base := num(t, r, "anomalous_rows") / num(t, r, "rows")
		checks := []struct {
			col    string
			lo, hi float64
			why    string
		}{
			{"roc_auc", 0.6, 1, "ranks anomalies above normal rows clearly better than chance (0.5)"},
			{"pr_auc", 1.5 * base, 1, "well above the share of anomalous rows, what a random score gets"},
			{"best_f1", 0.2, 1, "some threshold finds the anomalies"},
			{"samples_per_s", math.SmallestNonzeroFloat64, math.Inf(1), "throughput is reported (benchmarks measure it)"},
		}
		if i == 2 { // the slice's two entities have six segments together
			checks = append(checks,
				struct {
					col    string
					lo, hi float64
					why    string
				}{"segments_found", max(1, 2*num(t, r, "chance_segments_found")), 6, "incidents open inside labelled segments, twice as many as the same alarms at random times"},
				struct {
					col    string
					lo, hi float64
					why    string
				}{"hit100", num(t, r, "hit100_chance") + 0.2, 1, "the explanations name the metrics operators named, far more often than a random ranking does"},
				struct {
					col    string
					lo, hi float64
					why    string
				}{"hit150", num(t, r, "hit150_chance") + 0.2, 1, "the same at 150%"})
		}
		for _, c := range checks {
			if v := num(t, r, c.col); !(v >= c.lo && v <= c.hi) {
				t.Errorf("%s %s = %v, want in [%v, %v]: %s", r["file"], c.col, v, c.lo, c.hi, c.why)
			}
		}
	}
}

// writeSeries writes one univariate service as CSV: timestamp,value[,label], one row a minute,
// Gaussian noise around a level (sd 1), and the rows in [shiftAt, shiftAt+shiftLen) raised by
// shift.
func writeSeries(t *testing.T, path string, seed uint64, unix, labelled bool, shiftAt, shiftLen int, shift float64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 1))
	var b strings.Builder
	b.WriteString("timestamp,value")
	if labelled {
		b.WriteString(",label")
	}
	b.WriteString("\n")
	t0 := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	for i := range 900 {
		at := t0.Add(time.Duration(i) * time.Minute)
		v := 50 + rng.NormFloat64()
		inside := i >= shiftAt && i < shiftAt+shiftLen
		if inside {
			v += shift
		}
		ts := at.Format(time.RFC3339)
		if unix {
			ts = strconv.FormatInt(at.Unix(), 10)
		}
		fmt.Fprintf(&b, "%s,%.3f", ts, v)
		if labelled {
			fmt.Fprintf(&b, ",%d", map[bool]int{false: 0, true: 1}[inside])
		}
		b.WriteString("\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestBacktestSeed checks --seed: the same seed scores every row alike, another seed grows other
// forests, so other scores, while the shift stays found.
func TestBacktestSeed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeSeries(t, filepath.Join(dir, "shifted.csv"), 1, false, true, 600, 60, 8)
	scores := func(seed string) string {
		out := t.TempDir()
		runBacktest(t, "--seed", seed, "--scores", filepath.Join(out, "scores.csv"), "--summary", filepath.Join(out, "summary.csv"), dir)
		if found := num(t, readCSV(t, filepath.Join(out, "summary.csv"))[0], "segments_found"); found != 1 {
			t.Errorf("seed %s: %v segments found, want the shift", seed, found)
		}
		b, err := os.ReadFile(filepath.Join(out, "scores.csv"))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	first, again, other := scores("0"), scores("0"), scores("7")
	if first != again {
		t.Error("the same seed scored the rows differently")
	}
	if first == other {
		t.Error("seeds 0 and 7 scored every row alike: the seed does not reach the forests")
	}
}

// TestBacktestLevelShift generates a directory of univariate services, one with a level
// shift of 8 standard deviations for an hour and labels, one without either (and with Unix
// timestamps), and checks that the backtest finds the shift at once and scores both.
func TestBacktestLevelShift(t *testing.T) {
	t.Parallel()
	dir, out := t.TempDir(), t.TempDir()
	writeSeries(t, filepath.Join(dir, "shifted.csv"), 1, false, true, 600, 60, 8)
	writeSeries(t, filepath.Join(dir, "healthy.csv"), 2, true, false, 0, 0, 0)
	runBacktest(t, "--summary", filepath.Join(out, "summary.csv"), "--out", out, dir)

	sum := readCSV(t, filepath.Join(out, "summary.csv"))
	byFile := map[string]map[string]string{}
	for _, r := range sum {
		byFile[r["file"]] = r
	}
	s, h := byFile["shifted"], byFile["healthy"]
	if s == nil || h == nil {
		t.Fatalf("summary %v: want rows for shifted and healthy", sum)
	}
	if num(t, s, "rows") != 900-256 || num(t, s, "segments") != 1 || num(t, s, "segments_found") != 1 {
		t.Errorf("shifted: %v; want the 644 rows after the warm-up, the one segment found", s)
	}
	if d := num(t, s, "delay_rows"); d > 10 {
		t.Errorf("shifted: incident opened %v rows into the shift, want within 10 (the evidence is the mean surprise of the last ten samples, and the open rule wants 6 anomalous minutes of the last 8): 8 sigma is obvious", d)
	}
	if num(t, s, "false_alarms") != 0 || num(t, s, "roc_auc") < 0.95 {
		t.Errorf("shifted: %v; want no false incident and the shift ranked above the rest", s)
	}
	// Pure noise opens the odd false incident (about one a day, see docs/results.md), so the
	// healthy service only checks the unlabelled path: nothing to rank, every incident false.
	if h["roc_auc"] != "" || h["segment_recall"] != "" || num(t, h, "rows") != 644 || h["alarms"] != h["false_alarms"] {
		t.Errorf("healthy: %v; want 644 rows, no labels to score, every incident counted false", h)
	}
	rows := readCSV(t, filepath.Join(out, "shifted.csv"))
	if len(rows) != 644 || rows[0]["timestamp"] != "2024-05-01T04:16:00Z" {
		t.Fatalf("shifted.csv: %d rows from %v; want 644 from the first row after the warm-up", len(rows), rows[0])
	}
	if r := rows[600-256+10]; r["incident_open"] != "1" || !strings.HasPrefix(r["top"], "value:1.00") {
		t.Errorf("ten minutes into the shift: %v; want an open incident naming value", r)
	}
	if r := rows[len(rows)-1]; r["incident_open"] != "0" {
		t.Errorf("three hours after the shift ended: %v; want the incident resolved", r)
	}
}

func TestBacktestInputErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name string
		args []string
		code int
		want string
		why  string
	}{
		{"no path", nil, 2, "exactly one PATH", "nothing to replay"},
		{"two paths", []string{"a", "b"}, 2, "exactly one PATH", "one input per run"},
		{"bad flag", []string{"--warm-up", "3", "x"}, 2, "at least 16", "the detector cannot train on 3 rows"},
		{"bad explanation", []string{"--explain", "shap", "x"}, 2, "unknown explanation", "only the two methods exist"},
		{"missing", []string{filepath.Join(dir, "none")}, 1, "no such file", "the error names the problem"},
		{"no timestamp", []string{write("a.csv", "time,value\n1,2\n")}, 1, "no timestamp column", "the timestamp column is required"},
		{"bad label", []string{write("b.csv", "timestamp,value,label\n1700000000,1,2\n")}, 1, "not 0 or 1", "labels are 0/1"},
		{"bad time", []string{write("c.csv", "timestamp,value\nyesterday,1\n")}, 1, "line 2", "the line is named"},
		{"too short", []string{write("d.csv", "timestamp,value\n1700000000,1\n")}, 1, "none left to evaluate", "every row would be warm-up"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"backtest"}, tc.args...), &stdout, &stderr)
			if code != tc.code || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("backtest %v: exit %d, stderr %q; want exit %d mentioning %q (%s)", tc.args, code, stderr.String(), tc.code, tc.want, tc.why)
			}
		})
	}
}

func TestParseTimestamp(t *testing.T) {
	t.Parallel()
	want := time.Date(2024, 5, 1, 12, 30, 0, 0, time.UTC)
	cases := []struct {
		name, in string
		why      string
	}{
		{"RFC 3339", "2024-05-01T12:30:00Z", "the worker's own format"},
		{"RFC 3339 with offset", "2024-05-01T14:30:00+02:00", "converted to UTC"},
		{"date and time", "2024-05-01 12:30:00", "the layout of many public benchmarks, read as UTC"},
		{"Unix seconds", strconv.FormatInt(want.Unix(), 10), "the worker accepts it too"},
		{"Unix with fraction", strconv.FormatInt(want.Unix(), 10) + ".0", "a float column"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseTimestamp(tc.in)
			if err != nil || !got.Equal(want) {
				t.Errorf("parseTimestamp(%q) = %v, %v; want %v (%s)", tc.in, got, err, want, tc.why)
			}
		})
	}
}

func TestNaturalCompare(t *testing.T) {
	t.Parallel()
	cases := []struct {
		a, b string
		want int // sign
		why  string
	}{
		{"omi-2", "omi-10", -1, "numbers compare by value"},
		{"omi-10", "omi-9", 1, "not by characters"},
		{"a", "b", -1, "plain text as usual"},
		{"omi-1", "omi-1", 0, "equal"},
	}
	for _, tc := range cases {
		if got := naturalCompare(tc.a, tc.b); (got > 0) != (tc.want > 0) || (got < 0) != (tc.want < 0) {
			t.Errorf("naturalCompare(%q, %q) = %d, want sign %d (%s)", tc.a, tc.b, got, tc.want, tc.why)
		}
	}
}

// BenchmarkScoreASD measures what the backtest reports as scoring throughput, on real data:
// Detector.Observe on the 19 metrics of the ASD slice's omi-1 (value and volatility of each,
// 38 forest features), trained on its training rows as the backtest does, retraining pushed
// out of the way. Run it on one core: go test -run '^$' -bench ScoreASD -cpu 1 ./cmd/incidentctl/
func BenchmarkScoreASD(b *testing.B) {
	inputs, err := loadInputs(filepath.Join("..", "..", "testdata", "asd-slice"), loadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	s := inputs[0]
	d, err := detect.New(s.name, detect.Config{WarmUp: 1440, RetrainEvery: 1 << 62})
	if err != nil {
		b.Fatal(err)
	}
	samples := make([]sample.Sample, len(s.rows))
	for i, row := range s.rows {
		ms := make([]sample.Metric, len(row))
		for j, v := range row {
			ms[j] = sample.Metric{Name: s.columns[j], Value: v}
		}
		if samples[i], err = sample.New(s.name, s.at[i], ms); err != nil {
			b.Fatal(err)
		}
	}
	for _, smp := range samples[:s.train] {
		if _, err := d.Observe(smp); err != nil {
			b.Fatal(err)
		}
	}
	test := samples[s.train:]
	at := test[0].At
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		smp := test[i%len(test)]
		smp.At = at.Add(time.Duration(i) * asdInterval)
		if _, err := d.Observe(smp); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "samples/s")
}

// TestBacktestNABLayout builds a small corpus in NAB's layout (a file with one window and a
// repeated timestamp, a file too short to evaluate) and checks that windows become labelled
// segments, the short file is left out without stopping the run, and --scores and --openings
// write what NAB's scorer reads: every data row of every file, its timestamp as written.
func TestBacktestNABLayout(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mk := func(rel, body string) {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	var b strings.Builder
	b.WriteString("timestamp,value\n")
	t0 := time.Date(2014, 4, 1, 0, 0, 0, 0, time.UTC)
	const n = 2000
	for i := range n {
		v := 10 + rng.NormFloat64()
		if i >= 1500 && i < 1520 {
			v += 15
		}
		fmt.Fprintf(&b, "%s,%.3f\n", t0.Add(time.Duration(i)*5*time.Minute).Format(time.DateTime), v)
		if i == 400 {
			fmt.Fprintf(&b, "%s,%.3f\n", t0.Add(time.Duration(i)*5*time.Minute).Format(time.DateTime), v) // repeated
		}
	}
	mk("data/cat/long.csv", b.String())
	mk("data/cat/short.csv", "timestamp,value\n2014-04-01 00:00:00,1\n2014-04-01 00:05:00,2\n")
	win := func(i int) string { return t0.Add(time.Duration(i)*5*time.Minute).Format(time.DateTime) + ".000000" }
	mk("labels/combined_windows.json", fmt.Sprintf(`{"cat/long.csv": [["%s", "%s"]], "cat/short.csv": []}`, win(1450), win(1549)))

	out := t.TempDir()
	scores, openings, summary := filepath.Join(out, "scores.csv"), filepath.Join(out, "openings.csv"), filepath.Join(out, "summary.csv")
	printed := runBacktest(t, "--scores", scores, "--openings", openings, "--summary", summary, dir)
	if !strings.Contains(printed, "left out: cat/short.csv") {
		t.Errorf("output does not say the short file was left out:\n%s", printed)
	}
	sum := readCSV(t, summary)
	if len(sum) != 3 || sum[0]["file"] != "cat/long.csv" {
		t.Fatalf("summary %v: want cat/long.csv, mean and pooled", sum)
	}
	// NAB's probation is 15% of the 2,001 data rows: rows 0-299; the window is rows 1450-1549.
	if got := num(t, sum[0], "rows"); got != n-300 {
		t.Errorf("evaluated rows %v, want the %d after NAB's probation", got, n-300)
	}
	if num(t, sum[0], "segments") != 1 || num(t, sum[0], "segments_found") != 1 || num(t, sum[0], "anomalous_rows") != 100 {
		t.Errorf("summary %v: want one segment of 100 rows, found", sum[0])
	}
	for _, path := range []string{scores, openings} {
		rows := readCSV(t, path)
		if len(rows) != n+1+2 {
			t.Fatalf("%s: %d rows, want every data row of both files (%d)", path, len(rows), n+3)
		}
		if rows[0]["file"] != "cat/long.csv" || rows[0]["timestamp"] != "2014-04-01 00:00:00" || rows[0]["score"] != "0.000000" {
			t.Errorf("%s: first row %v, want the file's own timestamp and 0 during warm-up", path, rows[0])
		}
		if rows[400]["timestamp"] != rows[401]["timestamp"] || rows[400]["score"] != rows[401]["score"] || (path == scores && rows[400]["score"] == "0.000000") {
			t.Errorf("%s: the repeated timestamp got %v and %v, want the same judged score twice", path, rows[400], rows[401])
		}
	}
	opened := 0
	for _, r := range readCSV(t, openings) {
		if r["score"] == "1.000000" {
			opened++
		} else if r["score"] != "0.000000" {
			t.Fatalf("openings: %v is neither 0 nor 1", r)
		}
	}
	if want := int(num(t, sum[0], "alarms")); opened < want {
		t.Errorf("openings file marks %d rows, the summary counts %d alarms", opened, want)
	}
}
