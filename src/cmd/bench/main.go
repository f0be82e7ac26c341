// Command bench measures reagent against the budgets of DESIGN.md §6 (issue
// #9). It starts devcloud in-process on free loopback ports, runs the agent
// binary as a child process against it and this machine's Docker engine,
// prints one table (figure, value, budget, within/over) and writes the same
// as JSON with the machine and the date. Everything it creates — child
// processes, containers, images, temporary directories — is removed at the
// end, on failure and on Ctrl-C too. docs/benchmarks.md explains each
// figure.
//
//	go run ./src/cmd/bench -agent build/reagent -out build/bench.json
//
// It is a tool, not part of the agent: it uses the Docker SDK directly for
// the baseline that request → RUNNING is compared with.
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
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// config is the command line.
type config struct {
	agent    string
	out      string
	short    bool
	pprofDir string   // "" = no profiles
	agentEnv []string // extra KEY=VALUE for the agent, e.g. GODEBUG=gctrace=1
	agentArg []string // extra agent flags, after the bench's own (so they win), e.g. -debug=true
	keep     bool     // keep the temp dir (agent log, devcloud data) for a post-mortem
}

type envList []string

func (e *envList) String() string { return strings.Join(*e, " ") }
func (e *envList) Set(s string) error {
	if k, _, ok := strings.Cut(s, "="); !ok || k == "" {
		return fmt.Errorf("want KEY=VALUE, got %q", s)
	}
	*e = append(*e, s)
	return nil
}

type argList []string

func (a *argList) String() string { return strings.Join(*a, " ") }
func (a *argList) Set(s string) error {
	if !strings.HasPrefix(s, "-") {
		return fmt.Errorf("want an agent flag such as -debug=true, got %q", s)
	}
	*a = append(*a, s)
	return nil
}

func parseFlags(args []string, out io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.agent, "agent", "build/reagent", "the agent binary to measure (make build)")
	fs.StringVar(&c.out, "out", "build/bench.json", "where the JSON report goes")
	fs.BoolVar(&c.short, "short", false, "fewer repetitions and shorter windows: a smoke run, not a measurement")
	fs.StringVar(&c.pprofDir, "pprof", "", "run the agent with -profiling on a free loopback port and save into this directory its heap, allocs and goroutine profiles at each reading and CPU profiles of the idle and log relay windows")
	fs.Var((*envList)(&c.agentEnv), "agentenv", "KEY=VALUE added to the agent's environment (repeatable), e.g. GODEBUG=gctrace=1")
	fs.Var((*argList)(&c.agentArg), "agentarg", "extra agent flag (repeatable), e.g. -agentarg=-debug=true; figures measured so are not comparable")
	fs.BoolVar(&c.keep, "keep", false, "keep the temporary directory (agent log and output, devcloud data) and print its path")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(out, "bench: unexpected argument %q\n", fs.Arg(0))
		return config{}, errors.New("usage")
	}
	return c, nil
}

// run is main without os.Exit: 0 when every figure was measured (over
// budget or not: the table says so), 1 when a figure could not be measured,
// 2 for a bad command line.
func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case err != nil:
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	rep, err := runBench(ctx, cfg, stderr)
	if rep != nil {
		fmt.Fprintln(stdout)
		if werr := rep.writeTable(stdout); werr != nil {
			fmt.Fprintln(stderr, "bench:", werr)
		}
		if werr := rep.writeJSON(cfg.out); werr != nil {
			fmt.Fprintln(stderr, "bench:", werr)
			return 1
		}
		fmt.Fprintf(stdout, "wrote %s\n", cfg.out)
	}
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	if len(rep.missing()) > 0 {
		return 1
	}
	return 0
}
