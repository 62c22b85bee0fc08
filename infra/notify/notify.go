// Package notify delivers incident events to the places people look: Slack incoming
// webhooks, PagerDuty's Events API v2, and generic webhooks in the Prometheus Alertmanager
// format (version "4"), so existing Alertmanager receivers work unchanged.
//
// A Notifier routes each event to the receivers that want it (by service and minimum
// severity), builds each receiver's payload, and posts it with retries and exponential
// backoff. It keeps no state: which deliveries already happened is the notify stage's
// business (handlers/notify.go), recorded in PostgreSQL.
package notify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/incident-engine/engine/domain/incident"
)

// Kinds of receiver.
const (
	KindSlack     = "slack"
	KindPagerDuty = "pagerduty"
	KindWebhook   = "webhook"
)

// DefaultPagerDutyURL is PagerDuty's Events API v2 endpoint.
const DefaultPagerDutyURL = "https://events.pagerduty.com/v2/enqueue"

// Receiver is one destination with its route.
type Receiver struct {
	// Name identifies the receiver in the timeline and in deliveries; unique.
	Name string `json:"name"`
	// Kind is slack, pagerduty or webhook (Alertmanager format).
	Kind string `json:"kind"`
	// URL is the webhook URL (PagerDuty: the Events API endpoint, default DefaultPagerDutyURL).
	URL string `json:"url"`
	// RoutingKey is PagerDuty's integration key.
	RoutingKey string `json:"routing_key,omitempty"`
	// Services limits the receiver to these services; empty means all.
	Services []string `json:"services,omitempty"`
	// MinSeverity is the lowest severity the receiver hears about (default low).
	MinSeverity string `json:"min_severity,omitempty"`
	// HTTP is how to authenticate to the receiver and what headers to send.
	HTTP HTTPConfig `json:"http_config,omitempty"`
}

// HTTPConfig authenticates requests to a receiver or a hook, as Alertmanager's http_config
// does: a bearer token or basic authentication, headers of its own, and how to speak TLS to
// it. Its secrets never appear in errors or logs.
type HTTPConfig struct {
	BearerToken string            `json:"bearer_token,omitempty"`
	BasicAuth   *BasicAuth        `json:"basic_auth,omitempty"`
	Headers     map[string]string `json:"headers,omitempty"`
	TLS         *TLSConfig        `json:"tls_config,omitempty"`
}

// TLSConfig is how to reach a receiver or hook over https, as Alertmanager's tls_config: the
// certificate authorities to trust instead of the system's (PEM), a client certificate and
// key for mutual TLS (PEM), the name to verify the server's certificate against, and, for a
// test bench only, no verification at all. Files are read when the configuration is loaded.
type TLSConfig struct {
	CAFile             string `json:"ca_file,omitempty"`
	CertFile           string `json:"cert_file,omitempty"`
	KeyFile            string `json:"key_file,omitempty"`
	ServerName         string `json:"server_name,omitempty"`
	InsecureSkipVerify bool   `json:"insecure_skip_verify,omitempty"`
}

