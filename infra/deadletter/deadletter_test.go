package deadletter_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/incident-engine/engine/infra/deadletter"
)

var entries = []deadletter.Entry{
	{ID: "0-0", Topic: "metrics", Reason: "not a JSON sample"},
	{ID: "0-1", Topic: "metrics", Reason: "error_rate 1.5 is outside [0,1]"},
	{ID: "1-0", Topic: "incidents.correlated", Reason: "decode incident event: unexpected end"},
	{ID: "1-1", Topic: "metrics", Reason: "timestamp \"yesterday\" is not RFC 3339"},
}

func TestSelect(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		sel     deadletter.Selection
		want    []string
		wantErr error
		why     string
	}{
		{"nothing said", deadletter.Selection{}, nil, deadletter.ErrNoSelection, "replaying everything must be asked for"},
		{"blank ids", deadletter.Selection{IDs: []string{"", " "}}, nil, deadletter.ErrNoSelection, "empty ids (from --id \"\") name nothing"},
		{"all", deadletter.Selection{All: true}, []string{"0-0", "0-1", "1-0", "1-1"}, nil, "everything, in order"},
		{"one id", deadletter.Selection{IDs: []string{"0-0"}}, []string{"0-0"}, nil, "only that one, not the ones after it"},
		{"two ids", deadletter.Selection{IDs: []string{"1-1", " 0-1 "}}, []string{"0-1", "1-1"}, nil, "in the topic's order, spaces trimmed"},
		{"unknown id", deadletter.Selection{IDs: []string{"0-0", "7-7"}}, nil, deadletter.ErrUnknownID, "a typo must not replay the rest"},
		{"reason", deadletter.Selection{Reason: "RFC 3339"}, []string{"1-1"}, nil, "a substring of the reason"},
		{"topic", deadletter.Selection{Topic: "incidents.correlated"}, []string{"1-0"}, nil, "the original topic, exactly"},
		{"topic and reason", deadletter.Selection{Topic: "metrics", Reason: "JSON"}, []string{"0-0"}, nil, "conditions combine"},
		{"id and reason", deadletter.Selection{IDs: []string{"0-0", "0-1"}, Reason: "error_rate"}, []string{"0-1"}, nil, "ids narrow like the others"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := deadletter.Select(entries, tc.sel)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Select error %v, want %v (%s)", err, tc.wantErr, tc.why)
			}
			var ids []string
			for _, e := range got {
				ids = append(ids, e.ID)
			}
			if !slices.Equal(ids, tc.want) {
				t.Errorf("Select chose %v, want %v (%s)", ids, tc.want, tc.why)
			}
		})
	}
}

func TestReplayNeedsWhatListRead(t *testing.T) {
	t.Parallel()
	called := false
	pubFor := func(context.Context, string) (message.Publisher, error) {
		called = true
		return nil, errors.New("unused")
	}
	done, err := deadletter.Replay(context.Background(), entries[:1], pubFor)
	if err == nil || !strings.Contains(err.Error(), "not read by List") || len(done) != 0 || called {
		t.Errorf("replaying an entry not read from the topic: %v (%d done), want a refusal before publishing", err, len(done))
	}
	done, err = deadletter.Replay(context.Background(), []deadletter.Entry{{ID: "2-0"}}, pubFor)
	if err == nil || !strings.Contains(err.Error(), "no original topic") || len(done) != 0 {
		t.Errorf("replaying an entry without topic: %v, want a refusal", err)
	}
}

// TestSelectLeavesAReplayedEntryToItsNewerCopy checks that replaying everything twice does
// not double the dead letters: an entry that was replayed and failed again is chosen through
// its newer copy only, unless the operator names it.
func TestSelectLeavesAReplayedEntryToItsNewerCopy(t *testing.T) {
	t.Parallel()
	entries := []deadletter.Entry{
		{ID: "0-0", Topic: "metrics", Reason: "not a JSON sample"},
		{ID: "0-1", Topic: "metrics", Reason: "error_rate 1.5"},
		{ID: "0-2", Topic: "metrics", Reason: "not a JSON sample", Replayed: "0-0"},
	}
	ids := func(es []deadletter.Entry) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.ID)
		}
		return out
	}
	if got, err := deadletter.Select(entries, deadletter.Selection{All: true}); err != nil || !slices.Equal(ids(got), []string{"0-1", "0-2"}) {
		t.Errorf("all: %v, %v; want 0-1 and the newer copy 0-2, not 0-0 again", ids(got), err)
	}
	if got, err := deadletter.Select(entries, deadletter.Selection{Reason: "JSON"}); err != nil || !slices.Equal(ids(got), []string{"0-2"}) {
		t.Errorf("by reason: %v, %v; want the newer copy only", ids(got), err)
	}
	if got, err := deadletter.Select(entries, deadletter.Selection{IDs: []string{"0-0"}}); err != nil || !slices.Equal(ids(got), []string{"0-0"}) {
		t.Errorf("by id: %v, %v; want the entry named", ids(got), err)
	}
}
