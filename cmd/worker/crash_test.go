package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/incident-engine/engine/infra/kafka"
	"github.com/incident-engine/engine/infra/postgres"
	"github.com/incident-engine/engine/infra/postgres/pgtest"
)

// workerBin is this command, built once for the tests that run it as a process.
var workerBin string

// process is the worker binary run against a broker and a database that outlive it.
type process struct {
	brokers []string
	dbURL   string
	pool    *pgxpool.Pool
	cmd     *exec.Cmd
	logs    strings.Builder
}

func newProcessEngine(t *testing.T) *process {
	t.Helper()
	broker, err := kafka.StartBroker(kafka.BrokerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(broker.Close)
	p := &process{brokers: broker.Addrs(), dbURL: pgtest.Database(t)}
	p.pool, err = postgres.Connect(context.Background(), p.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.pool.Close)
	t.Cleanup(func() { p.kill(t) })
	return p
}

// start runs the worker process.
func (p *process) start(t *testing.T) {
	t.Helper()
	p.cmd = exec.Command(workerBin)
	p.cmd.Env = append(os.Environ(), "KAFKA_BROKERS="+strings.Join(p.brokers, ","), "DATABASE_URL="+p.dbURL,
		"HTTP_ADDR=127.0.0.1:0", "TICK_INTERVAL=200ms", "LOG_LEVEL=warn")
	p.cmd.Stdout, p.cmd.Stderr = &p.logs, &p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
}

// kill ends the worker process with SIGKILL: no shutdown, no last commit.
func (p *process) kill(t *testing.T) {
	t.Helper()
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
	p.cmd = nil
}

func (p *process) count(t *testing.T, query string) int {
	t.Helper()
	var n int
	if err := p.pool.QueryRow(context.Background(), query).Scan(&n); err != nil {
		return -1 // the schema may not be there yet
	}
	return n
}

// outcome is everything the engine decided, wall-clock fields aside: every sample's score
// and judgement, every model, every incident and its timeline.
func (p *process) outcome(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	dump := func(query string) {
		rows, err := p.pool.Query(context.Background(), query)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			vals, err := rows.Values()
			if err != nil {
				t.Fatal(err)
			}
			line, _ := json.Marshal(vals)
			b.Write(line)
			b.WriteByte('\n')
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	dump(`SELECT service, at, score, threshold, anomalous, model_version FROM samples ORDER BY service, at`)
	dump(`SELECT service, version, rows, window_from, window_to, trained_at, threshold, md5(forest) FROM models ORDER BY service, version`)
	dump(`SELECT id::text, service, severity, status, occurrence_count, first_seen, last_seen, resolved_at FROM incidents ORDER BY service, first_seen`)
	dump(`SELECT incident_id::text, event, occurred_at, details FROM incident_timeline ORDER BY incident_id, occurred_at, id`)
	return b.String()
}

// waitDone waits until every service's last sample is correlated and the outbox drained.
func (p *process) waitDone(t *testing.T, last time.Time, services ...string) {
	t.Helper()
	waitFor(t, 4*time.Minute, "the stream to be processed", func() (bool, string) {
		var n int
		err := p.pool.QueryRow(context.Background(), `SELECT count(*) FROM service_watch WHERE service = ANY($1) AND last_sample_at = $2`, services, last).Scan(&n)
		if err != nil {
			return false, err.Error()
		}
		outbox := p.count(t, `SELECT (SELECT count(*) FROM "watermill_incidents.correlated") + (SELECT count(*) FROM "watermill_incidents.outbox")`)
		samples := p.count(t, `SELECT count(*) FROM samples`)
		return n == len(services) && outbox == 0 && samples == 3*crashSamples, fmt.Sprintf("%d of %d services done, %d outbox rows, %d samples recorded", n, len(services), outbox, samples)
	})
}

// crashSamples is each service's samples in the crash test's stream: 30 hours, one a minute.
const crashSamples = 30 * 60

// TestKilledWorkerDecidesAlike runs the same stream through the real worker binary twice,
// against a broker and a PostgreSQL that outlive it: once uninterrupted, once killed with
// SIGKILL again and again (during the warm-up, mid-stream, in the failure) and restarted. The
// engine must decide exactly alike: the same score for every sample, the same models trained
// on the same rows, the same incidents and timelines.
func TestKilledWorkerDecidesAlike(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the worker binary several times")
	}
	services := []string{"api", "db", "auth"}
	last := simStart.Add(crashSamples*time.Minute - time.Minute)
	run := func(kills []int) string {
		p := newProcessEngine(t)
		// The whole stream waits in Kafka before the worker starts: a backlog it works through.
		(&engine{brokers: p.brokers}).produce(t, "--failure-mode", "latency", "--start", simStart.Format(time.RFC3339),
			"--duration", (crashSamples * time.Minute).String(), "--failure-after", "20h", "--failure-for", "1h")
		for _, at := range kills {
			p.start(t)
			// Kill once the record stage has stored this many samples: the other stages are
			// somewhere around there, in any order.
			waitFor(t, 3*time.Minute, fmt.Sprintf("%d samples recorded before a kill", at), func() (bool, string) {
				n := p.count(t, `SELECT count(*) FROM samples`)
				return n >= at, fmt.Sprint(n)
			})
			p.kill(t)
			t.Logf("killed at %d samples recorded", p.count(t, `SELECT count(*) FROM samples`))
		}
		p.start(t)
		p.waitDone(t, last, services...)
		p.kill(t)
		if t.Failed() {
			t.Logf("worker output:\n%s", p.logs.String())
		}
		return p.outcome(t)
	}
	clean := run(nil)
	// 150 samples is 50 a service, inside the 256-sample warm-up; 3 × 20 h is the failure.
	killed := run([]int{150, 1200, 2400, 3 * 20 * 60, 3*20*60 + 120, 4500})
	if !strings.Contains(clean, `"opened"`) {
		t.Fatalf("the uninterrupted run opened no incident; the stream is meant to have one")
	}
	if clean != killed {
		cl, kl := strings.Split(clean, "\n"), strings.Split(killed, "\n")
		diffs := 0
		for i := 0; i < max(len(cl), len(kl)) && diffs < 10; i++ {
			var c, k string
			if i < len(cl) {
				c = cl[i]
			}
			if i < len(kl) {
				k = kl[i]
			}
			if c != k {
				t.Errorf("line %d differs:\nclean  %s\nkilled %s", i, c, k)
				diffs++
			}
		}
		t.Errorf("the killed worker decided otherwise: %d lines against %d", len(kl), len(cl))
	}
}

func buildWorker(dir string) error {
	workerBin = filepath.Join(dir, "worker")
	if out, err := exec.Command("go", "build", "-o", workerBin, ".").CombinedOutput(); err != nil {
		return fmt.Errorf("build worker: %v\n%s", err, out)
	}
	return nil
}
