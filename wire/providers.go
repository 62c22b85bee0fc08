package wire

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/incident-engine/engine/domain/incident"
	"github.com/incident-engine/engine/domain/sample"
	"github.com/incident-engine/engine/handlers"
	"github.com/incident-engine/engine/infra/api"
	"github.com/incident-engine/engine/infra/dashboard"
	"github.com/incident-engine/engine/infra/deadletter"
	"github.com/incident-engine/engine/infra/httpserver"
	"github.com/incident-engine/engine/infra/kafka"
	"github.com/incident-engine/engine/infra/metrics"
	"github.com/incident-engine/engine/infra/notify"
	"github.com/incident-engine/engine/infra/postgres"
	"github.com/incident-engine/engine/infra/remediate"
	"github.com/incident-engine/engine/router"
)

// DatabaseURL is the PostgreSQL connection string in use, external or private.
type DatabaseURL string

func provideWatermillLogger(l *slog.Logger) watermill.LoggerAdapter { return router.WatermillLogger(l) }

// provideKafka returns the configured brokers, or starts the in-process broker.
func provideKafka(cfg Config, logger *slog.Logger) (kafka.Config, func(), error) {
	if len(cfg.KafkaBrokers) > 0 {
		return kafka.Config{Brokers: cfg.KafkaBrokers}, func() {}, nil
	}
	bc := kafka.BrokerConfig{Port: cfg.EmbeddedKafkaPort}
	if !cfg.EmbeddedKafkaAnyPort {
		bc.DataDir = filepath.Join(cfg.DataDir, "kafka")
	}
	b, err := kafka.StartBroker(bc)
	if err != nil {
		return kafka.Config{}, nil, fmt.Errorf("no KAFKA_BROKERS given and the in-process broker failed: %w", err)
	}
	logger.Info("in-process Kafka broker started", "brokers", b.Addrs())
	return kafka.Config{Brokers: b.Addrs()}, b.Close, nil
}

// provideDatabase returns the configured database URL, or starts the private cluster.
func provideDatabase(ctx context.Context, cfg Config, logger *slog.Logger) (DatabaseURL, func(), error) {
	if cfg.DatabaseURL != "" {
		return DatabaseURL(cfg.DatabaseURL), func() {}, nil
	}
	if len(cfg.KafkaBrokers) == 0 && !cfg.EmbeddedKafkaAnyPort {
		// The in-process broker's port is the sign of a running `make run`: refuse before
		// touching its cluster (StartCluster stops a server a crashed run left behind).
		if err := portFree(cfg.EmbeddedKafkaPort); err != nil {
			return "", nil, fmt.Errorf("port %d of the in-process broker is taken, most likely by another `make run` in this checkout (stop it with Ctrl-C), or run a second one with its own --dev-kafka-port, --dev-postgres-port and --data-dir: %w", cfg.EmbeddedKafkaPort, err)
		}
	}
	cc := postgres.ClusterConfig{Dir: filepath.Join(cfg.DataDir, "postgres"), Port: cfg.EmbeddedPostgresPort, Durable: true}
	cl, err := postgres.StartCluster(ctx, cc)
	if err != nil {
		return "", nil, fmt.Errorf("no DATABASE_URL given and the private PostgreSQL cluster failed: %w", err)
	}
	if from := cl.RelocatedFrom(); from != "" {
		logger.Warn("the postgres user cannot reach the data directory, so the cluster lives elsewhere", "asked", from, "dir", cl.Dir())
	}
	logger.Info("private PostgreSQL cluster started", "url", cl.URL(), "dir", cl.Dir())
	return DatabaseURL(cl.URL()), func() {
		if err := cl.Stop(); err != nil {
			logger.Error("stop private PostgreSQL cluster", "err", err)
		}
	}, nil
}

// portFree reports whether a TCP port on localhost can be listened on.
func portFree(port int) error {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return err
	}
	return l.Close()
}

func providePool(ctx context.Context, url DatabaseURL) (*pgxpool.Pool, func(), error) {
	pool, err := postgres.Connect(ctx, string(url))
	if err != nil {
		return nil, nil, err
	}
	if _, err := postgres.Migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, nil, err
	}
	return pool, pool.Close, nil
}

func provideKafkaPublisher(c kafka.Config, l watermill.LoggerAdapter) (*wkafka.Publisher, func(), error) {
	pub, err := kafka.NewPublisher(c, l)
	if err != nil {
		return nil, nil, err
	}
	return pub, func() { _ = pub.Close() }, nil
}