// Client returns the HTTP client for a receiver or hook of this configuration: with its TLS
// settings when it has some, and each attempt bounded by timeout. It reads the TLS files and
// returns an error naming the file that cannot be used.
func (h HTTPConfig) Client(timeout time.Duration) (*http.Client, error) {
	if h.TLS == nil {
		return &http.Client{Timeout: timeout}, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: h.TLS.ServerName, InsecureSkipVerify: h.TLS.InsecureSkipVerify}
	if h.TLS.CAFile != "" {
		pem, err := os.ReadFile(h.TLS.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls_config: ca_file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls_config: ca_file %s holds no PEM certificate", h.TLS.CAFile)
		}
	}
	if h.TLS.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(h.TLS.CertFile, h.TLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls_config: cert_file %s and key_file %s: %w", h.TLS.CertFile, h.TLS.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = tc
	return &http.Client{Timeout: timeout, Transport: transport}, nil
}

// BasicAuth is HTTP basic authentication.
type BasicAuth struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// Validate reports a configuration that cannot be sent.
func (h HTTPConfig) Validate() error {
	var errs []error
	if h.BearerToken != "" && h.BasicAuth != nil {
		errs = append(errs, errors.New("http_config: a bearer token or basic authentication, not both"))
	}
	for name := range h.Headers {
		canonical := http.CanonicalHeaderKey(name)
		if name == "" || strings.ContainsAny(name, " :\r\n") {
			errs = append(errs, fmt.Errorf("http_config: header name %q is not a header name", name))
		}
		if canonical == "Authorization" || canonical == "Content-Type" || canonical == "User-Agent" {
			errs = append(errs, fmt.Errorf("http_config: header %s is set by the engine (use bearer_token or basic_auth)", canonical))
		}
	}
	for name, v := range h.Headers {
		if strings.ContainsAny(v, "\r\n") {
			errs = append(errs, fmt.Errorf("http_config: header %s: a value cannot hold a line break", name))
		}
	}
	if h.TLS != nil && (h.TLS.CertFile == "") != (h.TLS.KeyFile == "") {
		errs = append(errs, errors.New("http_config: tls_config: a cert_file and its key_file, or neither"))
	}
	return errors.Join(errs...)
}

// apply sets the authentication and headers on req.
func (h HTTPConfig) apply(req *http.Request) {
	for name, v := range h.Headers {
		req.Header.Set(name, v)
	}
	switch {
	case h.BearerToken != "":
		req.Header.Set("Authorization", "Bearer "+h.BearerToken)
	case h.BasicAuth != nil:
		req.SetBasicAuth(h.BasicAuth.Username, h.BasicAuth.Password)
	}
}

// Config lists the receivers and how deliveries are attempted.
type Config struct {
	Receivers []Receiver `json:"receivers"`
	// DashboardURL is the base URL of the dashboard, for links (optional).
	DashboardURL string `json:"dashboard_url,omitempty"`
	// MaxAttempts per delivery (default 5).
	MaxAttempts int `json:"max_attempts,omitempty"`
	// Backoff is the wait before the second attempt; it doubles each time (default 500ms).
	// Zero takes the default; a negative backoff retries at once ("0s" in a file).
	Backoff Duration `json:"backoff,omitempty"`
	// Timeout bounds one HTTP attempt (default 10s).
	Timeout Duration `json:"timeout,omitempty"`
	// Budget bounds one delivery to one receiver, its attempts and the waits between them
	// included (default 20s); a receiver that has not taken the notification by then is
	// recorded as failed. Receivers are notified side by side, each in its own budget, so keep
	// it under the router's handler timeout (30s): a receiver that hangs or fails for good
	// never holds the others or the partition.
	Budget Duration `json:"budget,omitempty"`
}

// Duration is a time.Duration written as "500ms" in JSON.
type Duration time.Duration

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"500ms\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes a duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// LoadConfig reads a JSON configuration file.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read notification config: %w", err)
	}
	var c Config
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("parse notification config %s: %w", path, err)
	}
	zeroes, err := GivenZeroes(b)
	if err != nil {
		return Config{}, fmt.Errorf("parse notification config %s: %w", path, err)
	}
	var errs []error
	for _, field := range zeroes {
		if field == "backoff" {
			c.Backoff = -1 // retry at once
			continue
		}
		errs = append(errs, fmt.Errorf("notification config %s: %s is 0, which it cannot be; leave it out for the default", path, field))
	}
	return c, errors.Join(errs...)
}

