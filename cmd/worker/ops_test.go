package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/incident-engine/engine/infra/kafka"
	"github.com/incident-engine/engine/wire"
)

// publishRaw sends payloads to the metrics topic as a service would: raw JSON, keyed.
func (e *engine) publishRaw(t testing.TB, key string, payloads ...string) {
	t.Helper()
	msgs := make([]*sarama.ProducerMessage, len(payloads))
	for i, pl := range payloads {
		msgs[i] = &sarama.ProducerMessage{Topic: "metrics", Key: sarama.StringEncoder(key), Value: sarama.StringEncoder(pl)}
	}
	e.send(t, sarama.NewHashPartitioner, msgs...)
}

// send publishes records with the partitioner given (sarama.NewManualPartitioner: each to its
// own Partition).
func (e *engine) send(t testing.TB, partitioner sarama.PartitionerConstructor, msgs ...*sarama.ProducerMessage) {
	t.Helper()
	p := e.producer(t, partitioner)
	defer p.Close()
	if err := p.SendMessages(msgs); err != nil {
		t.Fatal(err)
	}
}

// producer returns a synchronous producer to the engine's broker with the partitioner given.
func (e *engine) producer(t testing.TB, partitioner sarama.PartitionerConstructor) sarama.SyncProducer {
	t.Helper()
	sc := sarama.NewConfig()
	sc.Version = kafka.ProtocolVersion
	sc.Producer.Return.Successes = true
	sc.Producer.Partitioner = partitioner
	p, err := sarama.NewSyncProducer(e.brokers, sc)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func samplesJSON(service string, from time.Time, n int, latency func(i int) float64) []string {
	out := make([]string, n)
	for i := range n {
		out[i] = fmt.Sprintf(`{"service":%q,"timestamp":%q,"error_rate":%.4f,"latency_p95":%.1f,"request_count":%d}`,
			service, from.Add(time.Duration(i)*time.Minute).Format(time.RFC3339), 0.01+0.002*float64((i*7)%5-2)/2, latency(i), 1000+(i*37)%60)
	}
	return out
}

func normalLatency(i int) float64 { return 180 + float64((i*13)%21) - 10 }

// TestPoisonedMessagesAreDeadLetteredAndReplayed sends malformed samples ahead of good ones on
// the same partition: the bad ones reach the dead-letter topic with their reason, the good
// ones behind them are processed, and incidentctl lists and replays them.
func TestPoisonedMessagesAreDeadLetteredAndReplayed(t *testing.T) {
	e := startEngine(t, func(c *wire.Config) { c.Detect.WarmUp = 32 })
	bad := []string{
		`not json at all`,
		`{"service":"dlq-api","timestamp":"2026-11-26T17:00:00Z","error_rate":1.5,"latency_p95":100,"request_count":10}`,
		`{"service":"","timestamp":"2026-11-26T17:00:00Z","error_rate":0.1,"latency_p95":100,"request_count":10}`,
		`{"service":"dlq-api","timestamp":"yesterday","error_rate":0.1,"latency_p95":100,"request_count":10}`,
	}
	e.publishRaw(t, "dlq-api", bad...)
	good := samplesJSON("dlq-api", simStart, 5, normalLatency)
	e.publishRaw(t, "dlq-api", good...)
	e.waitProcessed(t, simStart.Add(4*time.Minute), "dlq-api")

	ctl := buildTool(t, "incidentctl")
	env := []string{"KAFKA_BROKERS=" + strings.Join(e.brokers, ","), "DATABASE_URL=" + string(e.worker.DatabaseURL)}
	var entries []map[string]any
	waitFor(t, 30*time.Second, "4 dead letters", func() (bool, string) {
		out := runTool(t, ctl, env, "dlq", "list", "--json")
		entries = nil
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil {
				entries = append(entries, m)
			}
		}
		return len(entries) == len(bad), out
	})
	reasons := map[string]string{}
	for _, en := range entries {
		if en["topic"] != "metrics" || en["handler"] != "decode" {
			t.Errorf("entry %v: want topic metrics, handler decode", en)
		}
		reasons[en["payload"].(string)] = en["reason"].(string)
	}
	for payload, want := range map[string]string{bad[0]: "not a JSON sample", bad[1]: "error_rate 1.5 is outside [0,1]", bad[2]: "service is missing or empty", bad[3]: "not RFC 3339"} {
		if !strings.Contains(reasons[payload], want) {
			t.Errorf("reason for %s = %q, want it to say %q", payload, reasons[payload], want)
		}
	}
	table := runTool(t, ctl, env, "dlq", "list")
	if !strings.Contains(table, "4 dead-lettered messages") || !strings.Contains(table, "error_rate 1.5") {
		t.Errorf("dlq list table:\n%s", table)
	}

	out := runTool(t, ctl, env, "dlq", "replay", "--reason", "error_rate")
	if !strings.Contains(out, "1 messages replayed") {
		t.Fatalf("replay output:\n%s", out)
	}
	// The replayed message went back to "metrics", failed decode again, and is dead-lettered
	// a second time, marked with where it came from.
	waitFor(t, 30*time.Second, "the replayed message to come back", func() (bool, string) {
		out := runTool(t, ctl, env, "dlq", "list", "--json")
		return strings.Count(out, `"replayed_from"`) == 1 && strings.Count(out, "\n") == len(bad)+1, out
	})
	if out := runToolErr(t, ctl, env, "dlq", "replay"); !strings.Contains(out, "say which messages") {
		t.Errorf("replay without a selection: %s", out)
	}
}

