// Command producer runs the test services api, db and auth: each publishes a JSON metric
// sample to Kafka every interval, keyed by service, with realistic noise and a daily traffic
// cycle. FAILURE_MODE=none|latency|errors|meltdown|spike|collapse|better injects a change into the services
// named by --fail-services for --failure-for, starting --failure-after into the run.
//
// In real-time mode samples carry the current time and are sent every --interval. With
// --simulate they carry timestamps --interval apart starting at --start, sent as fast as the
// broker takes them, so a simulated day takes seconds.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/IBM/sarama"

	"github.com/incident-engine/engine/cmd/internal/cli"
	"github.com/incident-engine/engine/infra/kafka"
)

func main() { os.Exit(run(os.Args[1:])) }

type options struct {
	brokers      []string
	topic        string
	services     []string
	failServices map[string]bool
	interval     time.Duration
	count        int
	duration     time.Duration
	simulate     bool
	start        time.Time
	mode         Mode
	failureAfter time.Duration
	failureFor   time.Duration
	seed         uint64
	quiet        bool
	prefix       string
	batch        int
}

func run(args []string) int {
	o, err := parse(args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "producer:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := produce(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "producer:", err)
		return 1
	}
	return 0
}

func parse(args []string) (options, error) {
	var o options
	var env cli.Env
	fs := flag.NewFlagSet("producer", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `producer runs the test services (api, db, auth) and sends their metrics to Kafka, healthy or
with a failure injected, in real time or simulated.

Usage: producer [flags]
`)
		fs.PrintDefaults()
	}
	brokers := fs.String("brokers", env.String("KAFKA_BROKERS", "localhost:9092"), "comma-separated Kafka brokers [KAFKA_BROKERS]")
	fs.StringVar(&o.topic, "topic", env.String("METRICS_TOPIC", "metrics"), "topic to publish to [METRICS_TOPIC]")
	services := fs.String("services", env.String("SERVICES", "api,db,auth"), "comma-separated services to run [SERVICES]")
	fail := fs.String("fail-services", env.String("FAIL_SERVICES", "api"), "services the failure is injected into [FAIL_SERVICES]")
	mode := fs.String("failure-mode", env.String("FAILURE_MODE", "none"), "none, latency, errors, meltdown; or spike (3x traffic), collapse (a tenth of the traffic), better (faster, fewer errors) [FAILURE_MODE]")
	fs.DurationVar(&o.interval, "interval", env.Duration("INTERVAL", time.Minute), "time between samples of a service [INTERVAL]")
	fs.IntVar(&o.count, "count", env.Int("COUNT", 0), "samples per service; 0 uses --duration [COUNT]")
	fs.DurationVar(&o.duration, "duration", env.Duration("DURATION", 0), "span of samples to emit; 0 with --count 0 means 24h when simulating, forever otherwise [DURATION]")
	fs.BoolVar(&o.simulate, "simulate", env.Bool("SIMULATE", false), "simulated time: timestamps --interval apart, sent as fast as possible [SIMULATE]")
	start := fs.String("start", env.String("START", ""), "first timestamp (RFC 3339) when simulating; default: now minus the duration [START]")
	o.failureAfter, o.failureFor = env.Duration("FAILURE_AFTER", -1), env.Duration("FAILURE_FOR", -1)
	fs.Var(intervalsOr{&o.failureAfter, 300}, "failure-after", "when the failure starts, a `duration` from the first sample (after the engine's warm-up by default) [FAILURE_AFTER]")
	fs.Var(intervalsOr{&o.failureFor, 60}, "failure-for", "how long the failure lasts, a `duration` [FAILURE_FOR]")
	seed := fs.Uint64("seed", env.Uint64("SEED", 1), "random seed, for reproducible runs [SEED]")
	fs.IntVar(&o.batch, "batch", env.Int("BATCH", 1), "samples of a service per message, sent as a JSON array when above 1 (at most 1000) [BATCH]")
	fs.BoolVar(&o.quiet, "quiet", false, "print only the summary")
	fs.StringVar(&o.prefix, "service-prefix", env.String("SERVICE_PREFIX", ""), "prefix for the emitted service names (e.g. \"staging-\"); behaviour follows the unprefixed name [SERVICE_PREFIX]")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if err := env.Err(); err != nil {
		return o, err
	}
	o.seed = *seed
	o.brokers = splitList(*brokers)
	o.services = splitList(*services)
	o.failServices = map[string]bool{}
	for _, s := range splitList(*fail) {
		o.failServices[s] = true
	}
	o.mode = Mode(*mode)
	var errs []error
	switch o.mode {
	case ModeNone, ModeLatency, ModeErrors, ModeMeltdown, ModeSpike, ModeCollapse, ModeBetter:
	default:
		errs = append(errs, fmt.Errorf("unknown failure mode %q", *mode))
	}
	if len(o.brokers) == 0 || len(o.services) == 0 || o.interval <= 0 || o.count < 0 || o.duration < 0 {
		errs = append(errs, errors.New("need brokers, services, a positive interval and non-negative count and duration"))
	}
	if o.batch < 1 || o.batch > 1000 {
		errs = append(errs, fmt.Errorf("batch %d: send 1 to 1000 samples a message", o.batch))
	}
	if o.failureAfter < 0 {
		o.failureAfter = 300 * o.interval
	}
	if o.failureFor < 0 {
		o.failureFor = 60 * o.interval
	}
	if o.count == 0 && o.duration == 0 && o.simulate {
		o.duration = 24 * time.Hour
	}
	if o.count == 0 && o.duration > 0 {
		o.count = int(o.duration / o.interval)
	}
	if *start != "" {
		t, err := time.Parse(time.RFC3339, *start)
		if err != nil {
			errs = append(errs, fmt.Errorf("start: %w", err))
		}
		o.start = t.UTC()
	} else if o.simulate {
		o.start = time.Now().UTC().Truncate(o.interval).Add(-time.Duration(o.count) * o.interval)
	}
	return o, errors.Join(errs...)
}

