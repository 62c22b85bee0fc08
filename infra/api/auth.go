package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode"
)

// MinTokenLength is the shortest token Config accepts.
const MinTokenLength = 16

// Config sets who may use the API. Tokens are secrets: they never appear in logs, errors or
// responses, and String redacts them.
type Config struct {
	// Token allows writes (and reads) with "Authorization: Bearer <Token>". Empty (the
	// default) refuses every write with 403 Forbidden.
	Token string
	// ReadToken, when set, is needed for reads too (Token also works). Empty (the default)
	// leaves reads open to anyone who reaches the server.
	ReadToken string
}

// Validate reports every problem of the configuration, without quoting the tokens.
func (c Config) Validate() error {
	var errs []error
	for _, t := range []struct{ name, tok string }{{"API token", c.Token}, {"API read token", c.ReadToken}} {
		name, tok := t.name, t.tok
		if tok == "" {
			continue
		}
		if len(tok) < MinTokenLength {
			errs = append(errs, fmt.Errorf("%s is too short: use at least %d characters", name, MinTokenLength))
		}
		if strings.IndexFunc(tok, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0 {
			errs = append(errs, fmt.Errorf("%s contains spaces or control characters", name))
		}
	}
	return errors.Join(errs...)
}

// String describes the configuration with the tokens redacted.
func (c Config) String() string {
	set := func(s string) string {
		if s == "" {
			return "unset"
		}
		return "set"
	}
	return fmt.Sprintf("api.Config{Token: %s, ReadToken: %s}", set(c.Token), set(c.ReadToken))
}

// GoString redacts the tokens from %#v too.
func (c Config) GoString() string { return c.String() }

// token is a configured secret, kept as its SHA-256 so that comparing it takes the same time
// whatever the length or content of the guess.
type token struct {
	set  bool
	hash [sha256.Size]byte
}

func newToken(s string) token {
	if s == "" {
		return token{}
	}
	return token{set: true, hash: sha256.Sum256([]byte(s))}
}

func (t token) matches(guess string) bool {
	h := sha256.Sum256([]byte(guess))
	return t.set && subtle.ConstantTimeCompare(t.hash[:], h[:]) == 1
}

// guard checks the bearer token of every request under /api/v1/ (the OpenAPI document
// excepted: describing the API gives nothing away). GET and HEAD are reads, everything else
// a write.
func (a *API) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, prefix+"/") || r.URL.Path == openAPIPath {
			next.ServeHTTP(w, r)
			return
		}
		read := r.Method == http.MethodGet || r.Method == http.MethodHead
		if !read && !a.write.set {
			writeError(w, http.StatusForbidden, "writes are disabled: no API token is configured; start the worker with API_TOKEN (or --api-token) set to a secret of at least 16 characters and send it as Authorization: Bearer <token>")
			return
		}
		if read && !a.read.set {
			next.ServeHTTP(w, r)
			return
		}
		guess, ok := bearer(r)
		switch {
		case !ok:
			w.Header().Set("WWW-Authenticate", `Bearer realm="incident-engine"`)
			writeError(w, http.StatusUnauthorized, "missing credentials: send Authorization: Bearer <token>")
		case a.write.matches(guess):
			next.ServeHTTP(w, r)
		case a.read.matches(guess) && read:
			next.ServeHTTP(w, r)
		case a.read.matches(guess):
			writeError(w, http.StatusForbidden, "this token may only read; writes need the API token (API_TOKEN)")
		default:
			w.Header().Set("WWW-Authenticate", `Bearer realm="incident-engine", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, "invalid token")
		}
	})
}

// ReadGuard lets a request through to next only with a token that may read, when reads are
// protected (API_READ_TOKEN set); otherwise everyone may. /metrics goes through it: what the
// engine counts is as private as what it stores.
func (a *API) ReadGuard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.read.set {
			next.ServeHTTP(w, r)
			return
		}
		guess, ok := bearer(r)
		if ok && (a.read.matches(guess) || a.write.matches(guess)) {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="incident-engine"`)
		writeError(w, http.StatusUnauthorized, "reads are protected: send Authorization: Bearer <token>")
	})
}

// bearer returns the token of an "Authorization: Bearer <token>" header.
func bearer(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}
