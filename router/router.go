// Package router is the pipeline: every stage, in order, with the topic it reads and the topic
// its output goes to, and the middleware every message passes through.
//
//	stage      handler                  in                         out
//	decode     handlers/decode.go       metrics (Kafka)            metrics.decoded (Kafka)
//	score      handlers/score.go        metrics.decoded (Kafka)    metrics.scored (Kafka)
//	correlate  handlers/correlate.go    metrics.scored (Kafka)     incidents.correlated (outbox), samples table
//	escalate   handlers/escalate.go     incidents.correlated       incidents.outbox (outbox)
//	resolve    handlers/resolve.go      incidents.checks (ticker)  incidents.outbox (outbox)
//	persist    handlers/persist.go      incidents.outbox           incidents (Kafka)
//	notify     handlers/notify.go       incidents (Kafka)          receivers (Slack, PagerDuty, webhooks)
//	remediate  handlers/remediate.go    incidents (Kafka)          hooks; escalations to incidents.outbox
//
// Not a stage: the operator API's actions (infra/api/actions.go, served over HTTP by infra/api)
// write their incident changes to OperatorTopic (TopicOutbox) in their own transactions, so
// persist relays them to incidents like every other change.
//
// Kafka topics are keyed by service, so each service's messages stay in order. A message of
// metrics, metrics.decoded or metrics.scored carries one sample or a batch of one service's
// samples, and stays one message through decode, score and correlate (handlers/messages.go).
// Outbox topics are PostgreSQL tables (watermill-sql's queue schema): the stages that change
// incident state write their events there in the same transaction as the state, and the
// router delivers them on. Every stage is bound to its input and output topic below, one line
// each: stages that publish inside a transaction get their outbox topic from To; the others
// return messages and the router publishes them to the topic on their line. Poisoned messages
// of any stage go to the dead-letter topic (Kafka) with the reason in the metadata.
package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/metrics"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/incident-engine/engine/handlers"
	"github.com/incident-engine/engine/infra/kafka"
	"github.com/incident-engine/engine/infra/postgres"
)

// KafkaTopic names a topic carried by Kafka; handlers.OutboxTopic one carried by the
// PostgreSQL outbox. Distinct types, so that one cannot be bound where the other belongs.
type KafkaTopic string

// Fixed topic names. The input and dead-letter topics are configurable (Topics).
const (
	TopicDecoded   KafkaTopic = "metrics.decoded"
	TopicScored    KafkaTopic = "metrics.scored"
	TopicIncidents KafkaTopic = "incidents"

	TopicCorrelated handlers.OutboxTopic = "incidents.correlated"
	TopicChecks     handlers.OutboxTopic = "incidents.checks"
	TopicOutbox     handlers.OutboxTopic = "incidents.outbox"
)

// OperatorTopic is where the operator API's actions write their incident changes: the same
// outbox topic as the stages that change incidents, so persist relays them on too.
const OperatorTopic = TopicOutbox

// OutboxTopics are the topics carried by PostgreSQL rather than Kafka.
var OutboxTopics = []string{string(TopicCorrelated), string(TopicChecks), string(TopicOutbox)}

// IsOutboxTopic reports whether topic lives in the PostgreSQL outbox.
func IsOutboxTopic(topic string) bool {
	for _, t := range OutboxTopics {
		if t == topic {
			return true
		}
	}
	return false
}

// Topics names the configurable topics.
type Topics struct {
	// Metrics is where services publish their samples (default "metrics").
	Metrics string
	// DeadLetter receives poisoned messages (default "metrics.deadletter").
	DeadLetter string
}

// Config tunes the router. A zero field takes the default beside it.
type Config struct {
	Topics Topics
	// ConsumerGroupPrefix names the Kafka consumer groups: <prefix>.<stage> (default
	// "incident-engine").
	ConsumerGroupPrefix string
	// MaxRetries of a failing message before it is dead-lettered or, for transient errors,
	// handed back to the broker for redelivery (default 3). Zero takes the default; a
	// negative count retries none.
	MaxRetries int
	// RetryInterval is the first wait between retries; it doubles up to 2s (default 100ms).
	// Zero takes the default; a negative interval retries at once.
	RetryInterval time.Duration
	// HandlerTimeout bounds one attempt of a handler (default 30s).
	HandlerTimeout time.Duration
}

// SetDefaults fills every zero field with its default.
func (c *Config) SetDefaults() {
	if c.Topics.Metrics == "" {
		c.Topics.Metrics = "metrics"
	}
	if c.Topics.DeadLetter == "" {
		c.Topics.DeadLetter = "metrics.deadletter"
	}
	if c.ConsumerGroupPrefix == "" {
		c.ConsumerGroupPrefix = "incident-engine"
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = 3
	}
	if c.RetryInterval == 0 {
		c.RetryInterval = 100 * time.Millisecond
	}
	if c.HandlerTimeout == 0 {
		c.HandlerTimeout = 30 * time.Second
	}
}

// Validate reports every problem of the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.Topics.Metrics == c.Topics.DeadLetter {
		errs = append(errs, errors.New("router: the metrics and dead-letter topics must differ"))
	}
	for _, t := range []string{c.Topics.Metrics, c.Topics.DeadLetter} {
		if KafkaTopic(t) == TopicDecoded || KafkaTopic(t) == TopicScored || KafkaTopic(t) == TopicIncidents || IsOutboxTopic(t) {
			errs = append(errs, fmt.Errorf("router: topic %q is used by the pipeline itself", t))
		}
	}
	if c.HandlerTimeout <= 0 {
		errs = append(errs, errors.New("router: the handler timeout must be positive"))
	}
	return errors.Join(errs...)
}

