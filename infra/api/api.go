// Package api serves the operator's JSON API under /api/v1: incidents with their timelines,
// the operator's actions on them (acknowledge, resolve, reopen), silences, dead letters, and
// the OpenAPI document that describes all of it (openapi.json, embedded in the binary).
//
// It checks bearer tokens, turns requests into calls of the application layer
// (Actions for changes, the postgres read views for queries) and their errors
// into HTTP statuses: a client's mistake is a 4xx with {"error": "..."}, never a 500. It
// decides nothing about incidents itself. Operators' actions are dated by the wall clock at
// the request, read here and passed in.
package api

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/jackc/pgx/v5/pgconn"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/incident-engine/engine/domain/incident"
	"github.com/incident-engine/engine/domain/silence"
	"github.com/incident-engine/engine/infra/deadletter"
	"github.com/incident-engine/engine/infra/postgres"
)

const (
	prefix      = "/api/v1"
	openAPIPath = prefix + "/openapi.json"
	// maxBody bounds request bodies; every body the API takes is a few hundred bytes.
	maxBody = 64 << 10
	// Page sizes of the incident list.
	defaultLimit = 50
	maxLimit     = 500
)

//go:embed openapi.json
var openAPI []byte

// Operator changes incidents and silences; Actions is the real one. Each
// method is one transaction, and returns the domain's named errors for illegal moves.
type Operator interface {
	Acknowledge(ctx context.Context, id, by string, at time.Time) (incident.Snapshot, error)
	Resolve(ctx context.Context, id, by, reason string, at time.Time) (incident.Snapshot, error)
	Reopen(ctx context.Context, id, by string, at time.Time) (incident.Snapshot, error)
	Silence(ctx context.Context, service string, start, end time.Time, reason, author string) (silence.Silence, error)
	EndSilence(ctx context.Context, id string, at time.Time) (silence.Silence, error)
}

// Reader reads incidents and silences; postgres.Views is the real one.
type Reader interface {
	Incidents(ctx context.Context, f postgres.IncidentFilter) ([]incident.Snapshot, error)
	Incident(ctx context.Context, id string) (incident.Snapshot, []postgres.TimelineEntry, error)
	Silences(ctx context.Context, f postgres.SilenceFilter) ([]postgres.SilenceView, error)
}

// DeadLetters lists and replays dead-lettered messages; deadletter.Queue is the real one.
type DeadLetters interface {
	// Latest returns the n latest dead letters, oldest first, their payloads cut short.
	Latest(ctx context.Context, n int) ([]deadletter.Entry, error)
	Replay(ctx context.Context, s deadletter.Selection, dryRun bool) ([]deadletter.Entry, error)
}

// API is the operator API. Build it with New and serve API.Handler.
type API struct {
	op          Operator
	views       Reader
	deadLetters DeadLetters
	now         func() time.Time
	logger      *slog.Logger
	write, read token
}

// New returns the API for cfg, or cfg's validation error. now is the wall clock that dates
// operators' actions and judges which silences are active for listing; nil means time.Now.
func New(cfg Config, op Operator, views Reader, deadLetters DeadLetters, now func() time.Time, logger *slog.Logger) (*API, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("api config: %w", err)
	}
	if now == nil {
		now = time.Now
	}
	return &API{op: op, views: views, deadLetters: deadLetters, now: now, logger: logger,
		write: newToken(cfg.Token), read: newToken(cfg.ReadToken)}, nil
}

type route struct {
	method, path string
	handle       http.HandlerFunc
}

func (a *API) routes() []route {
	return []route{
		{http.MethodGet, prefix + "/incidents", a.listIncidents},
		{http.MethodGet, prefix + "/incidents/{id}", a.getIncident},
		{http.MethodPost, prefix + "/incidents/{id}/acknowledge", a.acknowledge},
		{http.MethodPost, prefix + "/incidents/{id}/resolve", a.resolve},
		{http.MethodPost, prefix + "/incidents/{id}/reopen", a.reopen},
		{http.MethodGet, prefix + "/silences", a.listSilences},
		{http.MethodPost, prefix + "/silences", a.createSilence},
		{http.MethodDelete, prefix + "/silences/{id}", a.endSilence},
		{http.MethodGet, prefix + "/deadletters", a.listDeadLetters},
		{http.MethodPost, prefix + "/deadletters/replay", a.replayDeadLetters},
		{http.MethodGet, openAPIPath, a.openAPI},
	}
}

