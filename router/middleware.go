package router

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/incident-engine/engine/handlers"
)

// Middleware returns the middleware every handler runs in, outermost first. The order is
// the design:
//
//  1. CorrelationID: every message and what it produces share one id for tracing.
//  2. Poison queue: a message that failed for good goes to the dead-letter topic with the
//     reason, and is acked so its partition moves on. It wraps Retry, so a message is
//     poisoned only after its retries, and it skips transient errors, which go back to the
//     broker to be redelivered once the database or broker is back (or, for a message cut
//     short by shutdown, once the worker is): nothing is lost either way.
//  3. Retry with exponential backoff, capped: permanent errors (bad input, panics) are not
//     retried at all.
//  4. Timeout: each attempt gets its own deadline.
//  5. Recoverer, innermost: a panic becomes an error that the layers above treat as permanent,
//     so a message that panics is dead-lettered instead of looping.
func Middleware(cfg Config, deadLetter message.Publisher, logger watermill.LoggerAdapter) ([]message.HandlerMiddleware, error) {
	cfg.SetDefaults()
	poison, err := middleware.PoisonQueueWithFilter(deadLetter, cfg.Topics.DeadLetter, func(err error) bool { return !IsTransient(err) })
	if err != nil {
		return nil, err
	}
	retry := middleware.Retry{
		MaxRetries:      max(0, cfg.MaxRetries),
		InitialInterval: max(0, cfg.RetryInterval), // negative: at once
		MaxInterval:     2 * time.Second,
		Multiplier:      2,
		ShouldRetry:     func(p middleware.RetryParams) bool { return !IsPermanent(p.Err) },
		// Each attempt starts from the message's original context: Timeout, inside Retry,
		// cancels the context it gives an attempt when the attempt ends, so without the
		// reset every retry would start with a cancelled context and fail at once.
		ResetContextOnRetry: true,
		Logger:              logger,
	}
	return []message.HandlerMiddleware{
		middleware.CorrelationID,
		poison,
		retry.Middleware,
		middleware.Timeout(cfg.HandlerTimeout),
		recoverer(logger),
	}, nil
}

// recoverer turns a panic into a permanent error that names the panic value. The stack trace
// goes to the log, once, rather than into the dead-letter metadata.
func recoverer(logger watermill.LoggerAdapter) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) (out []*message.Message, err error) {
			defer func() {
				if r := recover(); r != nil {
					err = handlers.Permanent(fmt.Errorf("handler panicked: %v", r))
					logger.Error("handler panicked", err, watermill.LogFields{
						"handler": message.HandlerNameFromCtx(msg.Context()), "message_uuid": msg.UUID, "stack": string(debug.Stack()),
					})
					out = nil
				}
			}()
			return h(msg)
		}
	}
}

// IsPermanent reports whether no retry can fix err: invalid input or a panic.
func IsPermanent(err error) bool {
	var panicked middleware.RecoveredPanicError
	return errors.Is(err, handlers.ErrPermanent) || errors.As(err, &panicked)
}

// IsTransient reports whether err comes from a dependency being briefly unavailable (network,
// database connection, broker), or from the worker shutting down mid-message, so the message
// should wait and be redelivered rather than dead-lettered.
func IsTransient(err error) bool {
	if err == nil || IsPermanent(err) {
		return false
	}
	var netErr net.Error
	var connErr *pgconn.ConnectError
	switch {
	case errors.As(err, &netErr), errors.As(err, &connErr),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, sarama.ErrOutOfBrokers), errors.Is(err, sarama.ErrNotConnected),
		pgconn.SafeToRetry(err), pgconn.Timeout(err):
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// Class 08: connection exception; 40: transaction rollback (serialization, deadlock);
		// 53: insufficient resources; 57P: operator intervention (shutdown).
		c := pgErr.Code
		return len(c) >= 2 && (c[:2] == "08" || c[:2] == "40" || c[:2] == "53" || (len(c) >= 3 && c[:3] == "57P"))
	}
	return false
}
