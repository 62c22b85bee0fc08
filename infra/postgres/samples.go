package postgres

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	fastjson "github.com/segmentio/encoding/json"

	"github.com/incident-engine/engine/domain/sample"
)

// Samples reads the scored samples that correlate keeps (Tx.SaveSamples).
type Samples struct {
	pool *pgxpool.Pool
}

// NewSamples returns the sample reader over pool.
func NewSamples(pool *pgxpool.Pool) *Samples { return &Samples{pool: pool} }

// SaveSamples keeps scored samples for the dashboard's charts, written with the commit in the
// same round trip as the watches; a sample already kept (same service and time) stays as it
// was.
func (t *Tx) SaveSamples(batch ...sample.Scored) error {
	if len(batch) == 0 {
		return nil
	}
	n := len(batch)
	services, metrics := make([]string, n), make([]string, n)
	at, scores, thresholds := make([]time.Time, n), make([]*float64, n), make([]*float64, n)
	anomalous, versions := make([]bool, n), make([]int32, n)
	values := make(map[string]float64)
	for i, x := range batch {
		clear(values)
		for _, mt := range x.Metrics {
			values[mt.Name] = mt.Value
		}
		m, err := fastjson.Marshal(values)
		if err != nil {
			return fmt.Errorf("encode metrics of %s: %w", x.Service, err)
		}
		services[i], at[i], metrics[i], anomalous[i], versions[i] = x.Service, x.At, string(m), x.Anomalous, int32(x.ModelVersion)
		if x.Judged {
			scores[i], thresholds[i] = &x.Score, &x.Threshold
		}
	}
	t.saved.Queue(`
		INSERT INTO samples (service, at, metrics, score, threshold, anomalous, model_version)
		SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::jsonb[], $4::float8[], $5::float8[], $6::bool[], $7::int[])
		ON CONFLICT DO NOTHING`,
		services, at, metrics, scores, thresholds, anomalous, versions)
	return nil
}

// Range returns the service's samples with from <= at <= to, oldest first, at most limit.
func (s *Samples) Range(ctx context.Context, service string, from, to time.Time, limit int) ([]sample.Scored, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT service, at, metrics, score, threshold, anomalous, model_version FROM samples
		WHERE service = $1 AND at BETWEEN $2 AND $3 ORDER BY at LIMIT $4`, service, from, to, limit)
	if err != nil {
		return nil, fmt.Errorf("load samples of %s: %w", service, err)
	}
	defer rows.Close()
	var out []sample.Scored
	for rows.Next() {
		var x sample.Scored
		var score, threshold *float64
		var m []byte
		if err := rows.Scan(&x.Service, &x.At, &m, &score, &threshold, &x.Anomalous, &x.ModelVersion); err != nil {
			return nil, fmt.Errorf("load samples of %s: %w", service, err)
		}
		if score != nil {
			x.Judged, x.Score, x.Threshold = true, *score, *threshold
		}
		x.At = x.At.UTC()
		var values map[string]float64
		if err := fastjson.Unmarshal(m, &values); err != nil {
			return nil, fmt.Errorf("decode sample metrics: %w", err)
		}
		for name, v := range values {
			x.Metrics = append(x.Metrics, sample.Metric{Name: name, Value: v})
		}
		slices.SortFunc(x.Metrics, func(a, b sample.Metric) int { return strings.Compare(a.Name, b.Name) })
		out = append(out, x)
	}
	return out, rows.Err()
}
