package main

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/incident-engine/engine/handlers"
	"github.com/incident-engine/engine/infra/kafka"
)

// TestWorkerAndBacktestAgree feeds one stream to the worker and, exported as CSV, to
// `incidentctl backtest`: both run the same detector, so every judged sample gets the same
// flag and the same score.
func TestWorkerAndBacktestAgree(t *testing.T) {
	e := startEngine(t, nil)
	e.produce(t, "--failure-mode", "meltdown", "--start", simStart.Format(time.RFC3339), "--duration", "9h",
		"--failure-after", failAfter.String(), "--failure-for", failFor.String())
	e.waitProcessed(t, simStart.Add(9*time.Hour-time.Minute), "api", "db", "auth")

	recs, err := kafka.ReadAll(kafka.Config{Brokers: e.brokers}, "metrics.scored")
	if err != nil {
		t.Fatal(err)
	}
	in := t.TempDir()
	type judged struct {
		anomalous bool
		score     float64
	}
	worker := map[string]judged{} // service|timestamp -> the worker's judgement
	files := map[string]*csv.Writer{}
	for _, r := range recs {
		var s handlers.ScoredSample
		if err := json.Unmarshal(r.Message.Payload, &s); err != nil {
			t.Fatal(err)
		}
		w := files[s.Service]
		if w == nil {
			f, err := os.Create(filepath.Join(in, s.Service+".csv"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			w = csv.NewWriter(f)
			defer w.Flush()
			files[s.Service] = w
			_ = w.Write([]string{"timestamp", "error_rate", "latency_p95", "request_count"})
		}
		ts := s.Timestamp.UTC().Format(time.RFC3339)
		_ = w.Write([]string{ts, fmt.Sprint(s.Metrics["error_rate"]), fmt.Sprint(s.Metrics["latency_p95"]), fmt.Sprint(s.Metrics["request_count"])})
		if s.Judged {
			worker[s.Service+"|"+ts] = judged{s.Anomalous, s.Score}
		}
	}
	for _, w := range files {
		w.Flush()
	}
	out := t.TempDir()
	runTool(t, buildTool(t, "incidentctl"), nil, "backtest", "--quiet", "--out", out, in)

	compared, anomalies := 0, 0
	for service := range files {
		f, err := os.Open(filepath.Join(out, service+".csv"))
		if err != nil {
			t.Fatal(err)
		}
		rows, err := csv.NewReader(f).ReadAll()
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, row := range rows[1:] {
			want, ok := worker[service+"|"+row[0]]
			if !ok {
				t.Fatalf("%s %s: judged by the backtest, not by the worker", service, row[0])
			}
			if (row[3] == "1") != want.anomalous || fmt.Sprintf("%.6f", want.score) != row[1] {
				t.Errorf("%s %s: backtest flag %s score %s, worker %v %.6f", service, row[0], row[3], row[1], want.anomalous, want.score)
			}
			compared++
			if want.anomalous {
				anomalies++
			}
		}
	}
	if compared != len(worker) || anomalies < 50 {
		t.Errorf("compared %d of the worker's %d judged samples (%d anomalous); want all of them, the meltdown among them", compared, len(worker), anomalies)
	}
}
