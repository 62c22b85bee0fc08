// Package metrics exports the engine's own health to Prometheus, beside the Watermill router's
// per-stage series: samples decoded, scored and dead-lettered by service, anomaly scores,
// notification deliveries, and, read from PostgreSQL at each scrape, incidents open by
// severity, each service's model, and the outbox's backlog. It decides nothing.
package metrics

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

const namespace = "incident_engine"

// Engine holds the engine's counters. Its methods are safe for concurrent use.
type Engine struct {
	perService                 bool
	decoded, scored, anomalies *prometheus.CounterVec
	deadLettered               *prometheus.CounterVec
	scores                     *prometheus.HistogramVec
	deliveries                 *prometheus.CounterVec
}

// New registers the engine's metrics with reg, and a collector that reads the incident, model
// and outbox state from pool at each scrape.
//
// Series by service are opt-in (perService): with 50,000 services they would make millions of
// series; without them the same counts are kept for the whole engine.
func New(reg prometheus.Registerer, pool *pgxpool.Pool, outboxTopics []string, perService bool) (*Engine, error) {
	var by []string
	byWhat := ""
	if perService {
		by, byWhat = []string{"service"}, ", by service"
	}
	e := &Engine{
		perService: perService,
		decoded:    prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "samples_decoded_total", Help: "Samples that passed decode" + byWhat + "."}, by),
		scored:     prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "samples_scored_total", Help: "Samples judged by a trained model" + byWhat + "."}, by),
		anomalies:  prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "anomalies_total", Help: "Samples judged anomalous" + byWhat + "."}, by),
		// By stage only: a dead letter's service is whatever its sender wrote, often invalid
		// (a key that is not UTF-8 would make the label panic, and anyone could mint series).
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "messages_dead_lettered_total", Help: "Messages sent to the dead-letter topic, by stage."}, []string{"handler"}),
		scores:       prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "anomaly_score", Help: "Anomaly scores of judged samples" + byWhat + ".", Buckets: prometheus.LinearBuckets(0.3, 0.05, 14)}, by),
		deliveries:   prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "notification_deliveries_total", Help: "Notification outcomes, by receiver and outcome (delivered, failed)."}, []string{"receiver", "outcome"}),
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "build_info", Help: "The build running: its version and Go's.",
		ConstLabels: prometheus.Labels{"version": buildVersion(), "goversion": runtime.Version()}})
	info.Set(1)
	for _, c := range []prometheus.Collector{e.decoded, e.scored, e.anomalies, e.deadLettered, e.scores, e.deliveries, info, &state{pool: pool, outbox: outboxTopics, perService: perService}} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return e, nil
}

// buildVersion is the main module's version as Go recorded it ("(devel)" from a checkout).
func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "unknown"
}

// counter returns service's counter of vec, the engine-wide one unless series by service are
// on (no label values: nothing is built per sample).
func (e *Engine) counter(vec *prometheus.CounterVec, service string) prometheus.Counter {
	if e.perService {
		return vec.WithLabelValues(service)
	}
	return vec.WithLabelValues()
}

// Decoded counts a sample that passed decode.
func (e *Engine) Decoded(service string) { e.counter(e.decoded, service).Inc() }

// Scored counts a scored sample and observes its score when a model judged it.
func (e *Engine) Scored(service string, score float64, judged, anomalous bool) {
	if !judged {
		return
	}
	e.counter(e.scored, service).Inc()
	if e.perService {
		e.scores.WithLabelValues(service).Observe(score)
	} else {
		e.scores.WithLabelValues().Observe(score)
	}
	if anomalous {
		e.counter(e.anomalies, service).Inc()
	}
}

// Delivered counts a notification outcome.
func (e *Engine) Delivered(receiver string, ok bool) {
	outcome := "delivered"
	if !ok {
		outcome = "failed"
	}
	e.deliveries.WithLabelValues(receiver, outcome).Inc()
}

// CountDeadLetters wraps the dead-letter publisher so that every poisoned message is counted
// by service and stage.
func (e *Engine) CountDeadLetters(pub message.Publisher) message.Publisher {
	return deadLetterCounter{Publisher: pub, e: e}
}

