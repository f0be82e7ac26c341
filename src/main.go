// Command reagent is the IronFlock device agent. It reads its flags and the
// device's .flock file, then hands over to agent.Run until SIGINT/SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"reagent/src/agent"
	"reagent/src/config"
	"reagent/src/release"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without os.Exit, so the exit codes are testable:
// 0 clean exit, 1 bad configuration or fatal runtime error, 2 bad command line.
func run(args []string, stdout, stderr io.Writer) int {
	flags, err := config.ParseFlags(args, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case err != nil:
		return 2
	}
	if flags.Version {
		fmt.Fprintln(stdout, release.Version())
		return 0
	}
	if flags.Arch {
		fmt.Fprintln(stdout, release.Arch())
		return 0
	}
	flock, err := config.LoadFlock(flags.Config)
	if err != nil {
		fmt.Fprintln(stderr, "reagent:", err)
		return 1
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := agent.Run(ctx, agent.Options{Flags: flags, Flock: flock, Stdout: stdout}); err != nil {
		fmt.Fprintln(stderr, "reagent:", err)
		return agent.ExitCode(err)
	}
	return 0
}
