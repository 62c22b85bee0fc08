// Command incidentctl is the operator's tool: list and replay dead-lettered messages, apply
// database migrations, and backtest the detector on labelled data.
//
//	incidentctl dlq list   [--json]
//	incidentctl dlq replay (--all | --id P-O[,P-O...] | --reason TEXT | --topic TOPIC) [--dry-run]
//	incidentctl migrate
//	incidentctl backtest [flags] PATH
//	incidentctl eval [flags] DATA
//
// It reads KAFKA_BROKERS (default localhost:9092), DEAD_LETTER_TOPIC (default
// metrics.deadletter) and, for migrate and for replaying messages of outbox topics,
// DATABASE_URL.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/incident-engine/engine/cmd/internal/cli"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

const usage = `incidentctl operates the incident engine: its dead letters, its database schema,
and offline evaluation of its detector.

usage:
  incidentctl dlq list   [--json]
  incidentctl dlq replay (--all | --id P-O[,P-O...] | --reason TEXT | --topic TOPIC) [--dry-run]
  incidentctl migrate
  incidentctl backtest [flags] PATH   replay labelled metrics through the detector offline (backtest --help)
  incidentctl eval [flags] DATA       the backtest on every benchmark set under DATA beside scikit-learn (eval --help)
  incidentctl listen [ADDR]   print notifications (Alertmanager webhook format) posted to ADDR (default :9099)
environment: KAFKA_BROKERS (localhost:9092), DEAD_LETTER_TOPIC (metrics.deadletter), DATABASE_URL
`

func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := dispatch(ctx, args, stdout)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, usage)
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "incidentctl: %v\n%s", err, usage)
		return 2
	case err != nil:
		fmt.Fprintln(stderr, "incidentctl:", err)
		return 1
	}
	return 0
}

var errUsage = errors.New("bad usage")

func dispatch(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: no command", errUsage)
	}
	isHelp := func(a string) bool { return a == "-h" || a == "--help" || a == "help" || a == "-help" }
	switch {
	case isHelp(args[0]), len(args) > 1 && isHelp(args[1]) && (args[0] == "dlq" || args[0] == "listen" || args[0] == "migrate"):
		return flag.ErrHelp
	case args[0] == "dlq" && (len(args) == 1 || len(args) > 2 && isHelp(args[2])):
		return flag.ErrHelp
	case args[0] == "listen":
		addr := ":9099"
		if len(args) > 1 {
			addr = args[1]
		}
		if strings.HasPrefix(addr, "-") {
			return fmt.Errorf("%w: listen takes an address, not %q", errUsage, addr)
		}
		return listen(ctx, addr, stdout)
	case args[0] == "migrate":
		return migrate(ctx, stdout)
	case args[0] == "backtest":
		return backtest(args[1:], stdout)
	case args[0] == "eval":
		return evalCmd(args[1:], stdout)
	case args[0] == "dlq" && len(args) > 1 && args[1] == "list":
		return dlqList(ctx, args[2:], stdout)
	case args[0] == "dlq" && len(args) > 1 && args[1] == "replay":
		return dlqReplay(ctx, args[2:], stdout)
	}
	return fmt.Errorf("%w: unknown command %q", errUsage, strings.Join(args, " "))
}

func env(key, def string) string {
	var e cli.Env
	return e.String(key, def)
}