// Routes returns the method and path of every operation the API serves, as "GET
// /api/v1/incidents/{id}".
func (a *API) Routes() []string {
	var out []string
	for _, r := range a.routes() {
		out = append(out, r.method+" "+r.path)
	}
	return out
}

// Handler returns the HTTP handler of the API, with whatever mounts add to its mux (the
// dashboard's pages and its own API calls) behind the same token checks. Unknown paths under
// /api/v1 get a JSON 404, known paths with the wrong method a JSON 405.
func (a *API) Handler(mounts ...func(*http.ServeMux)) http.Handler {
	mux := http.NewServeMux()
	for _, r := range a.routes() {
		mux.HandleFunc(r.method+" "+r.path, r.handle)
	}
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		mux.HandleFunc(m+" "+prefix+"/", a.noRoute)
	}
	for _, m := range mounts {
		m(mux)
	}
	return securityHeaders(a.guard(mux))
}

// contentSecurityPolicy lets the dashboard load only its own script, styles and data: markup
// that slipped into a page (a hostile service name, say) can neither run nor load anything,
// and no other site can frame it.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; " +
	"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// securityHeaders sets the headers every response carries.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}

// noRoute answers requests no operation matches: 405 with the allowed methods when the path
// is known, 404 otherwise.
func (a *API) noRoute(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, rt := range a.routes() {
		if pathMatches(rt.path, r.URL.Path) && !slices.Contains(allow, rt.method) {
			allow = append(allow, rt.method)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, strings.Join(allow, ", ")))
		return
	}
	writeError(w, http.StatusNotFound, fmt.Sprintf("no endpoint %s %s; the API is described at %s", r.Method, r.URL.Path, openAPIPath))
}

// pathMatches reports whether path fits pattern, whose {name} segments match any one segment.
func pathMatches(pattern, path string) bool {
	ps, qs := strings.Split(pattern, "/"), strings.Split(path, "/")
	if len(ps) != len(qs) {
		return false
	}
	for i := range ps {
		if ps[i] != qs[i] && !(strings.HasPrefix(ps[i], "{") && qs[i] != "") {
			return false
		}
	}
	return true
}

// ---- incidents ----------------------------------------------------------------------------

// incidentJSON is an incident as the API shows it.
type incidentJSON struct {
	ID              string     `json:"id"`
	Service         string     `json:"service"`
	Severity        string     `json:"severity"`
	Status          string     `json:"status"`
	OccurrenceCount int        `json:"occurrence_count"`
	FirstSeen       time.Time  `json:"first_seen"`
	LastSeen        time.Time  `json:"last_seen"`
	ResolvedAt      *time.Time `json:"resolved_at,omitempty"`
	EpisodeStart    time.Time  `json:"episode_start"`
	PeakExcess      float64    `json:"peak_excess"`
	LastScore       float64    `json:"last_score"`
	Threshold       float64    `json:"threshold"`
	ReopenCount     int        `json:"reopen_count"`
	DataStopped     bool       `json:"data_stopped"`
	AcknowledgedBy  string     `json:"acknowledged_by,omitempty"`
	AcknowledgedAt  *time.Time `json:"acknowledged_at,omitempty"`
}