func buildTool(t testing.TB, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	if out, err := exec.Command("go", "build", "-o", bin, "../"+name).CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", name, err, out)
	}
	return bin
}

func runTool(t testing.TB, bin string, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(cmd.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", filepath.Base(bin), args, err, out)
	}
	return string(out)
}

func runToolErr(t testing.TB, bin string, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(cmd.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("%s %v succeeded, want an error:\n%s", filepath.Base(bin), args, out)
	}
	return string(out)
}

// TestKcatProducesSamples proves the wire format outside our own code: Debian's kcat (a
// librdkafka client) publishes the samples, and a latency failure it carries opens an
// incident.
func TestKcatProducesSamples(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatal("kcat is not installed: apt-get install -y kcat (.ci/run does this)")
	}
	e := startEngine(t, func(c *wire.Config) { c.Detect.WarmUp = 64 })
	lines := samplesJSON("kcat-api", simStart, 100, func(i int) float64 {
		if i >= 80 {
			return 1500
		}
		return normalLatency(i)
	})
	input := ""
	for _, l := range lines {
		input += "kcat-api\t" + l + "\n"
	}
	input += "kcat-api\t{\"service\":\"kcat-api\",\"timestamp\":\"2026-11-26T23:00:00Z\",\"latency_p95\":\"fast\"}\n"
	cmd := exec.Command(kcat, "-P", "-b", strings.Join(e.brokers, ","), "-t", "metrics", "-K", "\t")
	cmd.Stdin = strings.NewReader(input)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kcat: %v\n%s", err, out)
	}
	e.waitProcessed(t, simStart.Add(99*time.Minute), "kcat-api")
	got := e.incidents(t, "kcat-api")
	if len(got) != 1 || got[0].Status != "open" || got[0].FirstSeen.Before(simStart.Add(80*time.Minute)) {
		t.Fatalf("incidents %+v, want one open incident from the failure at minute 80", got)
	}
	waitFor(t, 30*time.Second, "the malformed kcat message on the dead-letter topic", func() (bool, string) {
		recs, err := kafka.ReadAll(kafka.Config{Brokers: e.brokers}, "metrics.deadletter")
		if err != nil || len(recs) != 1 {
			return false, fmt.Sprint(len(recs), err)
		}
		return strings.Contains(recs[0].Message.Metadata.Get("reason_poisoned"), "latency_p95"), recs[0].Message.Metadata.Get("reason_poisoned")
	})
}

