package silence_test

import (
	"errors"
	"testing"
	"time"

	"github.com/incident-engine/engine/domain/silence"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func at(minute int) time.Time { return t0.Add(time.Duration(minute) * time.Minute) }

// window returns silence "s-1" of api from minute 10 to minute 20.
func window(t *testing.T) silence.Silence {
	t.Helper()
	s, err := silence.New("s-1", "api", at(10), at(20), "database upgrade", "alice")
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func TestNew(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name                   string
		id, service            string
		start, end             time.Time
		reason, author         string
		ok                     bool
		wantService, wantAuthr string
		why                    string
	}{
		{"valid", "s-1", "api", at(0), at(60), "upgrade", "alice", true, "api", "alice", "an hour of maintenance"},
		{"trimmed", "s-1", " api ", at(0), at(1), " upgrade ", " alice ", true, "api", "alice", "stray spaces from a form are not part of names"},
		{"no id", "", "api", at(0), at(60), "upgrade", "alice", false, "", "", "a silence must be addressable"},
		{"no service", "s-1", " ", at(0), at(60), "upgrade", "alice", false, "", "", "a silence belongs to a service"},
		{"no reason", "s-1", "api", at(0), at(60), "", "alice", false, "", "", "the timeline must say why anomalies were muted"},
		{"no author", "s-1", "api", at(0), at(60), "upgrade", "", false, "", "", "someone answers for every silence"},
		{"empty window", "s-1", "api", at(5), at(5), "upgrade", "alice", false, "", "", "a window of no time silences nothing"},
		{"end before start", "s-1", "api", at(5), at(4), "upgrade", "alice", false, "", "", "time runs forwards"},
		{"no start", "s-1", "api", time.Time{}, at(4), "upgrade", "alice", false, "", "", "a silence starts somewhere"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := silence.New(tc.id, tc.service, tc.start, tc.end, tc.reason, tc.author)
			if !tc.ok {
				if !errors.Is(err, silence.ErrInvalid) {
					t.Errorf("New error = %v, want ErrInvalid (%s)", err, tc.why)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v (%s)", err, tc.why)
			}
			if s.ID() != tc.id || s.Service() != tc.wantService || s.Author() != tc.wantAuthr || !s.Start().Equal(tc.start) || !s.End().Equal(tc.end) || s.Reason() == "" {
				t.Errorf("got %+v (%s)", s.Snapshot(), tc.why)
			}
		})
	}
}

func TestActive(t *testing.T) {
	t.Parallel()
	s := window(t)
	cases := []struct {
		name   string
		at     time.Time
		active bool
		state  silence.State
		why    string
	}{
		{"before", at(9), false, silence.StatePending, "not started yet"},
		{"at start", at(10), true, silence.StateActive, "the start is inside"},
		{"inside", at(15), true, silence.StateActive, "the middle of the window"},
		{"just before end", at(20).Add(-time.Nanosecond), true, silence.StateActive, "the last instant is inside"},
		{"at end", at(20), false, silence.StateEnded, "the end is outside: a silence ends by itself"},
		{"after", at(90), false, silence.StateEnded, "long over"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := s.Active(tc.at); got != tc.active {
				t.Errorf("Active(%s) = %v, want %v (%s)", tc.at, got, tc.active, tc.why)
			}
			if got := s.State(tc.at); got != tc.state {
				t.Errorf("State(%s) = %s, want %s (%s)", tc.at, got, tc.state, tc.why)
			}
			if got, _ := silence.Covering([]silence.Silence{s}, "api", tc.at); (got.ID() == "s-1") != tc.active {
				t.Errorf("Covering at %s found %q, want active %v", tc.at, got.ID(), tc.active)
			}
		})
	}
}

func TestCovering(t *testing.T) {
	t.Parallel()
	a := window(t)
	b, err := silence.New("s-2", "db", at(0), at(60), "failover drill", "bob")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		service string
		at      time.Time
		want    string
		why     string
	}{
		{"api inside", "api", at(12), "s-1", "api's window covers it"},
		{"db inside", "db", at(12), "s-2", "each service has its own silences"},
		{"other service", "auth", at(12), "", "a silence covers only its service"},
		{"api outside", "api", at(30), "", "api's window is over"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, ok := silence.Covering([]silence.Silence{a, b}, tc.service, tc.at)
			if ok != (tc.want != "") || got.ID() != tc.want {
				t.Errorf("Covering(%s, %s) = %q, %v; want %q (%s)", tc.service, tc.at, got.ID(), ok, tc.want, tc.why)
			}
		})
	}
}

func TestExpire(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		at      time.Time
		wantEnd time.Time
		wantErr error
		why     string
	}{
		{"while active", at(15), at(15), nil, "ends now: samples from now on are no longer silenced"},
		{"before it starts", at(5), at(10), nil, "cancelled: it will never cover anything"},
		{"at its start", at(10), at(10), nil, "nothing was covered yet; it never will be"},
		{"at its end", at(20), at(20), silence.ErrEnded, "it already ended by itself"},
		{"after its end", at(30), at(20), silence.ErrEnded, "nothing left to end"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := window(t)
			err := s.Expire(tc.at)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Expire(%s) = %v, want %v (%s)", tc.at, err, tc.wantErr, tc.why)
			}
			if !s.End().Equal(tc.wantEnd) {
				t.Errorf("end %s after Expire(%s), want %s (%s)", s.End(), tc.at, tc.wantEnd, tc.why)
			}
			if tc.wantErr == nil && (s.Active(tc.at) || !s.Ended(tc.at)) {
				t.Errorf("still active at %s after expiring then", tc.at)
			}
		})
	}
}

func TestExpireCancelled(t *testing.T) {
	t.Parallel()
	s := window(t)
	if err := s.Expire(at(5)); err != nil {
		t.Fatal(err)
	}
	if err := s.Expire(at(6)); !errors.Is(err, silence.ErrEnded) {
		t.Errorf("expiring a cancelled silence again = %v, want ErrEnded: it covers nothing, before or after its start", err)
	}
	if s.Active(at(10)) || s.State(at(5)) != silence.StateEnded {
		t.Errorf("a cancelled silence is active at its former start or not ended (%s)", s.State(at(5)))
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	t.Parallel()
	s := window(t)
	if err := s.Expire(at(5)); err != nil { // cancelled: an empty window, stored as such
		t.Fatal(err)
	}
	got, err := silence.UnmarshalFromDatabase(s.Snapshot())
	if err != nil {
		t.Fatalf("UnmarshalFromDatabase: %v", err)
	}
	if got != s {
		t.Errorf("round trip: got %+v, want %+v", got.Snapshot(), s.Snapshot())
	}

	cases := []struct {
		name   string
		change func(*silence.Snapshot)
		why    string
	}{
		{"no id", func(s *silence.Snapshot) { s.ID = "" }, "a silence must be addressable"},
		{"no author", func(s *silence.Snapshot) { s.Author = "" }, "someone answers for it"},
		{"ends before it starts", func(s *silence.Snapshot) { s.End = s.Start.Add(-time.Second) }, "time runs forwards"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			snap := window(t).Snapshot()
			tc.change(&snap)
			if _, err := silence.UnmarshalFromDatabase(snap); !errors.Is(err, silence.ErrInvalid) {
				t.Errorf("UnmarshalFromDatabase error = %v, want ErrInvalid (%s)", err, tc.why)
			}
		})
	}
}
