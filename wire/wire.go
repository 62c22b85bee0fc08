//go:build wireinject

package wire

import (
	"context"
	"log/slog"

	"github.com/google/wire"

	"github.com/incident-engine/engine/infra/postgres"
)

// InitializeWorker builds the worker from cfg. The returned cleanup stops what it started, in
// reverse order.
func InitializeWorker(ctx context.Context, cfg Config, logger *slog.Logger) (*Worker, func(), error) {
	wire.Build(
		provideWatermillLogger,
		provideKafka,
		provideDatabase,
		providePool,
		provideKafkaPublisher,
		provideOutbox,
		provideTicker,
		provideCorrelator,
		provideRegistry,
		provideMetrics,
		provideAPI,
		provideHTTP,
		postgres.NewStore,
		provideStages,
		provideTransport,
		provideRouter,
		providePruner,
		NewWorker,
	)
	return nil, nil, nil
}