// GivenZeroes lists the fields of a JSON object given as zero (0 or a zero duration such as
// "0s"), so that a configuration file can tell a zero given from a field left out, which
// takes the default.
func GivenZeroes(object []byte) ([]string, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(object, &fields); err != nil {
		return nil, err
	}
	var out []string
	for name, raw := range fields {
		var n float64
		var s string
		switch {
		case json.Unmarshal(raw, &n) == nil && n == 0:
		case json.Unmarshal(raw, &s) == nil && isZeroDuration(s):
		default:
			continue
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return out, nil
}

func isZeroDuration(s string) bool {
	d, err := time.ParseDuration(s)
	return err == nil && d == 0
}

// SetDefaults fills every zero field with its default.
func (c *Config) SetDefaults() {
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 5
	}
	if c.Backoff == 0 {
		c.Backoff = Duration(500 * time.Millisecond)
	}
	if c.Timeout == 0 {
		c.Timeout = Duration(10 * time.Second)
	}
	if c.Budget == 0 {
		c.Budget = Duration(20 * time.Second)
	}
	for i := range c.Receivers {
		r := &c.Receivers[i]
		if r.MinSeverity == "" {
			r.MinSeverity = "low"
		}
		if r.Kind == KindPagerDuty && r.URL == "" {
			r.URL = DefaultPagerDutyURL
		}
	}
}

// Validate reports every problem of the configuration.
func (c Config) Validate() error {
	var errs []error
	seen := map[string]bool{}
	for i, r := range c.Receivers {
		if r.Name == "" || seen[r.Name] {
			errs = append(errs, fmt.Errorf("receiver %d: needs a unique name", i))
		}
		seen[r.Name] = true
		switch r.Kind {
		case KindSlack, KindWebhook:
		case KindPagerDuty:
			if r.RoutingKey == "" {
				errs = append(errs, fmt.Errorf("receiver %s: pagerduty needs a routing_key", r.Name))
			}
		default:
			errs = append(errs, fmt.Errorf("receiver %s: kind %q is not slack, pagerduty or webhook", r.Name, r.Kind))
		}
		if r.URL == "" {
			errs = append(errs, fmt.Errorf("receiver %s: needs a url", r.Name))
		}
		if _, err := incident.ParseSeverity(r.MinSeverity); err != nil {
			errs = append(errs, fmt.Errorf("receiver %s: min_severity: %w", r.Name, err))
		}
		if err := r.HTTP.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("receiver %s: %w", r.Name, err))
		}
	}
	if c.MaxAttempts < 1 || c.Timeout <= 0 || c.Budget <= 0 {
		errs = append(errs, errors.New("max_attempts must be at least 1, timeout and budget positive"))
	}
	return errors.Join(errs...)
}

// Notifier routes and delivers incident events. Build it with New.
type Notifier struct {
	cfg     Config
	clients map[string]*http.Client // per receiver
	sleep   func(context.Context, time.Duration) error
}

// New returns a notifier for cfg, with its defaults filled in, or the validation error.
func New(cfg Config) (*Notifier, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("notification config: %w", err)
	}
	clients := make(map[string]*http.Client, len(cfg.Receivers))
	for _, r := range cfg.Receivers {
		c, err := r.HTTP.Client(time.Duration(cfg.Timeout))
		if err != nil {
			return nil, fmt.Errorf("notification config: receiver %s: %w", r.Name, err)
		}
		clients[r.Name] = c
	}
	return &Notifier{cfg: cfg, clients: clients, sleep: sleepCtx}, nil
}

// notifiable are the changes people are told about; anomalies inside an incident are not.
var notifiable = []incident.Kind{
	incident.KindOpened, incident.KindEscalated, incident.KindReopened, incident.KindResolved,
	incident.KindDataStopped, incident.KindAcknowledged,
}

// Targets returns the names of the receivers that want ev: its kind is one people are told
// about, its service is routed to them and its severity reaches their minimum. Escalations
// of an acknowledged incident notify no one. A resolution
// or acknowledgement goes to every receiver the incident could have reached, whatever its
// severity, so nothing stays open elsewhere.
func (n *Notifier) Targets(ev incident.Event) []string {
	if !slices.Contains(notifiable, ev.Event) {
		return nil
	}
	if ev.Event == incident.KindEscalated && ev.AckedBy != "" {
		// Someone has it: the severity still rises in the engine, but nobody is paged again.
		return nil
	}
	sev, err := incident.ParseSeverity(ev.Severity)
	if err != nil {
		return nil
	}
	var out []string
	for _, r := range n.cfg.Receivers {
		if len(r.Services) > 0 && !slices.Contains(r.Services, ev.Service) {
			continue
		}
		min, _ := incident.ParseSeverity(r.MinSeverity)
		if sev < min {
			continue
		}
		out = append(out, r.Name)
	}
	return out
}

// ErrRejected wraps a receiver's 4xx answer other than 429: retrying will not help.
var ErrRejected = errors.New("receiver rejected the notification")

// ErrBudgetSpent is returned by Deliver when the receiver had not taken the notification
// within the delivery budget.
var ErrBudgetSpent = errors.New("delivery budget spent")

