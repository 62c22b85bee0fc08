// Package dashboard serves the operator's web pages: a live list of incidents, an incident's
// timeline with a chart of its service's metrics and anomaly score, and the state of every
// service. The pages are static files embedded in the binary that read the engine's JSON API
// in the browser; this package also answers the two API calls only the dashboard needs
// (/api/v1/services and a service's samples). It holds no business logic and builds nothing
// at run time: no npm, no template engine.
package dashboard

import (
	"context"
	"embed"
	"encoding/json"
	"io/fs"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/incident-engine/engine/domain/sample"
	"github.com/incident-engine/engine/infra/postgres"
)

//go:embed static
var static embed.FS

// Reader is what the pages read besides the incident API.
type Reader interface {
	// Services returns at most limit services in name order, those after the named one.
	Services(ctx context.Context, after string, limit int) ([]postgres.ServiceState, error)
	Samples(ctx context.Context, service string, from, to time.Time, limit int) ([]sample.Scored, error)
}

// The pages of GET /api/v1/services: so many services by default, at most so many.
const (
	DefaultServicesPage = 200
	MaxServicesPage     = 1000
)

// Register adds the dashboard's pages and API calls to mux.
func Register(mux *http.ServeMux, r Reader, logger *slog.Logger) {
	files, _ := fs.Sub(static, "static")
	fileServer := http.FileServerFS(files)
	mux.Handle("GET /", fileServer)
	mux.HandleFunc("GET /api/v1/services", func(w http.ResponseWriter, req *http.Request) {
		q := req.URL.Query()
		for name := range q {
			if name != "limit" && name != "cursor" {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unknown parameter " + strconv.Quote(name) + "; services take limit and cursor"})
				return
			}
		}
		limit := DefaultServicesPage
		if l := q.Get("limit"); l != "" {
			n, err := strconv.Atoi(l)
			if err != nil || n < 1 || n > MaxServicesPage {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "limit must be 1 to " + strconv.Itoa(MaxServicesPage)})
				return
			}
			limit = n
		}
		// One more than the page says whether there is a next one.
		services, err := r.Services(req.Context(), q.Get("cursor"), limit+1)
		if err != nil {
			logger.Error("list services", "err", err)
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "services unavailable, see the worker log"})
			return
		}
		page := map[string]any{}
		if len(services) > limit {
			services = services[:limit]
			page["next_cursor"] = services[limit-1].Service
		}
		if services == nil {
			services = []postgres.ServiceState{}
		}
		page["services"] = services
		writeJSON(w, http.StatusOK, page)
	})
	mux.HandleFunc("GET /api/v1/services/{service}/samples", func(w http.ResponseWriter, req *http.Request) {
		q := req.URL.Query()
		from, err1 := time.Parse(time.RFC3339, q.Get("from"))
		to, err2 := time.Parse(time.RFC3339, q.Get("to"))
		if err1 != nil || err2 != nil || !from.Before(to) {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "from and to are required, RFC 3339, from before to"})
			return
		}
		limit := 2000
		if l := q.Get("limit"); l != "" {
			n, err := strconv.Atoi(l)
			if err != nil || n < 1 || n > 10000 {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "limit must be 1 to 10000"})
				return
			}
			limit = n
		}
		got, err := r.Samples(req.Context(), req.PathValue("service"), from, to, limit)
		if err != nil {
			logger.Error("load samples", "err", err)
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "samples unavailable, see the worker log"})
			return
		}
		type point struct {
			At        time.Time          `json:"at"`
			Metrics   map[string]float64 `json:"metrics"`
			Score     *float64           `json:"score,omitempty"`
			Threshold *float64           `json:"threshold,omitempty"`
			Anomalous bool               `json:"anomalous"`
		}
		out := make([]point, 0, len(got))
		for _, s := range got {
			p := point{At: s.At, Metrics: map[string]float64{}, Anomalous: s.Anomalous}
			for _, m := range s.Metrics {
				p.Metrics[m.Name] = m.Value
			}
			if s.Judged {
				score, thr := s.Score, s.Threshold
				p.Score, p.Threshold = &score, &thr
			}
			out = append(out, p)
		}
		writeJSON(w, http.StatusOK, map[string]any{"service": req.PathValue("service"), "samples": out})
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