func incidentView(s incident.Snapshot) incidentJSON {
	v := incidentJSON{
		ID: s.ID, Service: s.Service, Severity: s.Severity.String(), Status: s.Status.String(),
		OccurrenceCount: s.Occurrences, FirstSeen: s.FirstSeen.UTC(), LastSeen: s.LastSeen.UTC(),
		EpisodeStart: s.EpisodeStart.UTC(), PeakExcess: s.PeakExcess, LastScore: s.LastScore,
		Threshold: s.Threshold, ReopenCount: s.Reopens, DataStopped: s.DataStopped, AcknowledgedBy: s.AckedBy,
	}
	if !s.ResolvedAt.IsZero() {
		t := s.ResolvedAt.UTC()
		v.ResolvedAt = &t
	}
	if !s.AckedAt.IsZero() {
		t := s.AckedAt.UTC()
		v.AcknowledgedAt = &t
	}
	return v
}

func (a *API) listIncidents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if err := onlyParams(q, "service", "status", "severity", "from", "to", "limit", "cursor"); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	f := postgres.IncidentFilter{Service: strings.TrimSpace(q.Get("service")), Limit: defaultLimit}
	var errs []error
	if v := q.Get("status"); v != "" {
		var err error
		if f.Status, err = incident.ParseStatus(v); err != nil {
			errs = append(errs, errors.New("status must be open or resolved"))
		}
	}
	if v := q.Get("severity"); v != "" {
		var err error
		if f.Severity, err = incident.ParseSeverity(v); err != nil {
			errs = append(errs, errors.New("severity must be low, medium, high or critical"))
		}
	}
	for _, p := range []struct {
		name string
		into *time.Time
	}{{"from", &f.From}, {"to", &f.To}} {
		if v := q.Get(p.name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s must be an RFC 3339 time such as 2026-11-26T17:00:00Z", p.name))
			}
			*p.into = t
		}
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		errs = append(errs, errors.New("from must come before to"))
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxLimit {
			errs = append(errs, fmt.Errorf("limit must be a whole number from 1 to %d", maxLimit))
		}
		f.Limit = n
	}
	if v := q.Get("cursor"); v != "" {
		key, err := decodeCursor(v)
		if err != nil {
			errs = append(errs, err)
		}
		f.After = &key
	}
	if err := errors.Join(errs...); err != nil {
		writeError(w, http.StatusBadRequest, strings.ReplaceAll(err.Error(), "\n", "; "))
		return
	}
	want := f.Limit
	f.Limit++ // one more tells whether there is a next page
	got, err := a.views.Incidents(r.Context(), f)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := struct {
		Incidents  []incidentJSON `json:"incidents"`
		NextCursor string         `json:"next_cursor,omitempty"`
	}{Incidents: make([]incidentJSON, 0, len(got))}
	if len(got) > want {
		got = got[:want]
		last := got[len(got)-1]
		out.NextCursor = encodeCursor(postgres.IncidentKey{LastSeen: last.LastSeen, ID: last.ID})
	}
	for _, s := range got {
		out.Incidents = append(out.Incidents, incidentView(s))
	}
	writeJSON(w, http.StatusOK, out)
}

// A cursor is the key of the last incident of a page, opaque to clients.
func encodeCursor(k postgres.IncidentKey) string {
	return base64.RawURLEncoding.EncodeToString([]byte(k.LastSeen.UTC().Format(time.RFC3339Nano) + "," + k.ID))
}

func decodeCursor(s string) (postgres.IncidentKey, error) {
	bad := errors.New("cursor is not one this API returned: pass next_cursor from the previous page unchanged")
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return postgres.IncidentKey{}, bad
	}
	at, id, ok := strings.Cut(string(b), ",")
	t, err := time.Parse(time.RFC3339Nano, at)
	if _, uerr := uuid.Parse(id); !ok || err != nil || uerr != nil {
		return postgres.IncidentKey{}, bad
	}
	return postgres.IncidentKey{LastSeen: t, ID: id}, nil
}

func (a *API) getIncident(w http.ResponseWriter, r *http.Request) {
	if !validID(r.PathValue("id")) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("incident %q not found: ids are UUIDs", r.PathValue("id")))
		return
	}
	snap, timeline, err := a.views.Incident(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if timeline == nil {
		timeline = []postgres.TimelineEntry{}
	}
	writeJSON(w, http.StatusOK, struct {
		Incident incidentJSON             `json:"incident"`
		Timeline []postgres.TimelineEntry `json:"timeline"`
	}{incidentView(snap), timeline})
}

