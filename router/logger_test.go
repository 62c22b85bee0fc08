package router_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill"

	"github.com/incident-engine/engine/router"
)

// Watermill's messages reach the log at the level it is set to, and only then: its info
// messages count as debug, its trace as trace.
func TestWatermillLoggerKeepsTheLevel(t *testing.T) {
	for _, tc := range []struct {
		level slog.Level
		want  []string
	}{
		{slog.LevelInfo, []string{"error"}},
		{slog.LevelDebug, []string{"info", "debug", "error"}},
		{watermill.LevelTrace, []string{"info", "debug", "trace", "error"}},
	} {
		var buf bytes.Buffer
		logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: tc.level}))
		wl := router.WatermillLogger(logger).With(watermill.LogFields{"stage": "decode"})
		fields := watermill.LogFields{"uuid": "m-1"}
		wl.Info("info", fields)
		wl.Debug("debug", fields)
		wl.Trace("trace", fields)
		wl.Error("error", nil, fields)
		var got []string
		for line := range strings.Lines(buf.String()) {
			if !strings.Contains(line, "stage=decode") || !strings.Contains(line, "uuid=m-1") {
				t.Errorf("level %v: a line lost its fields: %q", tc.level, line)
			}
			for _, f := range strings.Fields(line) {
				if msg, ok := strings.CutPrefix(f, "msg="); ok {
					got = append(got, msg)
				}
			}
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("level %v: logged %v, want %v", tc.level, got, tc.want)
		}
	}
}
