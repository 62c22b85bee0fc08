// Package silence holds silences: maintenance windows during which a service's anomalies are
// recorded but open no incident, escalate nothing and notify no one.
//
// A Silence covers one service from its start up to (not including) its end, judged by the
// time of the sample being correlated (event time), so replaying a stream gives the same
// outcome. It ends by itself; an operator can end it early with Expire. Like the rest of the
// domain, the package never reads the clock, persists or logs: the time of every decision is
// an input, and infra/postgres stores silences.
package silence

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Errors returned for invalid silences and illegal moves. Callers use errors.Is.
var (
	// ErrInvalid is returned when a silence is built from incomplete or inconsistent values.
	ErrInvalid = errors.New("invalid silence")
	// ErrEnded is returned by Expire for a silence that has already ended.
	ErrEnded = errors.New("silence has already ended")
	// ErrNotFound is returned by repositories for a silence id they do not hold.
	ErrNotFound = errors.New("silence not found")
)

// Silence is one maintenance window of one service. Build it with New; the zero value is
// not a silence.
type Silence struct {
	id      string
	service string
	start   time.Time
	end     time.Time
	reason  string
	author  string
}

// MaxLength bounds a silence: a maintenance window, not a way to switch a service off for
// good (a silence up to the year 9999 would hide it for ever).
const MaxLength = 31 * 24 * time.Hour

// New returns a silence of service from start until end, with the reason given by author.
// The window must not be empty: end comes after start.
func New(id, service string, start, end time.Time, reason, author string) (Silence, error) {
	s := Silence{id: id, service: strings.TrimSpace(service), start: start, end: end,
		reason: strings.TrimSpace(reason), author: strings.TrimSpace(author)}
	var errs []error
	if s.id == "" || s.service == "" {
		errs = append(errs, errors.New("id and service are required"))
	}
	if s.reason == "" || s.author == "" {
		errs = append(errs, errors.New("reason and author are required"))
	}
	if start.IsZero() || !end.After(start) {
		errs = append(errs, errors.New("end must come after start"))
	}
	if end.Sub(start) > MaxLength {
		errs = append(errs, fmt.Errorf("a silence lasts at most %s (%d days); set a new one when it ends", MaxLength, MaxLength/(24*time.Hour)))
	}
	if len(errs) > 0 {
		return Silence{}, fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
	}
	return s, nil
}

// Active reports whether the silence covers the sample time at: from its start, inclusive, to
// its end, exclusive.
func (s Silence) Active(at time.Time) bool { return !at.Before(s.start) && at.Before(s.end) }

// Ended reports whether the silence is over as of at: it covers nothing from at on, because
// its end has come or it was cancelled before it began (an empty window).
func (s Silence) Ended(at time.Time) bool { return !at.Before(s.end) || !s.end.After(s.start) }

// State is where a silence stands at a given time.
type State string

// The states of a silence.
const (
	StatePending State = "pending" // not started yet
	StateActive  State = "active"  // covering samples now
	StateEnded   State = "ended"   // over, ended early, or cancelled before it began
)

// State returns where the silence stands at at.
func (s Silence) State(at time.Time) State {
	switch {
	case s.Ended(at):
		return StateEnded
	case at.Before(s.start):
		return StatePending
	}
	return StateActive
}

// Expire ends the silence early, at at. A silence that has not started yet is cancelled: its
// end moves to its start, so it never covers anything. A silence already over returns
// ErrEnded.
func (s *Silence) Expire(at time.Time) error {
	if s.Ended(at) {
		return fmt.Errorf("silence %s ended at %s: %w", s.id, s.end.UTC().Format(time.RFC3339), ErrEnded)
	}
	if at.Before(s.start) {
		at = s.start
	}
	s.end = at
	return nil
}

// Covering returns the first of silences that covers service at sample time at.
func Covering(silences []Silence, service string, at time.Time) (Silence, bool) {
	for _, s := range silences {
		if s.service == service && s.Active(at) {
			return s, true
		}
	}
	return Silence{}, false
}

// ID returns the silence's identifier.
func (s Silence) ID() string { return s.id }

// Service returns the silenced service.
func (s Silence) Service() string { return s.service }

// Start returns when the silence begins.
func (s Silence) Start() time.Time { return s.start }

// End returns when the silence ends (or ended).
func (s Silence) End() time.Time { return s.end }

// Reason says why the service is silenced.
func (s Silence) Reason() string { return s.reason }

// Author names who created the silence.
func (s Silence) Author() string { return s.author }

// Snapshot is a silence's full state, for storage. Only repositories rebuild silences from
// it, through UnmarshalFromDatabase.
type Snapshot struct {
	ID      string
	Service string
	Start   time.Time
	End     time.Time
	Reason  string
	Author  string
}

// Snapshot returns the silence's state for storage.
func (s Silence) Snapshot() Snapshot {
	return Snapshot{ID: s.id, Service: s.service, Start: s.start, End: s.end, Reason: s.reason, Author: s.author}
}

// UnmarshalFromDatabase rebuilds a stored silence. Unlike New it accepts an empty window
// (end equal to start), which is what a cancelled silence looks like.
func UnmarshalFromDatabase(s Snapshot) (Silence, error) {
	if s.ID == "" || s.Service == "" || s.Reason == "" || s.Author == "" || s.Start.IsZero() || s.End.Before(s.Start) {
		return Silence{}, fmt.Errorf("%w: stored silence %q is incomplete or ends before it starts", ErrInvalid, s.ID)
	}
	return Silence{id: s.ID, service: s.Service, start: s.Start, end: s.End, reason: s.Reason, author: s.Author}, nil
}