// TestDataStopIsRecordedNotResolved stops the stream while an incident is open: the timeline
// records that data stopped and the incident stays open; when samples come back, the timeline
// says so and the incident resolves after a healthy recovery window.
func TestDataStopIsRecordedNotResolved(t *testing.T) {
	e := startEngine(t, func(c *wire.Config) {
		c.Detect.WarmUp = 64
		c.Correlation.StaleAfter = 4 * time.Second
	})
	e.publishRaw(t, "quiet-api", samplesJSON("quiet-api", simStart, 90, func(i int) float64 {
		if i >= 80 {
			return 1500
		}
		return normalLatency(i)
	})...)
	e.waitProcessed(t, simStart.Add(89*time.Minute), "quiet-api")
	var id string
	waitFor(t, 30*time.Second, "data_stopped in the timeline", func() (bool, string) {
		got := e.incidents(t, "quiet-api")
		if len(got) != 1 {
			return false, fmt.Sprint(got)
		}
		id = got[0].ID
		for _, r := range e.timeline(t, id) {
			if r.Event == "data_stopped" {
				return true, ""
			}
		}
		return false, "no data_stopped yet"
	})
	if got := e.incidents(t, "quiet-api"); got[0].Status != "open" {
		t.Fatalf("incident %s after data stopped, want it still open", got[0].Status)
	}
	// Samples resume, healthy: the stop is closed and recovery resolves the incident.
	e.publishRaw(t, "quiet-api", samplesJSON("quiet-api", simStart.Add(120*time.Minute), 20, normalLatency)...)
	e.waitProcessed(t, simStart.Add(139*time.Minute), "quiet-api")
	waitFor(t, 30*time.Second, "resolution after resumed healthy samples", func() (bool, string) {
		got := e.incidents(t, "quiet-api")
		return got[0].Status == "resolved", got[0].Status
	})
	var events []string
	for _, r := range e.timeline(t, id) {
		if r.Event != "anomaly_recorded" && r.Event != "escalated" {
			events = append(events, r.Event)
		}
	}
	want := "opened data_stopped data_resumed resolved"
	if got := strings.Join(events, " "); got != want {
		t.Errorf("timeline %q without anomalies and escalations, want %q", got, want)
	}
}

// TestReplayGivesSameIncidents feeds the same stream into two fresh engines, the second time
// in messages of 20 samples each (the producer's --batch): incidents and timelines are
// identical, ids included, because decisions use the samples' own timestamps and a batch is
// judged as its samples one by one.
func TestReplayGivesSameIncidents(t *testing.T) {
	var dumps [2]string
	for i, batch := range []string{"1", "20"} {
		e := startEngine(t, nil)
		e.produce(t, "--failure-mode", "meltdown", "--start", simStart.Format(time.RFC3339), "--duration", "9h",
			"--failure-after", failAfter.String(), "--failure-for", failFor.String(), "--batch", batch)
		e.waitProcessed(t, simStart.Add(9*time.Hour-time.Minute), "api", "db", "auth")
		var b strings.Builder
		for _, inc := range e.incidents(t, "api", "db", "auth") {
			fmt.Fprintf(&b, "%s %s %s %s %d %s %s %v\n", inc.ID, inc.Service, inc.Severity, inc.Status, inc.Occurrences, inc.FirstSeen, inc.LastSeen, inc.ResolvedAt)
			for _, r := range e.timeline(t, inc.ID) {
				d, _ := json.Marshal(r.Details)
				fmt.Fprintf(&b, "  %s %s %s\n", r.OccurredAt.Format(time.RFC3339), r.Event, d)
			}
		}
		dumps[i] = b.String()
	}
	if dumps[0] == "" {
		t.Fatal("the meltdown produced no incident")
	}
	if dumps[0] != dumps[1] {
		t.Errorf("replay in batches differs:\nfirst:\n%s\nsecond:\n%s", dumps[0], dumps[1])
	}
}

