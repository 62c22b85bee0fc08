package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/incident-engine/engine/infra/postgres"
)

func migrate(ctx context.Context, stdout io.Writer) error {
	url := env("DATABASE_URL", "")
	if url == "" {
		return errors.New("migrate needs DATABASE_URL")
	}
	pool, err := postgres.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer pool.Close()
	applied, err := postgres.Migrate(ctx, pool)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "applied %d migrations %v\n", len(applied), applied)
	return nil
}
