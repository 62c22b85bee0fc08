package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/incident-engine/engine/infra/kafka"
	"github.com/incident-engine/engine/infra/postgres"
	"github.com/incident-engine/engine/infra/postgres/pgtest"
)

// workerBin is this command, built once for the tests that run it as a process.
var workerBin string

// process is the worker binary run against a broker and a database that outlive it.
type process struct {
	brokers      []string
	broker       *kafka.Broker
	receiver     *alertReceiver
	notifyConfig string
	dbURL        string
	pool         *pgxpool.Pool
	httpAddr     string
	cmd          *exec.Cmd
	exited       chan struct{}
	logs         syncBuffer
}

// syncBuffer is the worker's output, written by its process and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
	// watches are closed when the output first holds their text (see seen).
	watches []watch
}

type watch struct {
	text string
	seen chan struct{}
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// The text may straddle two writes: look from just before this one.
	from := s.b.Len()
	n, err := s.b.Write(p)
	s.watches = slices.DeleteFunc(s.watches, func(w watch) bool {
		if strings.Contains(s.b.String()[max(0, from-len(w.text)):], w.text) {
			close(w.seen)
			return true
		}
		return false
	})
	return n, err
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// seen returns a channel closed as soon as the output holds text.
func (s *syncBuffer) seen(text string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := watch{text: text, seen: make(chan struct{})}
	if strings.Contains(s.b.String(), text) {
		close(w.seen)
	} else {
		s.watches = append(s.watches, w)
	}
	return w.seen
}

// newProcessEngine returns a worker process to start on a new in-process broker and dbURL
// (a database of the shared test cluster when empty).
func newProcessEngine(t *testing.T, dbURL string) *process {
	t.Helper()
	return newProcessEngineOn(t, dbURL, kafka.BrokerConfig{})
}

// newProcessEngineOn is newProcessEngine with a broker of this configuration.
func newProcessEngineOn(t *testing.T, dbURL string, bc kafka.BrokerConfig) *process {
	t.Helper()
	broker, err := kafka.StartBroker(bc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(broker.Close)
	if dbURL == "" {
		dbURL = pgtest.Database(t)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := &process{brokers: broker.Addrs(), broker: broker, dbURL: dbURL, httpAddr: addr, receiver: &alertReceiver{}}
	// A webhook receiver in Alertmanager format that outlives the worker.
	srv := httptest.NewServer(p.receiver)
	t.Cleanup(srv.Close)
	p.notifyConfig = filepath.Join(t.TempDir(), "notify.json")
	cfg := fmt.Sprintf(`{"dashboard_url":"http://dashboard.local","receivers":[{"name":"am","kind":"webhook","url":%q}]}`, srv.URL)
	if err := os.WriteFile(p.notifyConfig, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p.pool, err = postgres.Connect(context.Background(), p.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.pool.Close)
	t.Cleanup(func() { p.kill(t) })
	return p
}

// sibling returns another worker process on the same broker and database, with its own
// HTTP address.
func (p *process) sibling(t *testing.T) *process {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s := &process{brokers: p.brokers, broker: p.broker, dbURL: p.dbURL, pool: p.pool, httpAddr: addr, receiver: p.receiver, notifyConfig: p.notifyConfig}
	t.Cleanup(func() { s.kill(t) })
	return s
}

// start runs the worker process.
func (p *process) start(t *testing.T) {
	t.Helper()
	p.cmd = exec.Command(workerBin)
	p.cmd.Env = append(os.Environ(), "KAFKA_BROKERS="+strings.Join(p.brokers, ","), "DATABASE_URL="+p.dbURL,
		"HTTP_ADDR="+p.httpAddr, "TICK_INTERVAL=200ms", "LOG_LEVEL=info", "NOTIFY_CONFIG="+p.notifyConfig)
	p.cmd.Stdout, p.cmd.Stderr = &p.logs, &p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) {
		_ = cmd.Wait()
		close(exited)
	}(p.cmd, p.exited)
}

// alive reports whether the worker process is still running.
func (p *process) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return p.cmd != nil
	}
}

// kill ends the worker process with SIGKILL: no shutdown, no last commit.
func (p *process) kill(t *testing.T) {
	t.Helper()
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
	p.cmd = nil
}

// ready returns the status code of the worker's /readyz (0 when it does not answer).
func (p *process) ready() int {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + p.httpAddr + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
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
	dump(`SELECT incident_id::text, event, occurred_at, details FROM incident_timeline
		WHERE event NOT IN ('notified', 'notification_failed') ORDER BY incident_id, occurred_at, id`)
	// Deliveries: their wall-clock time aside, in an order that does not depend on the notify
	// stage's pace.
	dump(`SELECT incident_id::text, event, occurred_at, details - 'delivered_at' FROM incident_timeline
		WHERE event IN ('notified', 'notification_failed') ORDER BY incident_id, occurred_at, details->>'event_id'`)
	// What the receiver got, each distinct notification once (delivery is at least once: a
	// kill between a send and its record sends it again, which receivers deduplicate by
	// fingerprint).
	seen := map[string]bool{}
	var bodies []string
	for _, body := range p.receiver.received() {
		line, _ := json.Marshal(body)
		if !seen[string(line)] {
			seen[string(line)] = true
			bodies = append(bodies, string(line))
		}
	}
	slices.Sort(bodies)
	for _, line := range bodies {
		b.WriteString(line)
		b.WriteByte('\n')
	}
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
		// Every change a receiver hears of has been delivered.
		changes := p.count(t, `SELECT count(*) FROM incident_timeline WHERE event IN ('opened', 'escalated', 'reopened', 'resolved', 'data_stopped', 'acknowledged')`)
		delivered := p.count(t, `SELECT count(*) FROM incident_timeline WHERE event = 'notified'`)
		return n == len(services) && outbox == 0 && samples == len(services)*crashSamples && changes > 0 && delivered == changes,
			fmt.Sprintf("%d of %d services done, %d outbox rows, %d samples recorded, %d of %d changes delivered", n, len(services), outbox, samples, delivered, changes)
	})
}