// Stages are the pipeline's handlers, built elsewhere (wire) and wired here.
type Stages struct {
	Decode    *handlers.DecodeHandler
	Score     *handlers.ScoreHandler
	Correlate *handlers.CorrelateHandler[*postgres.Tx]
	Escalate  *handlers.EscalateHandler[*postgres.Tx]
	Resolve   *handlers.ResolveHandler[*postgres.Tx]
	Persist   *handlers.PersistHandler
	Notify    *handlers.NotifyHandler
	Remediate *handlers.RemediateHandler[*postgres.Tx]
}

// Transport is what the stages are connected by.
type Transport struct {
	// Kafka locates the brokers; the router makes one consumer group per Kafka-fed stage.
	Kafka kafka.Config
	// KafkaPublisher publishes the Kafka topics and, unless DeadLetter is set, the dead-letter
	// topic.
	KafkaPublisher message.Publisher
	// DeadLetter publishes poisoned messages (default KafkaPublisher), e.g. a counting wrapper.
	DeadLetter message.Publisher
	// Outbox subscribes to the outbox topics.
	Outbox message.Subscriber
	// Registry receives the router's Prometheus metrics; nil registers none.
	Registry prometheus.Registerer
}

// New builds the router with every stage. Run it with Run(ctx); it stops when ctx ends.
func New(cfg Config, s Stages, t Transport, logger *slog.Logger) (*message.Router, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	wlog := WatermillLogger(logger)
	r, err := message.NewRouter(message.RouterConfig{CloseTimeout: 15 * time.Second}, wlog)
	if err != nil {
		return nil, fmt.Errorf("new router: %w", err)
	}
	if t.Registry != nil {
		metrics.NewPrometheusMetricsBuilder(t.Registry, "incident_engine", "").AddPrometheusRouterMetrics(r)
	}
	deadLetter := t.DeadLetter
	if deadLetter == nil {
		deadLetter = t.KafkaPublisher
	}
	mw, err := Middleware(cfg, deadLetter, wlog)
	if err != nil {
		return nil, err
	}
	r.AddMiddleware(mw...)

	sub := func(stage string) (message.Subscriber, error) {
		return kafka.NewSubscriber(t.Kafka, cfg.ConsumerGroupPrefix+"."+stage, wlog)
	}
	decodeIn, err := sub("decode")
	if err != nil {
		return nil, err
	}
	scoreIn, err := sub("score")
	if err != nil {
		return nil, err
	}
	correlateIn, err := sub("correlate")
	if err != nil {
		return nil, err
	}
	notifyIn, err := sub("notify")
	if err != nil {
		return nil, err
	}
	remediateIn, err := sub("remediate")
	if err != nil {
		return nil, err
	}

	// Every stage, its input and its output. Stages that change incidents publish to an outbox
	// topic inside their transaction: To binds it.
	r.AddHandler("decode", cfg.Topics.Metrics, decodeIn, string(TopicDecoded), t.KafkaPublisher, s.Decode.Handle)
	r.AddHandler("score", string(TopicDecoded), scoreIn, string(TopicScored), t.KafkaPublisher, s.Score.Handle)
	r.AddConsumerHandler("correlate", string(TopicScored), correlateIn, s.Correlate.To(TopicCorrelated)) // and the samples table, for the charts
	r.AddConsumerHandler("escalate", string(TopicCorrelated), t.Outbox, s.Escalate.To(TopicOutbox))
	r.AddConsumerHandler("resolve", string(TopicChecks), t.Outbox, s.Resolve.To(TopicOutbox))
	r.AddHandler("persist", string(TopicOutbox), t.Outbox, string(TopicIncidents), t.KafkaPublisher, s.Persist.Handle)
	r.AddConsumerHandler("notify", string(TopicIncidents), notifyIn, s.Notify.Handle)                   // -> receivers, over HTTP
	r.AddConsumerHandler("remediate", string(TopicIncidents), remediateIn, s.Remediate.To(TopicOutbox)) // -> hooks, and escalations
	return r, nil
}

// WatermillLogger adapts logger for Watermill, demoting Watermill's chatty info messages
// (every subscription and schema check) to debug. A message below logger's level costs
// nothing: Watermill's own adapter converts every message's fields before the level is
// looked at, and it traces each message of every stage (5% of a worker's CPU at fleet load).
func WatermillLogger(logger *slog.Logger) watermill.LoggerAdapter {
	levels := map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug}
	return gatedLogger{watermill.NewSlogLoggerWithLevelMapping(logger, levels), logger}
}

// gatedLogger passes a message on to Watermill's adapter only when logger would write it.
type gatedLogger struct {
	watermill.LoggerAdapter
	logger *slog.Logger
}

func (g gatedLogger) enabled(level slog.Level) bool {
	return g.logger.Enabled(context.Background(), level)
}

func (g gatedLogger) Info(msg string, fields watermill.LogFields) {
	if g.enabled(slog.LevelDebug) { // Watermill's info is demoted to debug above
		g.LoggerAdapter.Info(msg, fields)
	}
}

func (g gatedLogger) Debug(msg string, fields watermill.LogFields) {
	if g.enabled(slog.LevelDebug) {
		g.LoggerAdapter.Debug(msg, fields)
	}
}

func (g gatedLogger) Trace(msg string, fields watermill.LogFields) {
	if g.enabled(watermill.LevelTrace) {
		g.LoggerAdapter.Trace(msg, fields)
	}
}

func (g gatedLogger) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return gatedLogger{g.LoggerAdapter.With(fields), g.logger}
}
