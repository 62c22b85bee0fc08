package cli

import (
	"strings"
	"testing"
	"time"
)

func TestEnv(t *testing.T) {
	t.Setenv("CLI_INT", "42")
	t.Setenv("CLI_DUR", "15m")
	t.Setenv("CLI_BOOL", "true")
	t.Setenv("CLI_BAD", "soon")
	var e Env
	if got := e.Int("CLI_INT", 1); got != 42 {
		t.Errorf("Int = %d, want 42 from the environment", got)
	}
	if got := e.Int("CLI_UNSET", 7); got != 7 {
		t.Errorf("Int of an unset variable = %d, want the default 7", got)
	}
	if got := e.Duration("CLI_DUR", time.Second); got != 15*time.Minute {
		t.Errorf("Duration = %s, want 15m", got)
	}
	if got := e.Bool("CLI_BOOL", false); !got {
		t.Error("Bool = false, want true")
	}
	if e.Err() != nil {
		t.Fatalf("Err = %v before any bad variable", e.Err())
	}
	if got := e.Duration("CLI_BAD", time.Second); got != time.Second {
		t.Errorf("Duration of a bad value = %s, want the default", got)
	}
	if err := e.Err(); err == nil || !strings.Contains(err.Error(), "CLI_BAD") {
		t.Errorf("Err = %v, want it to name CLI_BAD", err)
	}
}