func provideOutbox(pool *pgxpool.Pool, cfg Config, l watermill.LoggerAdapter) (*wsql.Subscriber, func(), error) {
	sub, err := postgres.NewOutboxSubscriber(pool, postgres.OutboxConfig{PollInterval: cfg.OutboxPollInterval}, l)
	if err != nil {
		return nil, nil, err
	}
	if err := postgres.InitializeOutbox(sub, router.OutboxTopics...); err != nil {
		return nil, nil, err
	}
	return sub, func() { _ = sub.Close() }, nil
}

func provideTicker(pool *pgxpool.Pool, cfg Config, kc kafka.Config, l watermill.LoggerAdapter, logger *slog.Logger) (*router.Ticker, func(), error) {
	pub, err := postgres.NewOutboxPublisher(pool, l)
	if err != nil {
		return nil, nil, err
	}
	t := router.NewTicker(pub, cfg.TickInterval, logger)
	// Staleness is judged against what the broker holds: the samples still on their way
	// through decode, score and correlate.
	group := func(stage string) string { return cfg.Router.ConsumerGroupPrefix + "." + stage }
	backlog := kafka.NewBacklog(kc,
		kafka.Stage{Group: group("decode"), Topic: cfg.Router.Topics.Metrics, ReceivedAt: func(r kafka.Record) (time.Time, bool) { return r.Timestamp, true }},
		kafka.Stage{Group: group("score"), Topic: string(router.TopicDecoded), ReceivedAt: payloadReceivedAt},
		kafka.Stage{Group: group("correlate"), Topic: string(router.TopicScored), ReceivedAt: payloadReceivedAt},
	)
	t.WatchBacklog(backlog)
	return t, func() { _ = backlog.Close() }, nil
}

// payloadReceivedAt reads the broker's receipt time that decode wrote into a decoded or
// scored sample, or batch of them.
func payloadReceivedAt(r kafka.Record) (time.Time, bool) {
	return handlers.ReceivedAt(r.Message.Payload)
}

func provideCorrelator(cfg Config) (incident.Correlator, error) {
	return incident.NewCorrelator(cfg.Correlation)
}

func provideStages(cfg Config, store *postgres.Store, pool *pgxpool.Pool, kc kafka.Config, c incident.Correlator, m *metrics.Engine, logger *slog.Logger) (router.Stages, func(), error) {
	score, err := handlers.NewScoreHandler(cfg.Detect, postgres.NewModels(pool), logger)
	if err != nil {
		return router.Stages{}, nil, err
	}
	score.SetMetrics(m)
	// The score stage replays a restored service's samples from its own input topic.
	replay := kafka.NewPartitionLog(kc, string(router.TopicDecoded))
	if err := score.SetDurability(handlers.Durability{
		States: detectorStates{postgres.NewDetectorStates(pool)}, Log: replay, Position: kafkaPosition, CheckpointEvery: cfg.CheckpointEvery,
		IdleAfter: cfg.IdleAfter, MaxServices: cfg.MaxServices,
	}); err != nil {
		return router.Stages{}, nil, err
	}
	escalate, err := handlers.NewEscalateHandler[*postgres.Tx](store, cfg.Policy, logger)
	if err != nil {
		return router.Stages{}, nil, err
	}
	notifier, err := notify.New(cfg.Notify)
	if err != nil {
		return router.Stages{}, nil, err
	}
	hooks, err := remediate.New(cfg.Remediate)
	if err != nil {
		return router.Stages{}, nil, err
	}
	resolve := handlers.NewResolveHandler[*postgres.Tx](store, c, logger)
	resolve.SetPartitionOf(kafka.PartitionOf)
	decode := handlers.NewDecodeHandler(kafka.ReceivedAt)
	decode.SetMaxAhead(cfg.MaxAhead)
	decode.SetMetrics(m)
	notifyStage := handlers.NewNotifyHandler(notifier, postgres.NewDeliveries(pool), nil, logger)
	notifyStage.SetMetrics(m)
	return router.Stages{
		Decode:    decode,
		Score:     score,
		Correlate: handlers.NewCorrelateHandler[*postgres.Tx](store, c, logger),
		Escalate:  escalate,
		Resolve:   resolve,
		Persist:   handlers.NewPersistHandler(),
		Notify:    notifyStage,
		Remediate: handlers.NewRemediateHandler[*postgres.Tx](store, hooks, postgres.NewRemediations(pool), nil, logger),
	}, func() { _ = replay.Close() }, nil
}

// detectorStates adapts the PostgreSQL detector states to the score stage.
type detectorStates struct{ *postgres.DetectorStates }

func (s detectorStates) Load(ctx context.Context, service string) (handlers.DetectorState, bool, error) {
	p, o, state, ok, err := s.DetectorStates.Load(ctx, service)
	return handlers.DetectorState{Service: service, At: handlers.Position{Partition: p, Offset: o}, State: state}, ok, err
}

