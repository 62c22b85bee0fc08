package main

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/incident-engine/engine/domain/evaluate"
)

// asdInterval is the time between two rows of the ASD dataset; asdStart is the synthetic time of
// an entity's first training row (the dataset publishes no timestamps).
const asdInterval = 5 * time.Minute

var asdStart = time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC)

// series is one service's metrics as the backtest replays them.
type series struct {
	name    string      // the file or entity, used as the service name (NAB: its relative path)
	columns []string    // metric names, in column order
	at      []time.Time // one per row, strictly increasing
	rows    [][]float64 // one value per column
	// train is the number of leading rows that only train (ASD: train/); the rest are
	// evaluated. Zero means the leading WarmUp rows train.
	train int
	// evalFrom, when above the training rows, is the first evaluated row: NAB's probation
	// period is judged by the detector but scored by no one.
	evalFrom int
	labels   []bool             // per row, nil when the input has no labels
	segments []evaluate.Segment // the labelled segments (rows), when they are not runs of labels
	explain  []explained
	dropped  int // rows left out: a missing or non-finite value, or a time not after the last
	// fileTimes holds, for CSV input, the timestamp of every data row of the file as written
	// there, and fileRow the row of the series that stands for it (a dropped row takes the
	// kept row before it, -1 if none): NAB's scorer wants a score for every row of the file.
	fileTimes []string
	fileRow   []int
}

// loadOptions are the loaders' settings.
type loadOptions struct {
	// interval is the time between two rows of the ASD layout, which has no timestamps.
	interval time.Duration
}

// explained is one labelled anomaly segment with the metrics operators judged responsible.
type explained struct {
	seg  evaluate.Segment // rows of the whole series
	dims []int            // column indices
}

// loadInputs reads path: an ASD-layout directory (train/, test/, test_label/ and optionally
// interpretation_label/), a NAB-layout directory (data/<category>/<file>.csv and
// labels/combined_windows.json), a directory of CSV files, or one CSV file.
func loadInputs(path string, o loadOptions) ([]*series, error) {
	if o.interval <= 0 {
		o.interval = asdInterval
	}
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("backtest input: %w", err)
	}
	if !info.IsDir() {
		s, err := loadCSV(path)
		if err != nil {
			return nil, err
		}
		return []*series{s}, nil
	}
	if isDir(filepath.Join(path, "train")) && isDir(filepath.Join(path, "test")) {
		return loadASD(path, o.interval)
	}
	if isDir(filepath.Join(path, "data")) && isFile(filepath.Join(path, "labels", "combined_windows.json")) {
		return loadNAB(path)
	}
	files, err := filepath.Glob(filepath.Join(path, "*.csv"))
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", path, err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s holds no *.csv files and is not in the ASD layout (train/, test/)", path)
	}
	slices.SortFunc(files, naturalCompare)
	var out []*series
	for _, f := range files {
		s, err := loadCSV(f)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func isDir(p string) bool {
	info, err := os.Stat(p)
	return err == nil && info.IsDir()
}

func isFile(p string) bool {
	info, err := os.Stat(p)
	return err == nil && info.Mode().IsRegular()
}

// loadCSV reads one service's CSV: a header, a timestamp column, numeric metric columns and an
// optional 0/1 label column.
func loadCSV(path string) (*series, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	r := csv.NewReader(bufio.NewReader(f))
	r.ReuseRecord = true
	header, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("%s: read header: %w", path, err)
	}
	tsCol, labelCol := -1, -1
	var metricCols []int
	s := &series{name: strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))}
	seen := map[string]bool{}
	for i, h := range header {
		h = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))
		switch strings.ToLower(h) {
		case "timestamp":
			tsCol = i
			continue
		case "label":
			labelCol = i
			continue
		}
		name := metricName(h, i)
		if seen[name] {
			return nil, fmt.Errorf("%s: column %q appears twice (as metric %q)", path, h, name)
		}
		seen[name] = true
		metricCols = append(metricCols, i)
		s.columns = append(s.columns, name)
	}
	if tsCol < 0 {
		return nil, fmt.Errorf("%s: no timestamp column in header %v", path, header)
	}
	if len(metricCols) == 0 {
		return nil, fmt.Errorf("%s: no metric columns besides timestamp and label", path)
	}
	if labelCol >= 0 {
		s.labels = []bool{}
	}
	for line := 2; ; line++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		at, err := parseTimestamp(rec[tsCol])
		if err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, line, err)
		}
		s.fileTimes = append(s.fileTimes, rec[tsCol])
		s.fileRow = append(s.fileRow, len(s.rows)-1)
		row := make([]float64, len(metricCols))
		ok := len(s.at) == 0 || at.After(s.at[len(s.at)-1])
		for j, c := range metricCols {
			v, err := strconv.ParseFloat(strings.TrimSpace(rec[c]), 64)
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
				ok = false
			}
			row[j] = v
		}
		if !ok {
			// The worker would dead-letter such a sample or ignore it as out of order.
			s.dropped++
			continue
		}
		if labelCol >= 0 {
			l, err := strconv.ParseFloat(strings.TrimSpace(rec[labelCol]), 64)
			if err != nil || (l != 0 && l != 1) {
				return nil, fmt.Errorf("%s line %d: label %q is not 0 or 1", path, line, rec[labelCol])
			}
			s.labels = append(s.labels, l == 1)
		}
		s.fileRow[len(s.fileRow)-1] = len(s.rows)
		s.at = append(s.at, at)
		s.rows = append(s.rows, row)
	}
	if len(s.rows) == 0 {
		return nil, fmt.Errorf("%s: no usable rows", path)
	}
	return s, nil
}

