// Package cli maps environment variables onto flag defaults for the commands in cmd/. Each
// command documents the variable beside its flag; a variable that is set but cannot be parsed
// is an error, reported by Env.Err, never silently replaced by the default.
package cli

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// Env reads environment variables and remembers every one that did not parse. The zero Env
// is ready to use.
type Env struct {
	errs []error
}

// String returns the variable, or def when it is unset or empty.
func (e *Env) String(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// Int returns the variable as an integer, or def when it is unset.
func (e *Env) Int(key string, def int) int {
	return parse(e, key, def, strconv.Atoi)
}

// Uint64 returns the variable as an unsigned integer, or def when it is unset.
func (e *Env) Uint64(key string, def uint64) uint64 {
	return parse(e, key, def, func(s string) (uint64, error) { return strconv.ParseUint(s, 10, 64) })
}

// Float returns the variable as a floating-point number, or def when it is unset.
func (e *Env) Float(key string, def float64) float64 {
	return parse(e, key, def, func(s string) (float64, error) { return strconv.ParseFloat(s, 64) })
}

// Bool returns the variable as a boolean (1, true, 0, false, ...), or def when it is unset.
func (e *Env) Bool(key string, def bool) bool {
	return parse(e, key, def, strconv.ParseBool)
}

// Duration returns the variable as a duration such as "90s" or "15m", or def when it is unset.
func (e *Env) Duration(key string, def time.Duration) time.Duration {
	return parse(e, key, def, time.ParseDuration)
}

// Err reports every variable that was set but did not parse.
func (e *Env) Err() error { return errors.Join(e.errs...) }

func parse[T any](e *Env, key string, def T, conv func(string) (T, error)) T {
	s := os.Getenv(key)
	if s == "" {
		return def
	}
	v, err := conv(s)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("environment variable %s=%q: %w", key, s, err))
		return def
	}
	return v
}