// crashSamples is each service's samples in the crash test's stream: 30 hours, one a minute.
const crashSamples = 30 * 60

// TestFaultsDecideAlike runs the same stream through the real worker binary, against a broker
// and a PostgreSQL that outlive it, uninterrupted and then under faults: killed with SIGKILL
// again and again (during the warm-up, mid-stream, in the failure) and restarted; and with
// PostgreSQL stopped mid-stream and started again, the worker staying up and not ready
// meanwhile. The engine must decide exactly alike: the same score for every sample, the same
// models trained on the same rows, the same incidents and timelines.
func TestFaultsDecideAlike(t *testing.T) {
	// Six services (api and b-api fail), so that they spread over the partitions.
	services := []string{"api", "db", "auth", "b-api", "b-db", "b-auth"}
	last := simStart.Add(crashSamples*time.Minute - time.Minute)
	backlog := func(p *process) {
		// The whole stream waits in Kafka before the worker starts: a backlog it works through.
		for _, prefix := range []string{"", "b-"} {
			(&engine{brokers: p.brokers}).produce(t, "--failure-mode", "latency", "--start", simStart.Format(time.RFC3339), "--service-prefix", prefix,
				"--duration", (crashSamples * time.Minute).String(), "--failure-after", "20h", "--failure-for", "1h")
		}
	}
	recorded := func(p *process, n int, what string) {
		waitFor(t, 3*time.Minute, fmt.Sprintf("%d samples recorded %s", n, what), func() (bool, string) {
			got := p.count(t, `SELECT count(*) FROM samples`)
			return got >= n, fmt.Sprint(got)
		})
	}
	finish := func(p *process) string {
		p.start(t)
		p.waitDone(t, last, services...)
		p.kill(t)
		if t.Failed() {
			t.Logf("worker output:\n%s", p.logs.String())
		}
		return p.outcome(t)
	}
	p := newProcessEngine(t, "")
	backlog(p)
	clean := finish(p)
	if !strings.Contains(clean, `"opened"`) {
		t.Fatalf("the uninterrupted run opened no incident; the stream is meant to have one")
	}

	t.Run("killed again and again", func(t *testing.T) {
		p := newProcessEngine(t, "")
		backlog(p)
		// 300 samples is 50 a service, inside the 256-sample warm-up; 6 × 20 h is the failure.
		for _, at := range []int{300, 2400, 4800, 6 * 20 * 60, 6*20*60 + 240, 9000} {
			p.start(t)
			// Kill once correlate has kept this many samples: decode and score are somewhere
			// ahead, the outbox stages somewhere around there.
			recorded(p, at, "before a kill")
			p.kill(t)
			t.Logf("killed at %d samples recorded", p.count(t, `SELECT count(*) FROM samples`))
		}
		compareOutcomes(t, clean, finish(p))
	})

	t.Run("three workers, one killed", func(t *testing.T) {
		p := newProcessEngine(t, "")
		// Three workers in the same consumer groups share the partitions; the second dies
		// mid-stream and its services, detector state included, go to the other two. The
		// stream comes once all three have joined, so each has services to judge.
		workers := []*process{p, p.sibling(t), p.sibling(t)}
		for _, w := range workers {
			w.start(t)
		}
		waitFor(t, 2*time.Minute, "three members in the score stage's consumer group", func() (bool, string) {
			n, err := groupMembers(p.brokers, "incident-engine.score")
			return n == 3, fmt.Sprint(n, err)
		})
		// The victim is the first worker to train a model, killed the moment it says so: the
		// service it trained has most of its stream still to judge, on another worker, from
		// the state the victim saved.
		trained := make(chan int, len(workers))
		for i, w := range workers {
			go func(seen <-chan struct{}) {
				select {
				case <-seen:
					trained <- i
				case <-t.Context().Done():
				}
			}(w.logs.seen("model trained"))
		}
		backlog(p)
		var victim int
		select {
		case victim = <-trained:
		case <-time.After(3 * time.Minute):
			t.Fatal("no worker trained a model")
		}
		workers[victim].kill(t)
		t.Logf("killed worker %d of 3 at %d samples recorded", victim, p.count(t, `SELECT count(*) FROM samples`))
		p.waitDone(t, last, services...)
		restores := 0
		for i, w := range workers {
			if i == victim {
				continue
			}
			if !w.alive() {
				t.Fatalf("a surviving worker exited:\n%s", w.logs.String())
			}
			restores += strings.Count(w.logs.String(), "detector state restored")
			w.kill(t)
		}
		t.Logf("the survivors restored %d detectors", restores)
		if restores == 0 {
			t.Errorf("no surviving worker restored a detector: the killed worker's services were not handed over")
		}
		compareOutcomes(t, clean, p.outcome(t))
	})

	// outage takes a dependency away mid-stream with stop and brings it back with start: the
	// worker stays up and not ready meanwhile, becomes ready again, and decides as the clean
	// run did.
	outage := func(t *testing.T, p *process, stop, start func()) {
		backlog(p)
		p.start(t)
		recorded(p, 3000, "before the outage")
		stop()
		waitFor(t, time.Minute, "/readyz to say 503", func() (bool, string) {
			code := p.ready()
			return code == http.StatusServiceUnavailable, fmt.Sprint(code)
		})
		// The outage itself: the stages keep failing on the dependency all this time.
		time.Sleep(15 * time.Second)
		if !p.alive() {
			t.Fatalf("the worker exited during the outage:\n%s", p.logs.String())
		}
		if code := p.ready(); code != http.StatusServiceUnavailable {
			t.Errorf("/readyz answered %d during the outage, want 503", code)
		}
		start()
		waitFor(t, 2*time.Minute, "/readyz to say 200 again", func() (bool, string) {
			code := p.ready()
			return code == http.StatusOK, fmt.Sprint(code)
		})
		// The same worker goes on: this only waits for it.
		p.waitDone(t, last, services...)
		if !p.alive() {
			t.Fatalf("the worker exited:\n%s", p.logs.String())
		}
		p.kill(t)
		compareOutcomes(t, clean, p.outcome(t))
	}

	t.Run("postgres away", func(t *testing.T) {
		cluster := privateCluster(t)
		p := newProcessEngine(t, cluster.URL())
		outage(t, p, func() {
			if err := cluster.Stop(); err != nil {
				t.Fatal(err)
			}
		}, func() {
			restarted, err := postgres.StartCluster(context.Background(), cluster.cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = restarted.Stop() })
		})
	})

	t.Run("kafka away", func(t *testing.T) {
		bc := kafka.BrokerConfig{Port: freePort(t), DataDir: t.TempDir()}
		p := newProcessEngineOn(t, "", bc)
		outage(t, p, p.broker.Close, func() {
			broker, err := kafka.StartBroker(bc)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(broker.Close)
		})
	})
}