// actionRequest is the body of the incident actions; Reason is for resolve only.
type actionRequest struct {
	By     string `json:"by"`
	Reason string `json:"reason"`
}

func (a *API) acknowledge(w http.ResponseWriter, r *http.Request) {
	a.act(w, r, false, func(ctx context.Context, id string, req actionRequest, now time.Time) (incident.Snapshot, error) {
		return a.op.Acknowledge(ctx, id, req.By, now)
	})
}

func (a *API) resolve(w http.ResponseWriter, r *http.Request) {
	a.act(w, r, true, func(ctx context.Context, id string, req actionRequest, now time.Time) (incident.Snapshot, error) {
		return a.op.Resolve(ctx, id, req.By, req.Reason, now)
	})
}

func (a *API) reopen(w http.ResponseWriter, r *http.Request) {
	a.act(w, r, false, func(ctx context.Context, id string, req actionRequest, now time.Time) (incident.Snapshot, error) {
		return a.op.Reopen(ctx, id, req.By, now)
	})
}

// act decodes an action's body and runs it, dated now by the wall clock: an operator's action
// is a person's decision at the time of the request, not a judgement of metrics, so it has no
// sample time to go by.
func (a *API) act(w http.ResponseWriter, r *http.Request, withReason bool, do func(context.Context, string, actionRequest, time.Time) (incident.Snapshot, error)) {
	var req actionRequest
	if err := decodeBody(r, &req); err != nil {
		badBody(w, err)
		return
	}
	if !withReason && req.Reason != "" {
		writeError(w, http.StatusBadRequest, `this action takes only "by"`)
		return
	}
	if !validID(r.PathValue("id")) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("incident %q not found: ids are UUIDs", r.PathValue("id")))
		return
	}
	snap, err := do(r.Context(), r.PathValue("id"), req, a.now().UTC())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Incident incidentJSON `json:"incident"`
	}{incidentView(snap)})
}

// ---- silences -----------------------------------------------------------------------------

type silenceJSON struct {
	ID        string        `json:"id"`
	Service   string        `json:"service"`
	Start     time.Time     `json:"start"`
	End       time.Time     `json:"end"`
	Reason    string        `json:"reason"`
	Author    string        `json:"author"`
	State     silence.State `json:"state"`
	CreatedAt *time.Time    `json:"created_at,omitempty"`
}

func silenceView(s silence.Silence, now time.Time) silenceJSON {
	return silenceJSON{ID: s.ID(), Service: s.Service(), Start: s.Start().UTC(), End: s.End().UTC(),
		Reason: s.Reason(), Author: s.Author(), State: s.State(now)}
}

func (a *API) listSilences(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if err := onlyParams(q, "service", "state", "limit"); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	now := a.now().UTC()
	f := postgres.SilenceFilter{Service: strings.TrimSpace(q.Get("service")), State: silence.State(q.Get("state")), Now: now, Limit: defaultLimit}
	switch f.State {
	case "", silence.StateActive, silence.StatePending, silence.StateEnded:
	default:
		writeError(w, http.StatusBadRequest, "state must be active, pending or ended")
		return
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxLimit {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit must be a whole number from 1 to %d", maxLimit))
			return
		}
		f.Limit = n
	}
	got, err := a.views.Silences(r.Context(), f)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := make([]silenceJSON, 0, len(got))
	for _, v := range got {
		s := silenceView(v.Silence, now)
		created := v.CreatedAt
		s.CreatedAt = &created
		out = append(out, s)
	}
	writeJSON(w, http.StatusOK, struct {
		Silences []silenceJSON `json:"silences"`
	}{out})
}

// silenceRequest is the body of POST /silences. Start defaults to now.
type silenceRequest struct {
	Service string     `json:"service"`
	Start   *time.Time `json:"start"`
	End     *time.Time `json:"end"`
	Reason  string     `json:"reason"`
	Author  string     `json:"author"`
}