// Deliver posts ev to the named receiver, retrying failures (network errors, 429 and 5xx
// answers) with exponential backoff up to MaxAttempts, all within the delivery budget. It
// returns the attempts made. When ctx ends first, its error is returned: the delivery was cut
// short, not failed.
func (n *Notifier) Deliver(ctx context.Context, receiver string, ev incident.Event) (int, error) {
	budget, cancel := context.WithTimeoutCause(ctx, time.Duration(n.cfg.Budget), ErrBudgetSpent)
	defer cancel()
	attempts, err := n.deliver(budget, receiver, ev)
	if err != nil && ctx.Err() == nil && budget.Err() != nil {
		return attempts, fmt.Errorf("%w (%s) after %d attempts: %w", ErrBudgetSpent, time.Duration(n.cfg.Budget), attempts, err)
	}
	return attempts, err
}

func (n *Notifier) deliver(ctx context.Context, receiver string, ev incident.Event) (int, error) {
	i := slices.IndexFunc(n.cfg.Receivers, func(r Receiver) bool { return r.Name == receiver })
	if i < 0 {
		return 0, fmt.Errorf("no receiver named %q", receiver)
	}
	r := n.cfg.Receivers[i]
	body, err := Payload(r, ev, n.cfg.DashboardURL)
	if err != nil {
		return 0, err
	}
	wait := max(0, time.Duration(n.cfg.Backoff)) // negative: at once
	var last error
	for attempt := 1; attempt <= n.cfg.MaxAttempts; attempt++ {
		last = PostJSON(ctx, n.clients[r.Name], r.URL, body, r.HTTP)
		if last == nil || errors.Is(last, ErrRejected) {
			return attempt, last
		}
		if attempt < n.cfg.MaxAttempts {
			// The receiver's Retry-After, when it sent one, and never less than the backoff;
			// each capped, and spread by a fifth either way so that receivers coming back
			// are not hit by every worker at once.
			pause := wait
			var ra *retryAfterError
			if errors.As(last, &ra) {
				pause = max(pause, min(ra.after, maxRetryWait))
			}
			pause = time.Duration(float64(pause) * (0.8 + 0.4*rand.Float64()))
			if err := n.sleep(ctx, pause); err != nil {
				return attempt, err
			}
			wait = min(2*wait, maxRetryWait)
		}
	}
	return n.cfg.MaxAttempts, last
}

// PostJSON posts body to target. A 429 or 5xx answer and network errors are returned as plain
// errors, worth retrying; any other 4xx wraps ErrRejected.
func PostJSON(ctx context.Context, client *http.Client, target string, body []byte, hc HTTPConfig) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	hc.apply(req)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", UserAgent)
	resp, err := client.Do(req)
	if err != nil {
		// The URL may hold a secret (a Slack webhook's path): report the host only, never the
		// whole URL that net/http's error carries.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return fmt.Errorf("post to %s: %w", req.URL.Host, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	switch {
	case resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		err := fmt.Errorf("receiver answered %s: %s", resp.Status, bytes.TrimSpace(msg))
		if after, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			return &retryAfterError{err: err, after: after}
		}
		return err
	default:
		return fmt.Errorf("%w: %s: %s", ErrRejected, resp.Status, bytes.TrimSpace(msg))
	}
}

// UserAgent names the engine to receivers and hooks.
const UserAgent = "incident-engine/1 (+https://github.com/incident-engine/engine)"

// maxRetryWait caps one wait between attempts, whatever the backoff or a Retry-After says;
// the delivery budget bounds them all.
const maxRetryWait = 30 * time.Second

// retryAfterError is a retryable answer that said when to come back.
type retryAfterError struct {
	err   error
	after time.Duration
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

// parseRetryAfter reads a Retry-After header: seconds, or an HTTP date (read against now, the
// wall clock: when to call a receiver again is a matter of its clock, not of samples).
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(0, t.Sub(now)), true
	}
	return 0, false
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// fingerprint identifies an incident's alert for Alertmanager receivers.
func fingerprint(incidentID string) string {
	sum := sha256.Sum256([]byte(incidentID))
	return hex.EncodeToString(sum[:8])
}