type wireSample struct {
	Service      string  `json:"service"`
	Timestamp    string  `json:"timestamp"`
	ErrorRate    float64 `json:"error_rate"`
	LatencyP95   float64 `json:"latency_p95"`
	RequestCount float64 `json:"request_count"`
}

func produce(ctx context.Context, o options) error {
	sc := sarama.NewConfig()
	sc.Version = kafka.ProtocolVersion
	sc.ClientID = "incident-engine-producer"
	sc.Producer.Return.Successes = true
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Partitioner = sarama.NewHashPartitioner
	sc.Producer.Idempotent = true
	sc.Net.MaxOpenRequests = 1
	sc.Producer.Retry.Max = 10
	producer, err := sarama.NewSyncProducer(o.brokers, sc)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", strings.Join(o.brokers, ","), err)
	}
	defer producer.Close()

	svcs := make([]*service, len(o.services))
	for i, name := range o.services {
		svcs[i] = newService(name, o.seed)
		svcs[i].emit = o.prefix + name
	}
	first := o.start
	if !o.simulate {
		first = time.Now().UTC().Truncate(time.Second)
	}
	failFrom, failTo := first.Add(o.failureAfter), first.Add(o.failureAfter+o.failureFor)
	fmt.Printf("producing to %s topic %q: services %s, every %s, failure %s in %v from %s to %s\n",
		strings.Join(o.brokers, ","), o.topic, strings.Join(o.services, ","), o.interval, o.mode, keys(o.failServices), failFrom.Format(time.RFC3339), failTo.Format(time.RFC3339))

	tick := time.NewTicker(o.interval)
	defer tick.Stop()
	sent := 0
	batch := make([]*sarama.ProducerMessage, 0, 256*len(svcs))
	// pending holds each service's samples until a message of o.batch of them is full.
	pending := make([][][]byte, len(svcs))
	seal := func(i int) {
		p := pending[i]
		if len(p) == 0 {
			return
		}
		value := p[0]
		if o.batch > 1 {
			value = append(append([]byte("["), bytes.Join(p, []byte(","))...), ']')
		}
		batch = append(batch, &sarama.ProducerMessage{Topic: o.topic, Key: sarama.StringEncoder(svcs[i].emit), Value: sarama.ByteEncoder(value)})
		sent += len(p)
		pending[i] = nil
	}
	flush := func(all bool) error {
		if all {
			for i := range svcs {
				seal(i)
			}
		}
		if len(batch) == 0 {
			return nil
		}
		if err := producer.SendMessages(batch); err != nil {
			return fmt.Errorf("send: %w", err)
		}
		batch = batch[:0]
		return nil
	}
	for i := 0; o.count == 0 || i < o.count; i++ {
		at := first.Add(time.Duration(i) * o.interval)
		if !o.simulate && i > 0 {
			select {
			case <-ctx.Done():
				return flush(true)
			case now := <-tick.C:
				at = now.UTC().Truncate(time.Millisecond)
			}
		} else if ctx.Err() != nil {
			return flush(true)
		}
		failing := !at.Before(failFrom) && at.Before(failTo)
		for k, s := range svcs {
			m := s.sample(at, o.interval, o.mode, failing && o.failServices[s.name])
			payload, _ := json.Marshal(wireSample{Service: s.emit, Timestamp: at.Format(time.RFC3339Nano), ErrorRate: m.ErrorRate, LatencyP95: m.LatencyP95, RequestCount: m.RequestCount})
			if pending[k] = append(pending[k], payload); len(pending[k]) == o.batch {
				seal(k)
			}
			if !o.quiet && !o.simulate {
				fmt.Println(string(payload))
			}
		}
		if !o.simulate || len(batch) >= cap(batch) {
			if err := flush(false); err != nil {
				return err
			}
		}
	}
	if err := flush(true); err != nil {
		return err
	}
	last := first.Add(time.Duration(max(o.count-1, 0)) * o.interval)
	fmt.Printf("sent %d samples (%d per service) from %s to %s\n", sent, sent/max(len(svcs), 1), first.Format(time.RFC3339), last.Format(time.RFC3339))
	return nil
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// intervalsOr is a duration flag whose default is a number of --interval: a negative
// duration stands for it.
type intervalsOr struct {
	d         *time.Duration
	intervals int
}

func (v intervalsOr) String() string {
	if v.d == nil || *v.d >= 0 {
		if v.d == nil {
			return ""
		}
		return v.d.String()
	}
	return fmt.Sprintf("%d intervals", v.intervals)
}

func (v intervalsOr) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*v.d = d
	return nil
}