// metricName turns a column header into a valid metric name: characters sample names do not
// allow become '_', and an empty header is named after its position.
func metricName(h string, i int) string {
	name := strings.Map(func(r rune) rune {
		if r == '_' || r == '.' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, h)
	if name == "" {
		name = "col" + strconv.Itoa(i)
	}
	return name[:min(len(name), 64)]
}

// parseTimestamp accepts RFC 3339, "2006-01-02 15:04:05" (UTC) and Unix seconds.
func parseTimestamp(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateTime, s); err == nil {
		return t, nil
	}
	if v, err := strconv.ParseFloat(s, 64); err == nil && v > 0 && v < 1e11 {
		sec, frac := math.Modf(v)
		return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("timestamp %q is neither RFC 3339, \"YYYY-MM-DD hh:mm:ss\" nor Unix seconds", s)
}

// loadASD reads every entity of the ASD layout: train/ENTITY.txt, test/ENTITY.txt,
// test_label/ENTITY.txt and interpretation_label/ENTITY.txt. Rows get synthetic timestamps
// interval apart, training rows first; columns are named m1, m2, ...
func loadASD(dir string, interval time.Duration) ([]*series, error) {
	files, err := filepath.Glob(filepath.Join(dir, "test", "*.txt"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("%s: no test/*.txt files", dir)
	}
	slices.SortFunc(files, naturalCompare)
	var out []*series
	for _, f := range files {
		entity := strings.TrimSuffix(filepath.Base(f), ".txt")
		s, err := loadASDEntity(dir, entity, interval)
		if err != nil {
			return nil, fmt.Errorf("asd entity %s: %w", entity, err)
		}
		out = append(out, s)
	}
	return out, nil
}

func loadASDEntity(dir, entity string, interval time.Duration) (*series, error) {
	train, err := readMatrix(filepath.Join(dir, "train", entity+".txt"))
	if err != nil {
		return nil, err
	}
	test, err := readMatrix(filepath.Join(dir, "test", entity+".txt"))
	if err != nil {
		return nil, err
	}
	if len(train) == 0 || len(test) == 0 {
		return nil, errors.New("empty train or test file")
	}
	dims := len(train[0])
	for i, r := range slices.Concat(train, test) {
		if len(r) != dims {
			return nil, fmt.Errorf("row %d has %d values, want %d", i, len(r), dims)
		}
	}
	s := &series{name: entity, train: len(train), rows: slices.Concat(train, test)}
	for j := range dims {
		s.columns = append(s.columns, "m"+strconv.Itoa(j+1))
	}
	for i := range s.rows {
		s.at = append(s.at, asdStart.Add(time.Duration(i)*interval))
	}
	lab, err := readMatrix(filepath.Join(dir, "test_label", entity+".txt"))
	if err != nil {
		return nil, err
	}
	if len(lab) != len(test) {
		return nil, fmt.Errorf("%d test labels for %d test rows", len(lab), len(test))
	}
	s.labels = make([]bool, len(s.rows))
	for i, l := range lab {
		if len(l) != 1 || (l[0] != 0 && l[0] != 1) {
			return nil, fmt.Errorf("test label %d is not one 0 or 1", i+1)
		}
		s.labels[len(train)+i] = l[0] == 1
	}
	s.explain, err = readInterpretation(filepath.Join(dir, "interpretation_label", entity+".txt"), len(train), len(test), dims)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// nabProbation is NAB's probationary share of each file: its first 15% of rows (at most 750)
// are not scored (nab/util.py getProbationPeriod).
const nabProbation = 0.15

// loadNAB reads the NAB layout: every file named in labels/combined_windows.json, from
// data/<category>/<file>.csv, its rows inside a window labelled anomalous and each window one
// segment. Series are named by their path under data/, as NAB's scorer names them. Rows in
// NAB's probationary period are replayed but not evaluated.
func loadNAB(dir string) ([]*series, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "labels", "combined_windows.json"))
	if err != nil {
		return nil, fmt.Errorf("nab labels: %w", err)
	}
	var windows map[string][][2]string
	if err := json.Unmarshal(raw, &windows); err != nil {
		return nil, fmt.Errorf("nab labels %s: %w", filepath.Join(dir, "labels", "combined_windows.json"), err)
	}
	names := make([]string, 0, len(windows))
	for rel := range windows {
		names = append(names, rel)
	}
	slices.Sort(names)
	var out []*series
	for _, rel := range names {
		s, err := loadCSV(filepath.Join(dir, "data", filepath.FromSlash(rel)))
		if err != nil {
			return nil, err
		}
		s.name = rel
		s.labels = make([]bool, len(s.rows))
		for _, w := range windows[rel] {
			from, err1 := parseTimestamp(strings.TrimSuffix(w[0], ".000000"))
			to, err2 := parseTimestamp(strings.TrimSuffix(w[1], ".000000"))
			if err1 != nil || err2 != nil || to.Before(from) {
				return nil, fmt.Errorf("nab labels: %s: window %q is not two times in order", rel, w)
			}
			a, _ := slices.BinarySearchFunc(s.at, from, func(t, x time.Time) int { return t.Compare(x) })
			b, _ := slices.BinarySearchFunc(s.at, to.Add(time.Nanosecond), func(t, x time.Time) int { return t.Compare(x) })
			if a >= b {
				return nil, fmt.Errorf("nab labels: %s: window %q holds no row", rel, w)
			}
			for i := a; i < b; i++ {
				s.labels[i] = true
			}
			s.segments = append(s.segments, evaluate.Segment{Start: a, End: b})
		}
		s.evalFrom = s.fileRow[min(len(s.fileRow)-1, int(math.Min(math.Floor(nabProbation*float64(len(s.fileRow))), nabProbation*5000)))]
		out = append(out, s)
	}
	return out, nil
}

// readMatrix reads comma-separated numbers, one row a line, without a header.
func readMatrix(path string) ([][]float64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %w", err)
	}
	var out [][]float64
	for n, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		fields := strings.Split(strings.TrimSpace(line), ",")
		row := make([]float64, len(fields))
		for j, f := range fields {
			v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("%s line %d: value %q is not a finite number", path, n+1, f)
			}
			row[j] = v
		}
		out = append(out, row)
	}
	return out, nil
}

