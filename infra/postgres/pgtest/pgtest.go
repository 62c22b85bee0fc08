// Package pgtest gives tests a real, throwaway PostgreSQL: one private cluster per test binary,
// started from the initdb and pg_ctl on PATH on first use, and a fresh database per test.
//
// Use it from TestMain so the cluster is stopped when the tests end:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
// and call pgtest.Database(t) for a connection URL. There is no skipping: a test that cannot
// start PostgreSQL fails and says what is missing.
package pgtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/incident-engine/engine/infra/postgres"
)

var (
	once    sync.Once
	cluster *postgres.Cluster
	root    string
	err     error
	seq     atomic.Int64
)

// Main runs the tests and stops the cluster, if one was started, afterwards.
func Main(m *testing.M) int {
	code := m.Run()
	if cluster != nil {
		if err := cluster.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest:", err)
		}
	}
	if root != "" {
		_ = os.RemoveAll(root)
	}
	return code
}

// Database creates an empty database in the shared cluster and returns its URL. It fails the
// test when PostgreSQL cannot be started.
func Database(t testing.TB) string {
	t.Helper()
	once.Do(start)
	if err != nil {
		t.Fatalf("pgtest: cannot start a throwaway PostgreSQL cluster: %v", err)
	}
	name := fmt.Sprintf("test_%d_%d", os.Getpid(), seq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, cerr := pgx.Connect(ctx, cluster.URL())
	if cerr != nil {
		t.Fatalf("pgtest: connect: %v", cerr)
	}
	defer conn.Close(ctx)
	if _, cerr := conn.Exec(ctx, "CREATE DATABASE "+name); cerr != nil {
		t.Fatalf("pgtest: create database: %v", cerr)
	}
	return cluster.DatabaseURL(name)
}

func start() {
	root, err = os.MkdirTemp("", "pgtest-")
	if err != nil {
		return
	}
	// The server runs as the postgres user when the tests run as root: it must reach its dir.
	if err = os.Chmod(root, 0o755); err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// PGTEST_DURABLE=1 keeps fsync on, as in production, for benchmarks of the write path.
	durable := os.Getenv("PGTEST_DURABLE") != ""
	cluster, err = postgres.StartCluster(ctx, postgres.ClusterConfig{Dir: filepath.Join(root, "data"), Durable: durable})
}