// compareOutcomes reports the first lines in which two outcomes differ.
func compareOutcomes(t *testing.T, clean, got string) {
	t.Helper()
	if clean == got {
		return
	}
	cl, gl := strings.Split(clean, "\n"), strings.Split(got, "\n")
	diffs := 0
	for i := 0; i < max(len(cl), len(gl)) && diffs < 10; i++ {
		var c, g string
		if i < len(cl) {
			c = cl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if c != g {
			t.Errorf("line %d differs:\nclean %s\ngot   %s", i, c, g)
			diffs++
		}
	}
	t.Errorf("the engine decided otherwise under the fault: %d lines against %d", len(gl), len(cl))
}

// groupMembers returns how many members a consumer group has.
func groupMembers(brokers []string, group string) (int, error) {
	sc := sarama.NewConfig()
	sc.Version = kafka.ProtocolVersion
	admin, err := sarama.NewClusterAdmin(brokers, sc)
	if err != nil {
		return 0, err
	}
	defer admin.Close()
	groups, err := admin.DescribeConsumerGroups([]string{group})
	if err != nil || len(groups) == 0 {
		return 0, err
	}
	return len(groups[0].Members), nil
}

// testCluster is a private PostgreSQL cluster a test may stop and start again.
type testCluster struct {
	*postgres.Cluster
	cfg postgres.ClusterConfig
}

func privateCluster(t *testing.T) testCluster {
	t.Helper()
	dir, err := os.MkdirTemp("", "pg-outage-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	// The server runs as the postgres user when the tests run as root: it must reach its dir.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := postgres.ClusterConfig{Dir: filepath.Join(dir, "data"), Port: freePort(t)}
	c, err := postgres.StartCluster(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	return testCluster{Cluster: c, cfg: cfg}
}

func buildWorker(dir string) error {
	workerBin = filepath.Join(dir, "worker")
	if out, err := exec.Command("go", "build", "-o", workerBin, ".").CombinedOutput(); err != nil {
		return fmt.Errorf("build worker: %v\n%s", err, out)
	}
	return nil
}

// freePort returns a TCP port on localhost that nothing listens on.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
