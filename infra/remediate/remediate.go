// Package remediate calls remediation hooks: runbook endpoints that try to fix a service (a
// restart, a failover, a scale-out) when one of its incidents reaches a severity. It routes an
// incident event to the hooks configured for its service and severity, and posts the incident
// to the hook. Whether a hook already ran, the rate limit and the check that it helped are the
// remediate stage's business (handlers/remediate.go).
package remediate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/incident-engine/engine/domain/incident"
	"github.com/incident-engine/engine/infra/notify"
)

// Hook is one remediation endpoint with its route.
type Hook struct {
	// Name identifies the hook in the timeline; unique.
	Name string `json:"name"`
	// URL receives a POST with {"hook": name, "dry_run": false, "incident": <event>}.
	URL string `json:"url"`
	// Services limits the hook to these services; empty means all.
	Services []string `json:"services,omitempty"`
	// MinSeverity is the severity an incident must reach for the hook to run (default high).
	MinSeverity string `json:"min_severity,omitempty"`
	// DryRun records what would run without calling the hook.
	DryRun bool `json:"dry_run,omitempty"`
	// HTTP is how to authenticate to the hook and what headers to send.
	HTTP notify.HTTPConfig `json:"http_config,omitempty"`
}

// Config lists the hooks and their limits.
type Config struct {
	Hooks []Hook `json:"hooks"`
	// MaxRuns of one hook for one service within Per (default 1 per hour); further runs are
	// skipped and the timeline says so.
	MaxRuns int             `json:"max_runs,omitempty"`
	Per     notify.Duration `json:"per,omitempty"`
	// VerifyAfter is how long after the triggering change (in sample time) the service must
	// have stopped failing; an anomaly later than that escalates the incident (default 15m).
	VerifyAfter notify.Duration `json:"verify_after,omitempty"`
	// Timeout bounds one call (default 10s).
	Timeout notify.Duration `json:"timeout,omitempty"`
}

// LoadConfig reads a JSON configuration file.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read remediation config: %w", err)
	}
	// Unknown fields are refused: a misspelt "dry_run" must not run the real hook.
	var c Config
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("parse remediation config %s: %w", path, err)
	}
	if dec.More() {
		return Config{}, fmt.Errorf("parse remediation config %s: trailing data after the JSON object", path)
	}
	// None of the file's settings has a zero of its own: a zero given is refused rather than
	// taken for the default, which leaving the field out gives.
	zeroes, err := notify.GivenZeroes(b)
	if err != nil {
		return Config{}, fmt.Errorf("parse remediation config %s: %w", path, err)
	}
	var errs []error
	for _, field := range zeroes {
		errs = append(errs, fmt.Errorf("remediation config %s: %s is 0, which it cannot be; leave it out for the default", path, field))
	}
	return c, errors.Join(errs...)
}

// SetDefaults fills every zero field with its default.
func (c *Config) SetDefaults() {
	if c.MaxRuns == 0 {
		c.MaxRuns = 1
	}
	if c.Per == 0 {
		c.Per = notify.Duration(time.Hour)
	}
	if c.VerifyAfter == 0 {
		c.VerifyAfter = notify.Duration(15 * time.Minute)
	}
	if c.Timeout == 0 {
		c.Timeout = notify.Duration(10 * time.Second)
	}
	for i := range c.Hooks {
		if c.Hooks[i].MinSeverity == "" {
			c.Hooks[i].MinSeverity = "high"
		}
	}
}

// Validate reports every problem of the configuration.
func (c Config) Validate() error {
	var errs []error
	seen := map[string]bool{}
	for i, h := range c.Hooks {
		if h.Name == "" || seen[h.Name] {
			errs = append(errs, fmt.Errorf("hook %d: needs a unique name", i))
		}
		seen[h.Name] = true
		if h.URL == "" {
			errs = append(errs, fmt.Errorf("hook %s: needs a url", h.Name))
		}
		if _, err := incident.ParseSeverity(h.MinSeverity); err != nil {
			errs = append(errs, fmt.Errorf("hook %s: min_severity: %w", h.Name, err))
		}
		if err := h.HTTP.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("hook %s: %w", h.Name, err))
		}
	}
	if c.MaxRuns < 1 || c.Per <= 0 || c.VerifyAfter <= 0 || c.Timeout <= 0 {
		errs = append(errs, errors.New("max_runs, per, verify_after and timeout must be positive"))
	}
	return errors.Join(errs...)
}

// Runner routes and calls hooks. Build it with New.
type Runner struct {
	cfg     Config
	clients []*http.Client // per hook
}

// New returns a runner for cfg, with its defaults filled in, or the validation error.
func New(cfg Config) (*Runner, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("remediation config: %w", err)
	}
	clients := make([]*http.Client, len(cfg.Hooks))
	for i, h := range cfg.Hooks {
		c, err := h.HTTP.Client(time.Duration(cfg.Timeout))
		if err != nil {
			return nil, fmt.Errorf("remediation config: hook %s: %w", h.Name, err)
		}
		clients[i] = c
	}
	return &Runner{cfg: cfg, clients: clients}, nil
}

// Targets names the hooks for ev: a change that opens, reopens or escalates an incident of a
// routed service to at least the hook's severity.
func (r *Runner) Targets(ev incident.Event) []string {
	switch ev.Event {
	case incident.KindOpened, incident.KindReopened, incident.KindEscalated:
	default:
		return nil
	}
	sev, err := incident.ParseSeverity(ev.Severity)
	if err != nil {
		return nil
	}
	var out []string
	for _, h := range r.cfg.Hooks {
		min, _ := incident.ParseSeverity(h.MinSeverity)
		if sev >= min && (len(h.Services) == 0 || slices.Contains(h.Services, ev.Service)) {
			out = append(out, h.Name)
		}
	}
	return out
}

// DryRun reports whether the hook only records what it would do.
func (r *Runner) DryRun(hook string) bool {
	i := slices.IndexFunc(r.cfg.Hooks, func(h Hook) bool { return h.Name == hook })
	return i >= 0 && r.cfg.Hooks[i].DryRun
}

// Limit returns how many runs of one hook for one service are allowed within which period.
func (r *Runner) Limit() (int, time.Duration) { return r.cfg.MaxRuns, time.Duration(r.cfg.Per) }

// VerifyAfter is how long, in sample time, a remediation is given to help.
func (r *Runner) VerifyAfter() time.Duration { return time.Duration(r.cfg.VerifyAfter) }

// Call posts the incident to the hook and returns its HTTP status line on success.
func (r *Runner) Call(ctx context.Context, hook string, ev incident.Event) error {
	i := slices.IndexFunc(r.cfg.Hooks, func(h Hook) bool { return h.Name == hook })
	if i < 0 {
		return fmt.Errorf("no hook named %q", hook)
	}
	body, err := json.Marshal(struct {
		Hook     string         `json:"hook"`
		DryRun   bool           `json:"dry_run"`
		Incident incident.Event `json:"incident"`
	}{hook, false, ev})
	if err != nil {
		return fmt.Errorf("encode hook body: %w", err)
	}
	return notify.PostJSON(ctx, r.clients[i], r.cfg.Hooks[i].URL, body, r.cfg.Hooks[i].HTTP)
}