type deadLetterCounter struct {
	message.Publisher
	e *Engine
}

func (d deadLetterCounter) Publish(topic string, msgs ...*message.Message) error {
	if err := d.Publisher.Publish(topic, msgs...); err != nil {
		return err
	}
	for _, m := range msgs {
		d.e.deadLettered.WithLabelValues(m.Metadata.Get(middleware.PoisonedHandlerKey)).Inc()
	}
	return nil
}

// state reads gauges from PostgreSQL at scrape time.
type state struct {
	pool       *pgxpool.Pool
	outbox     []string
	perService bool // each service's model version and training time too
}

var (
	openDesc    = prometheus.NewDesc(namespace+"_incidents_open", "Open incidents, by severity.", []string{"severity"}, nil)
	modelDesc   = prometheus.NewDesc(namespace+"_model_version", "Version of each service's latest model (0 while warming up).", []string{"service"}, nil)
	trainedDesc = prometheus.NewDesc(namespace+"_model_trained_timestamp_seconds", "Sample time of each service's latest training.", []string{"service"}, nil)
	lagDesc     = prometheus.NewDesc(namespace+"_outbox_pending_messages", "Messages waiting in each outbox topic.", []string{"topic"}, nil)
	ageDesc     = prometheus.NewDesc(namespace+"_outbox_oldest_age_seconds", "Age of the oldest message waiting in each outbox topic.", []string{"topic"}, nil)
	scrapeDesc  = prometheus.NewDesc(namespace+"_state_scrape_errors", "1 when the database state could not be read at this scrape.", nil, nil)
)

func (s *state) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{openDesc, modelDesc, trainedDesc, lagDesc, ageDesc, scrapeDesc} {
		ch <- d
	}
}

func (s *state) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	failed := 0.0
	if err := s.collect(ctx, ch); err != nil {
		failed = 1
	}
	ch <- prometheus.MustNewConstMetric(scrapeDesc, prometheus.GaugeValue, failed)
}

func (s *state) collect(ctx context.Context, ch chan<- prometheus.Metric) error {
	open := map[string]float64{"low": 0, "medium": 0, "high": 0, "critical": 0}
	rows, err := s.pool.Query(ctx, `SELECT severity, count(*) FROM incidents WHERE status = 'open' GROUP BY severity`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var sev string
		var n float64
		if err := rows.Scan(&sev, &n); err != nil {
			rows.Close()
			return err
		}
		open[sev] = n
	}
	rows.Close()
	for sev, n := range open {
		ch <- prometheus.MustNewConstMetric(openDesc, prometheus.GaugeValue, n, sev)
	}
	if !s.perService {
		return s.collectOutbox(ctx, ch)
	}
	rows, err = s.pool.Query(ctx, `
		SELECT w.service, coalesce(m.version, 0), m.trained_at FROM service_watch w
		LEFT JOIN LATERAL (SELECT version, trained_at FROM models WHERE service = w.service ORDER BY version DESC LIMIT 1) m ON true`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var svc string
		var version float64
		var trained *time.Time
		if err := rows.Scan(&svc, &version, &trained); err != nil {
			rows.Close()
			return err
		}
		ch <- prometheus.MustNewConstMetric(modelDesc, prometheus.GaugeValue, version, svc)
		if trained != nil {
			ch <- prometheus.MustNewConstMetric(trainedDesc, prometheus.GaugeValue, float64(trained.Unix()), svc)
		}
	}
	rows.Close()
	return s.collectOutbox(ctx, ch)
}

// collectOutbox reports the outbox's backlog.
func (s *state) collectOutbox(ctx context.Context, ch chan<- prometheus.Metric) error {
	for _, topic := range s.outbox {
		var n float64
		var oldest *time.Time
		q := fmt.Sprintf(`SELECT count(*), min(created_at) FROM "watermill_%s"`, topic)
		if err := s.pool.QueryRow(ctx, q).Scan(&n, &oldest); err != nil {
			return err
		}
		age := 0.0
		if oldest != nil {
			age = time.Since(*oldest).Seconds()
		}
		ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, n, topic)
		ch <- prometheus.MustNewConstMetric(ageDesc, prometheus.GaugeValue, age, topic)
	}
	return nil
}