func (s detectorStates) Save(ctx context.Context, st handlers.DetectorState) error {
	return s.DetectorStates.Save(ctx, st.Service, st.At.Partition, st.At.Offset, st.State)
}

// kafkaPosition is where a message sits in the Kafka topic it was consumed from.
func kafkaPosition(msg *message.Message) (handlers.Position, bool) {
	p, o, ok := kafka.Position(msg)
	return handlers.Position{Partition: p, Offset: o}, ok
}

func provideTransport(kc kafka.Config, pub *wkafka.Publisher, outbox *wsql.Subscriber, reg *prometheus.Registry, m *metrics.Engine) router.Transport {
	return router.Transport{Kafka: kc, KafkaPublisher: pub, DeadLetter: m.CountDeadLetters(pub), Outbox: outbox, Registry: reg}
}

func provideMetrics(reg *prometheus.Registry, pool *pgxpool.Pool, cfg Config) (*metrics.Engine, error) {
	return metrics.New(reg, pool, router.OutboxTopics, cfg.PerServiceMetrics)
}

func provideRouter(cfg Config, s router.Stages, t router.Transport, kc kafka.Config, logger *slog.Logger) (*message.Router, error) {
	// Create the Kafka topics up front with several partitions, so services spread over them
	// and the consumer groups find them on first start.
	if err := kafka.CreateTopics(kc, kafka.Partitions, cfg.Router.Topics.Metrics, string(router.TopicDecoded), string(router.TopicScored), string(router.TopicIncidents), cfg.Router.Topics.DeadLetter); err != nil {
		return nil, err
	}
	return router.New(cfg.Router, s, t, logger)
}

func providePruner(pool *pgxpool.Pool, cfg Config, logger *slog.Logger) *postgres.Pruner {
	return postgres.NewPruner(pool, cfg.Retention, logger)
}

func provideRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// provideAPI builds the operator API: actions through the operate handler (events to the
// outbox, as the stages write them), reads from the views, dead letters from the dead-letter
// topic, replayed through the worker's own Kafka publisher or the outbox.
func provideAPI(cfg Config, store *postgres.Store, pool *pgxpool.Pool, c incident.Correlator, kc kafka.Config, pub *wkafka.Publisher, l watermill.LoggerAdapter, logger *slog.Logger) (*api.API, error) {
	outbox, err := postgres.NewOutboxPublisher(pool, l)
	if err != nil {
		return nil, err
	}
	dlq := deadletter.NewQueue(kc, cfg.Router.Topics.DeadLetter, func(_ context.Context, topic string) (message.Publisher, error) {
		if router.IsOutboxTopic(topic) {
			return outbox, nil
		}
		return pub, nil
	})
	op := api.NewActions[*postgres.Tx](store, c, router.OperatorTopic, logger)
	return api.New(cfg.API, op, postgres.NewViews(pool), dlq, nil, logger)
}

func provideHTTP(cfg Config, reg *prometheus.Registry, pool *pgxpool.Pool, kc kafka.Config, ops *api.API, logger *slog.Logger) (*httpserver.Server, error) {
	views := dashboardReader{pool: pool, samples: postgres.NewSamples(pool), staleAfter: cfg.Correlation.StaleAfter}
	handler := ops.Handler(func(mux *http.ServeMux) {
		dashboard.Register(mux, views, logger)
		// /metrics behind the read token, when one is set.
		mux.Handle("GET /metrics", ops.ReadGuard(promhttp.HandlerFor(reg, promhttp.HandlerOpts{})))
	})
	return httpserver.New(cfg.HTTPAddr, nil, map[string]httpserver.Check{
		"postgres": pool.Ping,
		"kafka":    func(ctx context.Context) error { return kafka.Ping(ctx, kc) },
	}, logger, func(mux *http.ServeMux) { mux.Handle("/", handler) })
}

// dashboardReader reads what the dashboard shows. The services' state is judged against the
// wall clock of the request (is data still coming?), which is a view, not a decision.
type dashboardReader struct {
	pool       *pgxpool.Pool
	samples    *postgres.Samples
	staleAfter time.Duration
}

func (d dashboardReader) Services(ctx context.Context, after string, limit int) ([]postgres.ServiceState, error) {
	return postgres.Services(ctx, d.pool, time.Now(), d.staleAfter, 60, after, limit)
}

func (d dashboardReader) Samples(ctx context.Context, service string, from, to time.Time, limit int) ([]sample.Scored, error) {
	return d.samples.Range(ctx, service, from, to, limit)
}
