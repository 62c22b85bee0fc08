// Command worker runs the incident engine: the router with every stage and the resolution
// ticker, until interrupted.
//
// With no KAFKA_BROKERS it starts an in-process Kafka-protocol broker on localhost:9092; with
// no DATABASE_URL it starts a private PostgreSQL cluster under .data/ from the initdb and
// pg_ctl on PATH. Run `go run ./cmd/worker --help` for every setting.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/incident-engine/engine/cmd/internal/cli"
	"github.com/incident-engine/engine/domain/detect"
	"github.com/incident-engine/engine/domain/incident"
	"github.com/incident-engine/engine/handlers"
	"github.com/incident-engine/engine/infra/notify"
	"github.com/incident-engine/engine/infra/remediate"
	"github.com/incident-engine/engine/wire"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	cfg, level, err := parse(args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	w, cleanup, err := wire.New(ctx, cfg, logger)
	if err != nil {
		logger.Error("worker failed to start", "err", err)
		return 1
	}
	defer cleanup()
	fmt.Printf("\nincident engine running\n  Kafka brokers:  %s\n  PostgreSQL:     %s\n  dashboard:      http://%s/  API: http://%s/api/v1/openapi.json (%s)\n  health:         http://%s/readyz  metrics: http://%s/metrics\n  try:            psql '%s' -c 'SELECT service, severity, status, occurrence_count FROM incidents ORDER BY last_seen DESC;'\n  stop with Ctrl-C\n\n",
		strings.Join(w.Kafka.Brokers, ","), redact(string(w.DatabaseURL)), w.HTTP.Addr(), w.HTTP.Addr(), apiAccess(cfg), w.HTTP.Addr(), w.HTTP.Addr(), redact(string(w.DatabaseURL)))
	if err := w.Run(ctx); err != nil {
		logger.Error("worker stopped with an error", "err", err)
		return 1
	}
	logger.Info("worker stopped")
	return 0
}

// redact hides the password of a database URL; a connection string that is not a URL is not
// shown at all, since it may carry one too.
func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		return "(configured)"
	}
	return u.Redacted()
}

// apiAccess says who may use the operator API, never quoting a token.
func apiAccess(cfg wire.Config) string {
	reads, writes := "reads open", "writes disabled: set API_TOKEN"
	if cfg.API.ReadToken != "" {
		reads = "reads need a token"
	}
	if cfg.API.Token != "" {
		writes = "writes need API_TOKEN"
	}
	return reads + ", " + writes
}

