package main

import (
	"errors"
	"flag"
	"io"
	"maps"
	"os"
	"strings"
	"testing"

	"github.com/incident-engine/engine/domain/detect"
)

// TestParseAPITokens checks that the API tokens come from the environment or the flags (the
// flags win) and that --help never prints them.
func TestParseAPITokens(t *testing.T) {
	const envToken, envRead, flagToken = "env-token-0123456789", "env-read-token-0123456789", "flag-token-0123456789"
	t.Setenv("API_TOKEN", envToken)
	t.Setenv("API_READ_TOKEN", envRead)
	cfg, _, err := parse(nil)
	if err != nil || cfg.API.Token != envToken || cfg.API.ReadToken != envRead {
		t.Errorf("from the environment: %v, %v; want both tokens", cfg.API, err)
	}
	cfg, _, err = parse([]string{"--api-token", flagToken})
	if err != nil || cfg.API.Token != flagToken || cfg.API.ReadToken != envRead {
		t.Errorf("with --api-token: %v, %v; want the flag's token", cfg.API, err)
	}

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := os.Stderr
	os.Stderr = w
	_, _, err = parse([]string{"--help"})
	os.Stderr = stderr
	w.Close()
	help, _ := io.ReadAll(r)
	if !errors.Is(err, flag.ErrHelp) || !strings.Contains(string(help), "API_TOKEN") {
		t.Fatalf("--help: %v, output lacks API_TOKEN:\n%s", err, help)
	}
	if strings.Contains(string(help), envToken) || strings.Contains(string(help), envRead) {
		t.Error("--help prints a token from the environment")
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, in, want, why string }{
		{"password", "postgres://app:s3cret@db:5432/engine", "postgres://app:xxxxx@db:5432/engine", "the password is a secret"},
		{"no password", "postgres://postgres@127.0.0.1:55432/postgres?sslmode=disable", "postgres://postgres@127.0.0.1:55432/postgres?sslmode=disable", "the private cluster's URL is shown whole, for psql"},
		{"key=value", "host=db user=app password=s3cret", "(configured)", "not a URL: it may hold a password anywhere"},
	}
	for _, tc := range cases {
		if got := redact(tc.in); got != tc.want {
			t.Errorf("%s: redact = %q, want %q (%s)", tc.name, got, tc.want, tc.why)
		}
	}
}

// TestParseMetricKinds checks --metric-kinds: metric and service/metric declarations reach
// the detector's configuration, and a bad one is an error naming it.
func TestParseMetricKinds(t *testing.T) {
	cfg, _, err := parse([]string{"--metric-kinds", "error_budget_remaining=higher_is_better, api/queue_depth=count"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]detect.Kind{"error_budget_remaining": detect.KindHigherIsBetter, "api/queue_depth": detect.KindCount}
	if !maps.Equal(cfg.Detect.Kinds, want) {
		t.Errorf("kinds %v, want %v", cfg.Detect.Kinds, want)
	}
	for _, bad := range []string{"queue_depth", "queue_depth=sideways", "=count"} {
		if _, _, err := parse([]string{"--metric-kinds", bad}); err == nil || !strings.Contains(err.Error(), "metric-kinds") {
			t.Errorf("--metric-kinds %q: %v, want an error", bad, err)
		}
	}
}
