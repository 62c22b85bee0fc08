package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/incident-engine/engine/infra/postgres"
	"github.com/incident-engine/engine/wire"
)

// TestEmbeddedDefaults runs the worker the way `make run` does, with no KAFKA_BROKERS and no
// DATABASE_URL: it starts its own broker and private PostgreSQL cluster, serves a sample
// end to end, and on shutdown stops the cluster it started.
func TestEmbeddedDefaults(t *testing.T) {
	dir, err := os.MkdirTemp("", "embedded-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil { // the cluster's user must reach its directory
		t.Fatal(err)
	}
	cfg := wire.Config{Dev: true, DataDir: filepath.Join(dir, "data"), EmbeddedKafkaAnyPort: true, EmbeddedPostgresAnyPort: true, HTTPAddr: "127.0.0.1:0"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, cleanup, err := wire.New(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	<-w.Router.Running()

	e := &engine{brokers: w.Kafka.Brokers, worker: w}
	e.pool, err = postgres.Connect(ctx, string(w.DatabaseURL))
	if err != nil {
		t.Fatal(err)
	}
	e.publishRaw(t, "embedded-api", samplesJSON("embedded-api", simStart, 3, normalLatency)...)
	e.waitProcessed(t, simStart.Add(2*time.Minute), "embedded-api")
	e.pool.Close()

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("worker stopped with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("worker did not stop")
	}
	cleanup()
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "postgres", "postmaster.pid")); !os.IsNotExist(err) {
		t.Errorf("private cluster still running after shutdown (postmaster.pid: %v)", err)
	}
}

// TestDevOnlyWhenAskedAndOnce checks that the worker starts in-process infrastructure only
// with --dev (without it, and without KAFKA_BROKERS or DATABASE_URL, it refuses and says what
// to set), and that a second --dev worker in the same checkout stops with a clear message
// instead of taking the first one's cluster down.
func TestDevOnlyWhenAskedAndOnce(t *testing.T) {
	if _, _, err := wire.New(context.Background(), wire.Config{HTTPAddr: "127.0.0.1:0"}, slog.New(slog.DiscardHandler)); err == nil ||
		!strings.Contains(err.Error(), "KAFKA_BROKERS") || !strings.Contains(err.Error(), "--dev") {
		t.Errorf("without brokers, database or --dev: %v, want a refusal naming KAFKA_BROKERS and --dev", err)
	}
	dir, err := os.MkdirTemp("", "dev-twice-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := wire.Config{Dev: true, DataDir: filepath.Join(dir, "data"), EmbeddedKafkaPort: freePort(t), EmbeddedPostgresAnyPort: true, HTTPAddr: "127.0.0.1:0"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first, cleanup, err := wire.New(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	if _, _, err := wire.New(ctx, cfg, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "another `make run`") {
		t.Errorf("a second --dev worker in the same checkout: %v, want a refusal saying another one runs", err)
	}
	pool, err := postgres.Connect(ctx, string(first.DatabaseURL))
	if err != nil {
		t.Fatalf("the first worker's cluster after the second start: %v", err)
	}
	defer pool.Close()
	if err := pool.Ping(ctx); err != nil {
		t.Errorf("the first worker's cluster no longer answers: %v", err)
	}
}