func parse(args []string) (wire.Config, slog.Level, error) {
	var cfg wire.Config
	var env cli.Env
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `worker runs the incident engine: it reads services' metrics from Kafka, judges them, opens,
escalates and resolves incidents in PostgreSQL, notifies, and serves the dashboard, the operator
API, /metrics, /healthz and /readyz. Every flag can be set by the environment variable in
brackets; the README's configuration table lists them all.

Usage: worker [flags]
`)
		fs.PrintDefaults()
	}
	fs.BoolVar(&cfg.Dev, "dev", env.Bool("DEV", false), "start an in-process Kafka broker and a private PostgreSQL cluster (under --data-dir) for whichever of KAFKA_BROKERS and DATABASE_URL is not set (make run passes it) [DEV]")
	fs.IntVar(&cfg.EmbeddedKafkaPort, "dev-kafka-port", env.Int("DEV_KAFKA_PORT", 9092), "port of the in-process broker (--dev); 0: any free port [DEV_KAFKA_PORT]")
	fs.IntVar(&cfg.EmbeddedPostgresPort, "dev-postgres-port", env.Int("DEV_POSTGRES_PORT", 55432), "port of the private PostgreSQL cluster (--dev); 0: any free port [DEV_POSTGRES_PORT]")
	brokers := fs.String("kafka-brokers", env.String("KAFKA_BROKERS", ""), "comma-separated Kafka brokers; required unless --dev [KAFKA_BROKERS]")
	fs.StringVar(&cfg.DatabaseURL, "database-url", env.String("DATABASE_URL", ""), "PostgreSQL URL; required unless --dev [DATABASE_URL]")
	fs.StringVar(&cfg.DataDir, "data-dir", env.String("DATA_DIR", ".data"), "directory of the private PostgreSQL cluster and the in-process broker's log [DATA_DIR]")
	fs.StringVar(&cfg.Router.Topics.Metrics, "metrics-topic", env.String("METRICS_TOPIC", "metrics"), "Kafka topic services publish samples to [METRICS_TOPIC]")
	fs.StringVar(&cfg.Router.Topics.DeadLetter, "dead-letter-topic", env.String("DEAD_LETTER_TOPIC", "metrics.deadletter"), "Kafka topic for poisoned messages [DEAD_LETTER_TOPIC]")
	fs.IntVar(&cfg.Detect.WarmUp, "warm-up", env.Int("WARM_UP", 256), "samples per service before its model is trained [WARM_UP]")
	fs.Float64Var(&cfg.Detect.FalseAlarmsPerDay, "false-alarms-per-day", env.Float("FALSE_ALARMS_PER_DAY", 0.7), "noise budget: alarms a day a normally behaving service may raise; sets each service's alarm level from its sample spacing [FALSE_ALARMS_PER_DAY]")
	fs.DurationVar(&cfg.Detect.RelearnAfter, "relearn-after", env.Duration("RELEARN_AFTER", 3*time.Hour), "how long a service must stay anomalous but steady before that is learned as its new normal (at least 24 samples; negative: never) [RELEARN_AFTER]")
	fs.IntVar(&cfg.Detect.Context, "context", env.Int("CONTEXT", 10), "samples whose mean surprise is the evidence [CONTEXT]")
	fs.DurationVar(&cfg.Detect.RetrainEvery, "retrain-every", env.Duration("RETRAIN_EVERY", 24*time.Hour), "sample time between two retrainings of a service's model [RETRAIN_EVERY]")
	fs.IntVar(&cfg.Detect.RetrainWindow, "retrain-window", env.Int("RETRAIN_WINDOW", 1440), "samples a retraining draws from [RETRAIN_WINDOW]")
	fs.IntVar(&cfg.CheckpointEvery, "checkpoint-every", env.Int("CHECKPOINT_EVERY", handlers.DefaultCheckpointEvery), "samples of a service between two saves of its detector state (the most a restore replays) [CHECKPOINT_EVERY]")
	fs.IntVar(&cfg.Correlation.OpenAfter, "open-after", env.Int("OPEN_AFTER", 2), "anomalies among the last --open-window samples that open an incident [OPEN_AFTER]")
	fs.IntVar(&cfg.Correlation.Window, "open-window", env.Int("OPEN_WINDOW", 3), "samples the open rule looks at [OPEN_WINDOW]")
	fs.DurationVar(&cfg.Correlation.OpenSpan, "open-span", env.Duration("OPEN_SPAN", 8*time.Minute), "sample time the open rule also looks at: when it holds more than --open-window samples (at most 64), the same share of them must be anomalous; 0: samples only [OPEN_SPAN]")
	fs.Float64Var(&cfg.Correlation.ExtremeExcess, "extreme-excess", env.Float("EXTREME_EXCESS", 0.5), "excess over the threshold at which one anomaly opens an incident on its own [EXTREME_EXCESS]")
	policyFile := fs.String("severity-policy", env.String("SEVERITY_POLICY", ""), "JSON file of severity rules replacing the built-in policy (see README) [SEVERITY_POLICY]")
	fs.StringVar(&cfg.Router.ConsumerGroupPrefix, "consumer-group-prefix", env.String("CONSUMER_GROUP_PREFIX", "incident-engine"), "prefix of the Kafka consumer groups, one per stage: workers with the same prefix share the work [CONSUMER_GROUP_PREFIX]")
	fs.IntVar(&cfg.Router.MaxRetries, "max-retries", env.Int("MAX_RETRIES", 3), "retries of a failing message before it is dead-lettered or handed back to the broker; 0: none [MAX_RETRIES]")
	fs.DurationVar(&cfg.Router.RetryInterval, "retry-interval", env.Duration("RETRY_INTERVAL", 100*time.Millisecond), "first wait between retries, doubling up to 2s; 0: retry at once [RETRY_INTERVAL]")
	fs.DurationVar(&cfg.Router.HandlerTimeout, "handler-timeout", env.Duration("HANDLER_TIMEOUT", 30*time.Second), "bound of one attempt of a stage on one message [HANDLER_TIMEOUT]")
	fs.DurationVar(&cfg.IdleAfter, "idle-after", env.Duration("IDLE_AFTER", 30*time.Minute), "wall-clock silence after which a service's detector leaves memory (saved, and restored exactly on its next sample) [IDLE_AFTER]")
	fs.IntVar(&cfg.MaxServices, "max-services", env.Int("MAX_SERVICES", 1000), "detectors held in memory at most (about 0.17 MB each for three metrics); past it the one used longest ago is saved and dropped [MAX_SERVICES]")
	fs.BoolVar(&cfg.PerServiceMetrics, "per-service-metrics", env.Bool("PER_SERVICE_METRICS", false), "add series by service to /metrics (counts, score histogram, model); off, a fleet's /metrics stays small [PER_SERVICE_METRICS]")
	fs.DurationVar(&cfg.MaxAhead, "max-ahead", env.Duration("MAX_AHEAD", 10*time.Minute), "how far a sample's timestamp may lie ahead of the broker's receipt; beyond it the sample is dead-lettered, so one bad clock cannot blind its service; 0: none [MAX_AHEAD]")
	fs.DurationVar(&cfg.OutboxPollInterval, "outbox-poll-interval", env.Duration("OUTBOX_POLL_INTERVAL", 100*time.Millisecond), "how long an outbox stage waits after finding nothing new [OUTBOX_POLL_INTERVAL]")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", env.String("HTTP_ADDR", ":8080"), "address of the dashboard, the operator API (/api/v1), /metrics, /healthz and /readyz [HTTP_ADDR]")
	// The tokens' environment variables are read after parsing, not as flag defaults, so that
	// --help never prints a secret.
	fs.StringVar(&cfg.API.Token, "api-token", "", "bearer token for the operator API's writes (and reads), at least 16 characters; empty refuses writes. Prefer the environment: flags show in ps [API_TOKEN]")
	fs.StringVar(&cfg.API.ReadToken, "api-read-token", "", "bearer token required for the operator API's reads (API_TOKEN works too); empty leaves reads open [API_READ_TOKEN]")
	fs.DurationVar(&cfg.TickInterval, "tick-interval", env.Duration("TICK_INTERVAL", 5*time.Second), "how often resolution checks run [TICK_INTERVAL]")
	fs.DurationVar(&cfg.Correlation.Recovery, "recovery-window", env.Duration("RECOVERY_WINDOW", 15*time.Minute), "healthy time (sample time) before an incident resolves; 0: judged in samples alone [RECOVERY_WINDOW]")
	fs.IntVar(&cfg.Correlation.RecoverySamples, "recovery-samples", env.Int("RECOVERY_SAMPLES", 5), "healthy samples in a row an incident's recovery also needs; 0: judged in time alone [RECOVERY_SAMPLES]")
	fs.DurationVar(&cfg.Correlation.ReopenWindow, "reopen-window", env.Duration("REOPEN_WINDOW", 30*time.Minute), "anomalies this soon after resolution reopen the incident; 0: never [REOPEN_WINDOW]")
	fs.DurationVar(&cfg.Correlation.StaleAfter, "stale-after", env.Duration("STALE_AFTER", 5*time.Minute), "wall-clock silence after which an open incident records that data stopped [STALE_AFTER]")
	fs.DurationVar(&cfg.Retention.Samples, "retain-samples", env.Duration("RETAIN_SAMPLES", 30*24*time.Hour), "how long scored samples are kept, by sample time; negative: for ever [RETAIN_SAMPLES]")
	fs.DurationVar(&cfg.Retention.TimelineDetail, "retain-timeline-detail", env.Duration("RETAIN_TIMELINE_DETAIL", 90*24*time.Hour), "how long the timeline's anomaly_recorded and anomaly_silenced entries are kept; state changes are kept for ever; negative: for ever [RETAIN_TIMELINE_DETAIL]")
	fs.DurationVar(&cfg.Retention.Inbox, "retain-inbox", env.Duration("RETAIN_INBOX", 7*24*time.Hour), "how long processed-message ids (redelivery safety) are kept; negative: for ever [RETAIN_INBOX]")
	fs.DurationVar(&cfg.Retention.Deliveries, "retain-deliveries", env.Duration("RETAIN_DELIVERIES", 30*24*time.Hour), "how long the notification log is kept; negative: for ever [RETAIN_DELIVERIES]")
	fs.IntVar(&cfg.Retention.Models, "retain-models", env.Int("RETAIN_MODELS", 10), "model versions kept per service, the latest; negative: all [RETAIN_MODELS]")
	fs.DurationVar(&cfg.Retention.Every, "prune-every", env.Duration("PRUNE_EVERY", time.Hour), "how often old detail is pruned [PRUNE_EVERY]")
	kinds := fs.String("metric-kinds", env.String("METRIC_KINDS", ""), "what metrics mean, overriding their names: comma-separated metric=kind or service/metric=kind, kind one of plain, count, lower_is_better, higher_is_better (e.g. error_budget_remaining=higher_is_better) [METRIC_KINDS]")
	notifyFile := fs.String("notify-config", env.String("NOTIFY_CONFIG", ""), "JSON file of notification receivers and routes (see README) [NOTIFY_CONFIG]")
	hooksFile := fs.String("remediation-config", env.String("REMEDIATION_CONFIG", ""), "JSON file of remediation hooks (see README) [REMEDIATION_CONFIG]")
	logLevel := fs.String("log-level", env.String("LOG_LEVEL", "info"), "debug, info, warn or error [LOG_LEVEL]")
	if err := fs.Parse(args); err != nil {
		return cfg, 0, err
	}
	if err := env.Err(); err != nil {
		return cfg, 0, err
	}
	if err := zeroesMeanZero(fs, &cfg); err != nil {
		return cfg, 0, err
	}
	if cfg.API.Token == "" {
		cfg.API.Token = env.String("API_TOKEN", "")
	}
	if cfg.API.ReadToken == "" {
		cfg.API.ReadToken = env.String("API_READ_TOKEN", "")
	}
	for _, b := range strings.Split(*brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			cfg.KafkaBrokers = append(cfg.KafkaBrokers, b)
		}
	}
	if *policyFile != "" {
		p, err := loadPolicy(*policyFile)
		if err != nil {
			return cfg, 0, err
		}
		cfg.Policy = p
	}
	metricKinds, err := parseKinds(*kinds)
	if err != nil {
		return cfg, 0, err
	}
	cfg.Detect.Kinds = metricKinds
	if *notifyFile != "" {
		nc, err := notify.LoadConfig(*notifyFile)
		if err != nil {
			return cfg, 0, err
		}
		cfg.Notify = nc
	}
	if *hooksFile != "" {
		rc, err := remediate.LoadConfig(*hooksFile)
		if err != nil {
			return cfg, 0, err
		}
		cfg.Remediate = rc
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return cfg, 0, fmt.Errorf("log level: %w", err)
	}
	return cfg, level, nil
}

