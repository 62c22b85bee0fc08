// Package httpserver is the worker's HTTP server: Prometheus metrics on /metrics, liveness on
// /healthz, readiness on /readyz (ready only when every dependency answers), and whatever is
// mounted on it (the dashboard, the operator API). It holds no business logic.
package httpserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check reports whether one dependency is reachable.
type Check func(ctx context.Context) error

// Server is the worker's HTTP server. Build it with New and run it with Run.
type Server struct {
	ln     net.Listener
	srv    *http.Server
	logger *slog.Logger
}

// Mount adds routes to the server's mux (the dashboard, the operator API).
type Mount func(mux *http.ServeMux)

// New listens on addr (":0" picks a free port) and routes the health endpoints, /metrics from
// gatherer unless it is nil (a mount may serve it, behind a guard), and whatever mounts add. checks are run, each with a 2-second limit, on every /readyz request.
func New(addr string, gatherer prometheus.Gatherer, checks map[string]Check, logger *slog.Logger, mounts ...Mount) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	if gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		var failed []string
		for name, check := range checks {
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			if err := check(ctx); err != nil {
				// The error names hosts, ports and users: it goes to the log, not to whoever
				// asks.
				logger.Warn("not ready", "dependency", name, "err", err)
				failed = append(failed, name)
			}
			cancel()
		}
		if len(failed) > 0 {
			slices.Sort(failed)
			http.Error(w, "not ready: "+strings.Join(failed, ", ")+" not answering", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	for _, m := range mounts {
		m(mux)
	}
	return &Server{ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, logger: logger}, nil
}

// Addr returns the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Run serves until ctx ends, then shuts down, giving requests in flight 5 seconds.
func (s *Server) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(shutdown); err != nil {
		return fmt.Errorf("http server shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http server: %w", err)
	}
	return nil
}
