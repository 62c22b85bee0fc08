package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DetectorStates keeps each service's detector state for the score stage, with the position
// (partition and offset) in the stage's input of the last sample the state includes (see
// handlers.Durability).
type DetectorStates struct {
	pool *pgxpool.Pool
}

// NewDetectorStates returns the detector states over pool.
func NewDetectorStates(pool *pgxpool.Pool) *DetectorStates { return &DetectorStates{pool: pool} }

// Load returns the service's saved state and its position, and false when it has none.
func (s *DetectorStates) Load(ctx context.Context, service string) (partition int32, offset int64, state []byte, ok bool, err error) {
	err = s.pool.QueryRow(ctx, `SELECT partition, "offset", state FROM detector_state WHERE service = $1`, service).
		Scan(&partition, &offset, &state)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, 0, nil, false, nil
	}
	if err != nil {
		return 0, 0, nil, false, fmt.Errorf("load detector state of %s: %w", service, err)
	}
	return partition, offset, state, true, nil
}

// Save stores a state unless the stored one is of a later sample on the same partition: a
// worker that lost the service, still judging a sample the new owner passed, cannot take its
// state back. A state of another partition (the topic was repartitioned) replaces it.
func (s *DetectorStates) Save(ctx context.Context, service string, partition int32, offset int64, state []byte) error {
	_, err := s.pool.Exec(ctx, `
		INSERT INTO detector_state (service, partition, "offset", state) VALUES ($1, $2, $3, $4)
		ON CONFLICT (service) DO UPDATE SET partition = excluded.partition, "offset" = excluded."offset",
			state = excluded.state, saved_at = now()
		WHERE detector_state.partition <> excluded.partition OR detector_state."offset" < excluded."offset"`,
		service, partition, offset, state)
	if err != nil {
		return fmt.Errorf("save detector state of %s: %w", service, err)
	}
	return nil
}