// zeroMeansNone names the settings whose zero is a value of its own (their usage says which):
// the configuration spells it as negative, since a zero field there is unset and takes the
// default.
var zeroMeansNone = map[string]bool{
	"max-retries": true, "retry-interval": true, "open-span": true, "recovery-window": true,
	"recovery-samples": true, "reopen-window": true, "max-ahead": true,
}

// zeroesMeanZero keeps unset apart from zero. Every numeric flag carries its default, none of
// which is zero, so a zero left after parsing was given (as a flag or in the environment): it
// becomes the setting's own zero (zeroMeansNone; for the dev ports, any free port), or an
// error naming the setting where zero means nothing, instead of silently becoming the default.
func zeroesMeanZero(fs *flag.FlagSet, cfg *wire.Config) error {
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		g, ok := f.Value.(flag.Getter)
		if !ok {
			return
		}
		var zero bool
		none := "-1"
		switch v := g.Get().(type) {
		case int:
			zero = v == 0
		case float64:
			zero = v == 0
		case time.Duration:
			zero, none = v == 0, "-1ns"
		}
		if !zero {
			return
		}
		switch {
		case f.Name == "dev-kafka-port":
			cfg.EmbeddedKafkaAnyPort = true
		case f.Name == "dev-postgres-port":
			cfg.EmbeddedPostgresAnyPort = true
		case zeroMeansNone[f.Name]:
			if err := fs.Set(f.Name, none); err != nil {
				errs = append(errs, fmt.Errorf("--%s: %w", f.Name, err))
			}
		default:
			env := ""
			if i := strings.LastIndex(f.Usage, "["); i >= 0 {
				env = " (" + strings.Trim(f.Usage[i:], "[]") + ")"
			}
			errs = append(errs, fmt.Errorf("--%s%s is 0, which this setting cannot be; leave it unset for the default, %s", f.Name, env, f.DefValue))
		}
	})
	return errors.Join(errs...)
}

