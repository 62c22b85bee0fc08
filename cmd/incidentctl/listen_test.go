package main

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestListenPrintsAlerts posts an Alertmanager message to the local receiver and reads it back.
func TestListenPrintsAlerts(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- listen(ctx, "127.0.0.1:0", out) }()
	var addr string
	for i := 0; i < 100 && addr == ""; i++ {
		time.Sleep(20 * time.Millisecond)
		if s := out.String(); strings.Contains(s, "http://") {
			addr = strings.Fields(s[strings.Index(s, "http://"):])[0]
		}
	}
	if addr == "" {
		t.Fatal("listener did not start")
	}
	body := `{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"service":"api"},"annotations":{"severity":"high","summary":"Incident opened","driven_by":"latency_p95 68%"}}]}`
	resp, err := http.Post(addr, "application/json", strings.NewReader(body))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("post: %v %v", resp, err)
	}
	resp, _ = http.Post(addr, "application/json", strings.NewReader(`{"text":"slack"}`))
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a non-Alertmanager body got %d, want 400", resp.StatusCode)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !strings.Contains(s, "FIRING") || !strings.Contains(s, "api") || !strings.Contains(s, "high") || !strings.Contains(s, "latency_p95 68%") {
		t.Errorf("printed %q", s)
	}
}
