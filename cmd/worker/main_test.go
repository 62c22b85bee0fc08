package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/incident-engine/engine/domain/detect"
	"github.com/incident-engine/engine/domain/incident"
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

	help, err := helpOutput(t)
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

// TestConfigurationTable checks that the README's configuration table lists exactly the
// worker's flags, each with the environment variable and the default --help prints.
func TestConfigurationTable(t *testing.T) {
	help, err := helpOutput(t)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	flagLine := regexp.MustCompile(`^  -(\S+)`)
	envDefault := regexp.MustCompile(`^(.*) \[([A-Z_]+)\](?: \(default "?(.*?)"?\))?$`)
	fromHelp := map[string]string{}
	lines := strings.Split(string(help), "\n")
	for i := 0; i+1 < len(lines); i++ {
		m := flagLine.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		ed := envDefault.FindStringSubmatch(strings.TrimSpace(lines[i+1]))
		if ed == nil {
			t.Errorf("--%s: its usage names no environment variable: %q", m[1], lines[i+1])
			continue
		}
		fromHelp[m[1]] = ed[2] + " " + ed[3] + " | " + ed[1]
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `--([a-z-]+)` \\| `([A-Z_]+)` \\| (?:`([^`]*)`|–) \\| (.*) \\|$")
	fromREADME := map[string]string{}
	for _, m := range row.FindAllStringSubmatch(string(readme), -1) {
		fromREADME[m[1]] = m[2] + " " + m[3] + " | " + m[4]
	}
	if len(fromHelp) < 30 {
		t.Fatalf("found %d flags in --help; the parse of its output is broken", len(fromHelp))
	}
	for name, want := range fromHelp {
		if got, ok := fromREADME[name]; !ok {
			t.Errorf("--%s (%s) is not in the README's configuration table", name, want)
		} else if got != want {
			t.Errorf("--%s: the README says %q, --help %q", name, got, want)
		}
	}
	for name := range fromREADME {
		if _, ok := fromHelp[name]; !ok {
			t.Errorf("the README's configuration table lists --%s, which the worker does not have", name)
		}
	}
}

// TestSeverityPolicyFile checks --severity-policy: a file of rules replaces the built-in
// policy, and a misspelt field or an unknown severity is an error naming it.
func TestSeverityPolicyFile(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, fmt.Sprintf("policy-%d.json", len(body)))
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write(`[{"name":"sustained-5m","severity":"high","min_active":"5m","min_occurrences":3}]`)
	cfg, _, err := parse([]string{"--severity-policy", good})
	if err != nil {
		t.Fatal(err)
	}
	want := incident.Policy{Rules: []incident.Rule{{Name: "sustained-5m", Severity: incident.SeverityHigh, MinActive: 5 * time.Minute, MinOccurrences: 3}}}
	if !reflect.DeepEqual(cfg.Policy, want) {
		t.Errorf("policy %+v, want %+v", cfg.Policy, want)
	}
	for body, mention := range map[string]string{
		`[{"name":"x","severity":"high","min_activ":"5m"}]`: `"min_activ"`,
		`[{"name":"x","severity":"urgent"}]`:                "urgent",
	} {
		if _, _, err := parse([]string{"--severity-policy", write(body)}); err == nil || !strings.Contains(err.Error(), mention) {
			t.Errorf("policy %s: %v, want an error naming %s", body, err, mention)
		}
	}
}

// helpOutput returns what parse prints for --help, and its error.
func helpOutput(t *testing.T) ([]byte, error) {
	t.Helper()
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
	return help, err
}

// TestZeroMeansZero checks that a zero given for a setting where zero means something is that,
// not the default (REOPEN_WINDOW=0 never reopens, MAX_RETRIES=0 retries none,
// RETRY_INTERVAL=0 retries at once...), through the configuration's defaults and validation;
// that unset still takes the default; and that a zero where zero means nothing is refused.
func TestZeroMeansZero(t *testing.T) {
	required := []string{"--kafka-brokers", "k:9092", "--database-url", "postgres://x"}
	zeroes := []string{"--reopen-window", "0", "--max-retries", "0", "--retry-interval", "0s", "--open-span", "0",
		"--recovery-window", "0", "--recovery-samples", "0", "--max-ahead", "0", "--dev-kafka-port", "0"}
	cfg, _, err := parse(append(zeroes, required...))
	if err != nil {
		t.Fatal(err)
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	c := cfg.Correlation
	if c.ReopenWindow >= 0 || cfg.Router.MaxRetries >= 0 || cfg.Router.RetryInterval >= 0 || c.OpenSpan >= 0 ||
		c.Recovery >= 0 || c.RecoverySamples >= 0 || cfg.MaxAhead >= 0 || !cfg.EmbeddedKafkaAnyPort || cfg.EmbeddedKafkaPort != 0 {
		t.Errorf("after the defaults: reopen %s, retries %d, retry interval %s, open span %s, recovery %s and %d samples, max ahead %s, kafka port %d (any %v); want each kept as its zero",
			c.ReopenWindow, cfg.Router.MaxRetries, cfg.Router.RetryInterval, c.OpenSpan, c.Recovery, c.RecoverySamples, cfg.MaxAhead, cfg.EmbeddedKafkaPort, cfg.EmbeddedKafkaAnyPort)
	}
	// The environment is read the same way.
	t.Setenv("RETRY_INTERVAL", "0s")
	if cfg, _, err = parse(required); err != nil || cfg.Router.RetryInterval >= 0 {
		t.Errorf("RETRY_INTERVAL=0s: %v, %v; want retry at once", cfg.Router.RetryInterval, err)
	}
	t.Setenv("RETRY_INTERVAL", "")

	cfg, _, _ = parse(nil)
	cfg.SetDefaults()
	if cfg.Correlation.ReopenWindow != 30*time.Minute || cfg.Router.MaxRetries != 3 || cfg.Router.RetryInterval != 100*time.Millisecond {
		t.Errorf("unset: reopen window %s, max retries %d, retry interval %s; want the defaults 30m, 3 and 100ms", cfg.Correlation.ReopenWindow, cfg.Router.MaxRetries, cfg.Router.RetryInterval)
	}

	// Where zero means nothing it is refused, naming the setting, not taken as the default.
	_, _, err = parse(append([]string{"--warm-up", "0", "--tick-interval", "0s", "--false-alarms-per-day", "0"}, required...))
	for _, want := range []string{"--warm-up (WARM_UP) is 0", "default, 256", "--tick-interval (TICK_INTERVAL) is 0", "--false-alarms-per-day (FALSE_ALARMS_PER_DAY) is 0"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("zero warm-up, tick interval and budget: %v; want it to say %q", err, want)
		}
	}
}