// parseKinds reads --metric-kinds: comma-separated metric=kind or service/metric=kind.
func parseKinds(s string) (map[string]detect.Kind, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	out := map[string]detect.Kind{}
	for _, item := range strings.Split(s, ",") {
		name, kind, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("--metric-kinds: %q is not metric=kind or service/metric=kind", item)
		}
		k, err := detect.ParseKind(kind)
		if err != nil {
			return nil, fmt.Errorf("--metric-kinds: %s: %w", name, err)
		}
		out[name] = k
	}
	return out, nil
}

// policyRule is one rule of a --severity-policy file.
type policyRule struct {
	Name           string  `json:"name"`
	Severity       string  `json:"severity"`
	MinActive      string  `json:"min_active,omitempty"`
	MinOccurrences int     `json:"min_occurrences,omitempty"`
	MinReopens     int     `json:"min_reopens,omitempty"`
	MinPeakExcess  float64 `json:"min_peak_excess,omitempty"`
}

// loadPolicy reads a severity policy: a JSON array of rules, unknown fields refused.
func loadPolicy(path string) (incident.Policy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return incident.Policy{}, fmt.Errorf("read severity policy: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var rules []policyRule
	if err := dec.Decode(&rules); err != nil {
		return incident.Policy{}, fmt.Errorf("parse severity policy %s: %w", path, err)
	}
	var p incident.Policy
	for _, r := range rules {
		sev, err := incident.ParseSeverity(r.Severity)
		if err != nil {
			return incident.Policy{}, fmt.Errorf("severity policy %s, rule %q: %w", path, r.Name, err)
		}
		var active time.Duration
		if r.MinActive != "" {
			if active, err = time.ParseDuration(r.MinActive); err != nil {
				return incident.Policy{}, fmt.Errorf("severity policy %s, rule %q: min_active: %w", path, r.Name, err)
			}
		}
		p.Rules = append(p.Rules, incident.Rule{Name: r.Name, Severity: sev, MinActive: active,
			MinOccurrences: r.MinOccurrences, MinReopens: r.MinReopens, MinPeakExcess: r.MinPeakExcess})
	}
	if err := p.Validate(); err != nil {
		return incident.Policy{}, fmt.Errorf("severity policy %s: %w", path, err)
	}
	return p, nil
}