// readInterpretation reads ASD's interpretation labels, "start-end:d1,d2,..." per line, rows
// 0-based in test/ with end exclusive, dimensions 1-based. A missing file means no
// interpretations. Segments are shifted by offset (the training rows) and clipped to the
// test rows.
func readInterpretation(path string, offset, rows, dims int) ([]explained, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %w", err)
	}
	var out []explained
	for n, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		bad := func(why string) error { return fmt.Errorf("%s line %d %q: %s", path, n+1, line, why) }
		span, list, ok := strings.Cut(line, ":")
		from, to, ok2 := strings.Cut(span, "-")
		if !ok || !ok2 {
			return nil, bad("want start-end:d1,d2,...")
		}
		start, err1 := strconv.Atoi(from)
		end, err2 := strconv.Atoi(to)
		if err1 != nil || err2 != nil || start < 0 || end <= start {
			return nil, bad("bad row range")
		}
		var e explained
		for _, d := range strings.Split(list, ",") {
			k, err := strconv.Atoi(strings.TrimSpace(d))
			if err != nil || k < 1 || k > dims {
				return nil, bad(fmt.Sprintf("dimension %q is not in 1..%d", d, dims))
			}
			e.dims = append(e.dims, k-1)
		}
		if start >= rows {
			continue
		}
		e.seg = evaluate.Segment{Start: offset + start, End: offset + min(end, rows)}
		out = append(out, e)
	}
	return out, nil
}

// naturalCompare orders names with embedded numbers numerically: omi-2 before omi-10.
func naturalCompare(a, b string) int {
	for a != "" && b != "" {
		da, db := digitsPrefix(a), digitsPrefix(b)
		if da > 0 && db > 0 {
			na, _ := strconv.Atoi(a[:da])
			nb, _ := strconv.Atoi(b[:db])
			if na != nb {
				return na - nb
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return int(a[0]) - int(b[0])
		}
		a, b = a[1:], b[1:]
	}
	return len(a) - len(b)
}

func digitsPrefix(s string) int {
	n := 0
	for n < len(s) && n < 9 && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	return n
}
