package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// listen is a local webhook receiver for trying notifications out: it prints each
// Alertmanager-format notification it is sent, one line per alert, until interrupted.
func listen(ctx context.Context, addr string, stdout io.Writer) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	fmt.Fprintf(stdout, "listening on http://%s/ for notifications; add it as a \"webhook\" receiver\n", ln.Addr())
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var msg struct {
			Version string `json:"version"`
			Status  string `json:"status"`
			Alerts  []struct {
				Status      string            `json:"status"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"alerts"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&msg); err != nil || msg.Version != "4" {
			http.Error(w, "expected an Alertmanager webhook message, version 4", http.StatusBadRequest)
			return
		}
		for _, a := range msg.Alerts {
			fmt.Fprintf(stdout, "%s  %-8s %-10s %-8s %s  %s\n", time.Now().UTC().Format(time.RFC3339), strings.ToUpper(a.Status),
				a.Labels["service"], a.Annotations["severity"], a.Annotations["summary"], a.Annotations["driven_by"])
		}
		w.WriteHeader(http.StatusOK)
	})}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
}