func (a *API) createSilence(w http.ResponseWriter, r *http.Request) {
	var req silenceRequest
	if err := decodeBody(r, &req); err != nil {
		badBody(w, err)
		return
	}
	now := a.now().UTC()
	start := now
	if req.Start != nil {
		start = *req.Start
	}
	if req.End == nil {
		writeError(w, http.StatusBadRequest, "end is required (RFC 3339); start defaults to now")
		return
	}
	s, err := a.op.Silence(r.Context(), req.Service, start, *req.End, req.Reason, req.Author)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("Location", prefix+"/silences/"+url.PathEscape(s.ID()))
	writeJSON(w, http.StatusCreated, struct {
		Silence silenceJSON `json:"silence"`
	}{silenceView(s, now)})
}

func (a *API) endSilence(w http.ResponseWriter, r *http.Request) {
	now := a.now().UTC()
	if !validID(r.PathValue("id")) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("silence %q not found: ids are UUIDs", r.PathValue("id")))
		return
	}
	s, err := a.op.EndSilence(r.Context(), r.PathValue("id"), now)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Silence silenceJSON `json:"silence"`
	}{silenceView(s, now)})
}

// ---- dead letters -------------------------------------------------------------------------

func (a *API) listDeadLetters(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if err := onlyParams(q, "limit"); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, http.StatusBadRequest, "limit must be an integer from 1 to 1000")
			return
		}
		limit = n
	}
	entries, err := a.deadLetters.Latest(r.Context(), limit)
	if err != nil {
		a.unavailable(w, "dead-letter topic", err)
		return
	}
	if entries == nil {
		entries = []deadletter.Entry{}
	}
	writeJSON(w, http.StatusOK, struct {
		DeadLetters []deadletter.Entry `json:"deadletters"`
	}{entries})
}

// replayRequest is the body of POST /deadletters/replay: the selection of `incidentctl dlq
// replay`.
type replayRequest struct {
	deadletter.Selection
	DryRun bool `json:"dry_run"`
}

func (a *API) replayDeadLetters(w http.ResponseWriter, r *http.Request) {
	var req replayRequest
	if err := decodeBody(r, &req); err != nil {
		badBody(w, err)
		return
	}
	done, err := a.deadLetters.Replay(r.Context(), req.Selection, req.DryRun)
	switch {
	case errors.Is(err, deadletter.ErrNoSelection):
		writeError(w, http.StatusBadRequest, `say which messages to replay: "all": true, "ids", "reason" or "topic"`)
		return
	case errors.Is(err, deadletter.ErrUnknownID):
		writeError(w, http.StatusNotFound, err.Error())
		return
	case err != nil && len(done) == 0:
		a.unavailable(w, "dead-letter replay", err)
		return
	case err != nil:
		a.logger.Error("dead-letter replay stopped", "err", err, "replayed", len(done))
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("replay stopped after %d messages; the worker log has the details", len(done)))
		return
	}
	if done == nil {
		done = []deadletter.Entry{}
	}
	a.logger.Info("dead letters replayed", "count", len(done), "dry_run", req.DryRun)
	writeJSON(w, http.StatusOK, struct {
		DryRun   bool               `json:"dry_run"`
		Count    int                `json:"count"`
		Messages []deadletter.Entry `json:"messages"`
	}{req.DryRun, len(done), done})
}

func (a *API) openAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPI)
}

// ---- plumbing -----------------------------------------------------------------------------

