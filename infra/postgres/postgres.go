// Package postgres is the PostgreSQL adapter: the connection pool, schema migrations, the
// incident repository, the transactional outbox (watermill-sql over pgx) and a private
// cluster runner for development and tests.
//
// Every write that changes an incident goes through Store.InTx, so the incident row, its
// timeline entries and the events published through the outbox commit in one transaction.
// The package knows SQL and pgx; it does not decide anything about incidents (the domain does)
// and it does not classify errors for retries (the router does).
package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/incident-engine/engine/migrations"
)

// Connect opens a pool to url and waits until the server answers, for at most 30 seconds.
func Connect(ctx context.Context, url string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	if cfg.MaxConns < 16 {
		cfg.MaxConns = 16
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database pool: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err = pool.Ping(ctx)
		if err == nil {
			return pool, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			pool.Close()
			return nil, fmt.Errorf("database %s not reachable: %w", cfg.ConnConfig.Host, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// Migrate applies every pending migration in migrations.FS and returns the versions applied.
func Migrate(ctx context.Context, pool *pgxpool.Pool) ([]int64, error) {
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	return migrateDB(ctx, db)
}

func migrateDB(ctx context.Context, db *sql.DB) ([]int64, error) {
	return migrateFS(ctx, db, migrations.FS)
}

// migrateFS applies the migrations in fsys. Migrations are numbered by the feature that
// reserved the number, not by when they were merged, so a database may have applied a later
// number before an earlier one arrived: goose applies such a missing migration instead of
// refusing to start. Each migration is written to be correct in either order.
func migrateFS(ctx context.Context, db *sql.DB, fsys fs.FS) ([]int64, error) {
	// Workers started together migrate one at a time: the first applies, the others find
	// nothing left to do.
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, fmt.Errorf("migration lock: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys, goose.WithAllowOutofOrder(true), goose.WithSessionLocker(locker))
	if err != nil {
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	results, err := p.Up(ctx)
	if err != nil {
		var partial *goose.PartialError
		if errors.As(err, &partial) {
			return nil, fmt.Errorf("migration %d failed: %w", partial.Failed.Source.Version, partial.Err)
		}
		return nil, fmt.Errorf("apply migrations: %w", err)
	}
	versions := make([]int64, 0, len(results))
	for _, r := range results {
		versions = append(versions, r.Source.Version)
	}
	return versions, nil
}
