package wire

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/incident-engine/engine/infra/httpserver"
	"github.com/incident-engine/engine/infra/kafka"
	"github.com/incident-engine/engine/infra/postgres"
	"github.com/incident-engine/engine/router"
)

// Worker is the running engine: the router with every stage and the resolution ticker.
type Worker struct {
	Router      *message.Router
	Ticker      *router.Ticker
	HTTP        *httpserver.Server
	Kafka       kafka.Config
	DatabaseURL DatabaseURL
	Registry    *prometheus.Registry
	Pruner      *postgres.Pruner
	logger      *slog.Logger
}

// NewWorker groups the worker's parts.
func NewWorker(r *message.Router, t *router.Ticker, h *httpserver.Server, kc kafka.Config, url DatabaseURL, reg *prometheus.Registry, pr *postgres.Pruner, logger *slog.Logger) *Worker {
	return &Worker{Router: r, Ticker: t, HTTP: h, Kafka: kc, DatabaseURL: url, Registry: reg, Pruner: pr, logger: logger}
}

// Run runs the router, the ticker, the HTTP server and the pruner until ctx ends or one of them fails,
// then waits for all of them to stop.
func (w *Worker) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := w.Router.Run(ctx); err != nil {
			return fmt.Errorf("router: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		select {
		case <-w.Router.Running():
		case <-ctx.Done():
			return nil
		}
		w.logger.Info("pipeline running", "brokers", w.Kafka.Brokers)
		return w.Ticker.Run(ctx)
	})
	g.Go(func() error { return w.HTTP.Run(ctx) })
	g.Go(func() error { return w.Pruner.Run(ctx) })
	return g.Wait()
}

// New fills cfg's defaults, validates it and builds the worker with the generated injector.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (*Worker, func(), error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, nil, fmt.Errorf("configuration: %w", err)
	}
	return InitializeWorker(ctx, cfg, logger)
}