// TestRestartMidStream restarts the worker in the middle of a failure: the stream stops half an
// hour into it, the worker is replaced, and the failure goes on for another half hour before
// the services recover. The outcome is still exactly one incident with a clean timeline.
// (TestFaultsDecideAlike kills the worker process outright, warm-up included.)
func TestRestartMidStream(t *testing.T) {
	e := startEngine(t, nil)
	e.produce(t, "--failure-mode", "latency", "--start", simStart.Format(time.RFC3339), "--duration", "14h30m",
		"--failure-after", "14h", "--failure-for", "1h")
	e.waitProcessed(t, simStart.Add(14*time.Hour+29*time.Minute), "api", "db", "auth")
	if open := e.incidents(t, "api"); len(open) != 1 || open[0].Status != "open" {
		t.Fatalf("incidents %+v half an hour into the failure, want one open: the restart is meant to come mid-failure", open)
	}
	url := string(e.worker.DatabaseURL)
	e.stop()
	t.Cleanup(e.startWorker(t, url, nil))
	rest := simStart.Add(14*time.Hour + 30*time.Minute)
	e.produce(t, "--failure-mode", "latency", "--start", rest.Format(time.RFC3339), "--duration", "5h30m",
		"--failure-after", "0s", "--failure-for", "30m")
	e.waitProcessed(t, simStart.Add(20*time.Hour-time.Minute), "api", "db", "auth")
	got := e.incidents(t, "api", "db", "auth")
	if len(got) != 1 || got[0].Service != "api" || got[0].Status != "resolved" {
		t.Fatalf("incidents %+v, want one resolved incident for api", got)
	}
	seen := map[string]bool{}
	counts := map[string]int{}
	trigger := 0
	for _, r := range e.timeline(t, got[0].ID) {
		if r.Event == "opened" {
			n, _ := r.Details["occurrence_count"].(float64)
			trigger = int(n)
		}
		key := r.Event + r.OccurredAt.String()
		if seen[key] {
			t.Errorf("timeline has %s at %s twice", r.Event, r.OccurredAt)
		}
		seen[key] = true
		counts[r.Event]++
	}
	if counts["opened"] != 1 || counts["resolved"] != 1 || trigger+counts["anomaly_recorded"] != got[0].Occurrences {
		t.Errorf("timeline counts %v for %d occurrences", counts, got[0].Occurrences)
	}
}