// fail answers err: the domain's named errors are the client's mistakes (4xx), anything else
// is the server's, logged once here and answered without details.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, incident.ErrNotFound), errors.Is(err, silence.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, incident.ErrNoOperator), errors.Is(err, incident.ErrNoReason), errors.Is(err, silence.ErrInvalid):
		status = http.StatusBadRequest
	case errors.Is(err, incident.ErrResolved), errors.Is(err, incident.ErrNotResolved),
		errors.Is(err, incident.ErrAlreadyAcknowledged), errors.Is(err, incident.ErrNotLatest),
		errors.Is(err, silence.ErrEnded):
		status = http.StatusConflict
	case r.Context().Err() != nil:
		return // the client went away
	case isDataError(err):
		status = http.StatusBadRequest
	case isUnavailable(err):
		a.unavailable(w, "the database", err)
		return
	}
	if status == http.StatusInternalServerError {
		a.logger.Error("api request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, status, "internal error; the worker log has the details")
		return
	}
	writeError(w, status, err.Error())
}

// isDataError reports a value PostgreSQL refused as data (class 22: invalid text, a number
// out of range...): the client sent it.
func isDataError(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && strings.HasPrefix(pgErr.Code, "22")
}

// isUnavailable reports that the database could not be reached or went away.
func isUnavailable(err error) bool {
	var connErr *pgconn.ConnectError
	var netErr net.Error
	var pgErr *pgconn.PgError
	return errors.As(err, &connErr) || errors.As(err, &netErr) || errors.Is(err, context.DeadlineExceeded) ||
		pgconn.SafeToRetry(err) || pgconn.Timeout(err) ||
		(errors.As(err, &pgErr) && (strings.HasPrefix(pgErr.Code, "08") || strings.HasPrefix(pgErr.Code, "57P")))
}

func (a *API) unavailable(w http.ResponseWriter, what string, err error) {
	a.logger.Error(what+" unavailable", "err", err)
	writeError(w, http.StatusServiceUnavailable, what+" unavailable; the worker log has the details")
}

// errTooLarge is returned by decodeBody for a body beyond maxBody.
var errTooLarge = fmt.Errorf("the request body exceeds %d bytes", maxBody)

// badBody answers a body decodeBody refused: 413 when it was too large, 400 otherwise.
func badBody(w http.ResponseWriter, err error) {
	if errors.Is(err, errTooLarge) {
		writeError(w, http.StatusRequestEntityTooLarge, err.Error())
		return
	}
	writeError(w, http.StatusBadRequest, err.Error())
}

// decodeBody reads one JSON object into v, refusing unknown fields, trailing data, bodies
// beyond maxBody and text that PostgreSQL cannot store (NUL, invalid UTF-8).
func decodeBody(r *http.Request, v any) error {
	raw, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return fmt.Errorf("read the request body: %w", err)
	}
	if len(raw) > maxBody {
		return errTooLarge
	}
	if !utf8.Valid(raw) {
		return errors.New("invalid JSON body: not UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("the request needs a JSON body")
		}
		return fmt.Errorf("invalid JSON body: %w", err)
	}
	if dec.More() {
		return errors.New("invalid JSON body: more than one value")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("invalid JSON body: unexpected data after the object")
	}
	if bytes.Contains(raw, []byte(`\u0000`)) {
		return errors.New("invalid JSON body: text may not contain NUL")
	}
	return nil
}

// cleanText reports a query value PostgreSQL could not take as text (NUL, invalid UTF-8).
func cleanText(q url.Values) error {
	for k, vs := range q {
		for _, v := range vs {
			if !utf8.ValidString(v) || strings.ContainsRune(v, 0) {
				return fmt.Errorf("query parameter %s: not valid text (NUL or invalid UTF-8)", k)
			}
		}
	}
	return nil
}

// validID reports whether id is an incident or silence id as the engine writes them: a UUID
// in its canonical 36-character form (the parser alone also takes urn:uuid:... and braces).
func validID(id string) bool {
	_, err := uuid.Parse(id)
	return err == nil && len(id) == 36
}

// onlyParams refuses query parameters other than known, so a misspelt filter is an error
// rather than silently ignored.
func onlyParams(q url.Values, known ...string) error {
	if err := cleanText(q); err != nil {
		return err
	}
	var unknown []string
	for k := range q {
		if !slices.Contains(known, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return fmt.Errorf("unknown query parameter %s; known: %s", strings.Join(unknown, ", "), strings.Join(known, ", "))
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