// TestRestartKeepsTrainedModels restarts the worker after its models are trained: the new
// worker loads them from the model registry and judges the very next samples, so a failure
// right after the restart opens an incident without a new warm-up.
func TestRestartKeepsTrainedModels(t *testing.T) {
	e := startEngine(t, nil)
	e.produce(t, "--start", simStart.Format(time.RFC3339), "--duration", "5h")
	e.waitProcessed(t, simStart.Add(5*time.Hour-time.Minute), "api", "db", "auth")
	var models int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM models WHERE version = 1 AND rows = 256`).Scan(&models); err != nil || models != 3 {
		t.Fatalf("%d models in the registry (%v), want one per service", models, err)
	}
	url := string(e.worker.DatabaseURL)
	e.stop()
	t.Cleanup(e.startWorker(t, url, nil))
	// 40 minutes of failure straight after the restart: far fewer than a warm-up's 256 samples.
	from := simStart.Add(5 * time.Hour)
	e.produce(t, "--failure-mode", "errors", "--start", from.Format(time.RFC3339), "--duration", "1h",
		"--failure-after", "0s", "--failure-for", "40m")
	e.waitProcessed(t, from.Add(59*time.Minute), "api", "db", "auth")
	got := e.incidents(t, "api", "db", "auth")
	if len(got) != 1 || got[0].Service != "api" || got[0].FirstSeen.After(from.Add(5*time.Minute)) {
		t.Fatalf("incidents %+v, want one for api opening within minutes of the restart", got)
	}
}

// TestLevelShiftIsLearned sends a service whose plain metric steps to a new steady level and
// stays there: the engine opens one incident, records in its timeline that the new level was
// learned as normal after RelearnAfter, and resolves it; the incident does not stay open on
// the changed baseline.
func TestLevelShiftIsLearned(t *testing.T) {
	e := startEngine(t, nil)
	const n = 256 + 120 + 6*60 + 60
	rng := rand.New(rand.NewPCG(4, 4))
	payloads := make([]string, n)
	for i := range n {
		depth := 50 + 2*rng.NormFloat64()
		if i >= 256+120 {
			depth += 30 // the deploy: a new steady level
		}
		payloads[i] = fmt.Sprintf(`{"service":"shift-api","timestamp":%q,"metrics":{"queue_depth":%.2f}}`,
			simStart.Add(time.Duration(i)*time.Minute).Format(time.RFC3339), depth)
	}
	e.publishRaw(t, "shift-api", payloads...)
	e.waitProcessed(t, simStart.Add((n-1)*time.Minute), "shift-api")
	var got []incidentRow
	waitFor(t, 30*time.Second, "one resolved incident", func() (bool, string) {
		got = e.incidents(t, "shift-api")
		return len(got) == 1 && got[0].Status == "resolved", fmt.Sprint(got)
	})
	var events []string
	var learnedAt time.Time
	for _, r := range e.timeline(t, got[0].ID) {
		if r.Event == "baseline_learned" {
			learnedAt = r.OccurredAt
		}
		if r.Event != "anomaly_recorded" && r.Event != "escalated" {
			events = append(events, r.Event)
		}
	}
	shift := simStart.Add((256 + 120) * time.Minute)
	if want := "opened baseline_learned resolved"; strings.Join(events, " ") != want {
		t.Errorf("timeline %v without anomalies and escalations, want %q", events, want)
	}
	if d := learnedAt.Sub(shift); d < 3*time.Hour || d > 4*time.Hour {
		t.Errorf("baseline learned %s after the shift, want after the 3h of RelearnAfter", d)
	}
	if got[0].ResolvedAt == nil || got[0].ResolvedAt.Sub(learnedAt) > time.Hour {
		t.Errorf("resolved at %v, want within an hour of learning the baseline at %s", got[0].ResolvedAt, learnedAt)
	}
}

// TestStalenessIsLagAware stops the worker while a service's incident is open and lets the
// service's samples pile up in Kafka for longer than the stale-data limit: the restarted
// worker, working through that backlog, records no data stop (the data did not stop, the
// engine was behind); once the service does fall silent, the stop is recorded.
func TestStalenessIsLagAware(t *testing.T) {
	tune := func(c *wire.Config) {
		c.Detect.WarmUp = 64
		c.Correlation.StaleAfter = 8 * time.Second // longer than the gap between the first samples and the backlog (a graceful stop)
	}
	e := startEngine(t, tune)
	// 80 healthy minutes, then a latency failure that is still on when the worker stops.
	e.publishRaw(t, "lag-api", samplesJSON("lag-api", simStart, 100, func(i int) float64 {
		if i >= 80 {
			return 1500
		}
		return normalLatency(i)
	})...)
	e.waitProcessed(t, simStart.Add(99*time.Minute), "lag-api")
	url := string(e.worker.DatabaseURL)
	e.stop()
	// The failure goes on while no worker runs: a backlog, published now.
	backlog := samplesJSON("lag-api", simStart.Add(100*time.Minute), 3000, func(int) float64 { return 1500 })
	e.publishRaw(t, "lag-api", backlog...)
	published := time.Now()
	// More than the stale-data limit passes between those samples' arrival and their turn.
	waitFor(t, 30*time.Second, "the stale-data limit to pass since the backlog arrived", func() (bool, string) {
		return time.Since(published) > 9*time.Second, time.Since(published).String()
	})
	t.Cleanup(e.startWorker(t, url, tune))
	e.waitProcessed(t, simStart.Add(3099*time.Minute), "lag-api")
	got := e.incidents(t, "lag-api")
	if len(got) != 1 || got[0].Status != "open" {
		t.Fatalf("incidents %+v, want one open", got)
	}
	// A stop is dated at the service's last sample heard: one recorded while the backlog was
	// worked through would be dated before its end. Once caught up, the service is silent and
	// the stop, dated at its last sample, is right.
	final := simStart.Add(3099 * time.Minute)
	waitFor(t, 30*time.Second, "data_stopped once the service is silent", func() (bool, string) {
		for _, r := range e.timeline(t, got[0].ID) {
			if r.Event == "data_stopped" && r.OccurredAt.Equal(final) {
				return true, ""
			}
		}
		return false, "none yet"
	})
	for _, r := range e.timeline(t, got[0].ID) {
		if r.Event == "data_stopped" && r.OccurredAt.Before(final) {
			t.Errorf("data_stopped recorded at sample %s while the samples after it waited in Kafka", r.OccurredAt)
		}
	}
}

// TestKeyThatIsNotUTF8IsNoPoisonPill publishes, ahead of healthy samples on the same
// partition, a message whose Kafka key is not UTF-8 and whose payload is not JSON (it once
// panicked the dead-letter counter outside the recoverer and was redelivered for ever): it is
// dead-lettered once, and the samples behind it are processed.
func TestKeyThatIsNotUTF8IsNoPoisonPill(t *testing.T) {
	e := startEngine(t, func(c *wire.Config) { c.Detect.WarmUp = 32 })
	msgs := []*sarama.ProducerMessage{{Topic: "metrics", Partition: 0, Key: sarama.ByteEncoder([]byte{0xff, 0xfe}), Value: sarama.StringEncoder("not json")}}
	for _, s := range samplesJSON("pill-api", simStart, 5, normalLatency) {
		msgs = append(msgs, &sarama.ProducerMessage{Topic: "metrics", Partition: 0, Key: sarama.StringEncoder("pill-api"), Value: sarama.StringEncoder(s)})
	}
	e.send(t, sarama.NewManualPartitioner, msgs...)
	e.waitProcessed(t, simStart.Add(4*time.Minute), "pill-api")
	recs, err := kafka.ReadAll(kafka.Config{Brokers: e.brokers}, "metrics.deadletter")
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || string(recs[0].Message.Payload) != "not json" {
		t.Errorf("%d dead letters, want the one bad message once", len(recs))
	}
}

// TestFarFutureSampleBlindsNothing sends a sample stamped in the year 2200, then a service's
// real samples: the far-future one is dead-lettered with the reason, and every real sample is
// judged and correlated (accepted, it would have moved the watermark past them all).
func TestFarFutureSampleBlindsNothing(t *testing.T) {
	e := startEngine(t, func(c *wire.Config) { c.Detect.WarmUp = 32 })
	e.publishRaw(t, "future-api", `{"service":"future-api","timestamp":"2200-01-01T00:00:00Z","error_rate":0.01,"latency_p95":100,"request_count":10}`)
	e.publishRaw(t, "future-api", samplesJSON("future-api", simStart, 5, normalLatency)...)
	e.waitProcessed(t, simStart.Add(4*time.Minute), "future-api")
	recs, err := kafka.ReadAll(kafka.Config{Brokers: e.brokers}, "metrics.deadletter")
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || !strings.Contains(recs[0].Message.Metadata.Get("reason_poisoned"), "ahead of the broker") {
		for _, r := range recs {
			t.Logf("dead letter: %s %v", r.Message.Payload, r.Message.Metadata)
		}
		t.Errorf("%d dead letters, want the far-future sample once, with the reason", len(recs))
	}
}

// TestSecondRunUnderTheSameNamesRewritesNothing sends a service's samples, then the same
// timestamps again with other values (a producer run twice under the same names): every one
// of the second run is dead-lettered as older than the service's last sample, and the
// recorded samples behind the charts are exactly what they were.
func TestSecondRunUnderTheSameNamesRewritesNothing(t *testing.T) {
	e := startEngine(t, func(c *wire.Config) { c.Detect.WarmUp = 32 })
	e.publishRaw(t, "rerun-api", samplesJSON("rerun-api", simStart, 40, normalLatency)...)
	e.waitProcessed(t, simStart.Add(39*time.Minute), "rerun-api")
	recorded := func() string {
		var b strings.Builder
		rows, err := e.pool.Query(context.Background(), `SELECT at, metrics::text, coalesce(score, -1) FROM samples WHERE service = 'rerun-api' ORDER BY at`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var at time.Time
			var m string
			var score float64
			if err := rows.Scan(&at, &m, &score); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "%s %s %v\n", at.Format(time.RFC3339), m, score)
		}
		return b.String()
	}
	waitFor(t, 30*time.Second, "all 40 samples recorded", func() (bool, string) {
		n := strings.Count(recorded(), "\n")
		return n == 40, fmt.Sprint(n)
	})
	before := recorded()
	e.publishRaw(t, "rerun-api", samplesJSON("rerun-api", simStart, 40, func(i int) float64 { return 900 + float64(i) })...)
	waitFor(t, time.Minute, "the second run dead-lettered", func() (bool, string) {
		recs, err := kafka.ReadAll(kafka.Config{Brokers: e.brokers}, "metrics.deadletter")
		if err != nil {
			return false, err.Error()
		}
		older := 0
		for _, r := range recs {
			if strings.Contains(r.Message.Metadata.Get("reason_poisoned"), "not after the service's last sample") {
				older++
			}
		}
		return older == 40, fmt.Sprintf("%d of %d dead letters say so", older, len(recs))
	})
	if after := recorded(); after != before {
		t.Errorf("the second run rewrote the recorded samples")
	}
}
