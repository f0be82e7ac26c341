// Package agent wires reagent's parts together: it builds them in
// dependency order, runs them until the context ends and shuts them down in
// reverse. It owns the start-up order and the on-connect sequence; the
// parts own their state.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"strconv"
	"time"

	"github.com/rs/zerolog"

	"reagent/src/apps"
	"reagent/src/config"
	"reagent/src/logs"
	"reagent/src/release"
	"reagent/src/system"
	"reagent/src/wamp"
)

// Options are what main hands over.
type Options struct {
	Flags  *config.Flags
	Flock  *config.Flock
	Stdout io.Writer // console for -prettyLogging; os.Stdout when nil

	// For in-package tests: withSession adds procedures to the session
	// before it runs; runner replaces the command runner of reboot,
	// shutdown and restart; appsOptions adjusts the reconciler's knobs.
	withSession func(*wamp.Session)
	runner      system.Runner
	appsOptions func(*apps.Options)
}

// ShutdownTimeout bounds the graceful shutdown after SIGINT/SIGTERM.
const ShutdownTimeout = 4 * time.Second

// exitError carries the process exit code of a fatal condition.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// ExitCode is the process exit code for an error returned by Run.
func ExitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

// Run runs the agent until ctx ends. It returns nil after a graceful
// shutdown; containers keep running.
func Run(ctx context.Context, opts Options) error {
	f := opts.Flags
	paths := f.Paths()

	lock, err := acquireLock(paths.LockFile)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	defer lock.release()

	log, logCloser, err := logs.NewAgentLogger(logs.AgentLogOptions{
		File: f.LogFile, Debug: f.Debug, Pretty: f.PrettyLogging, Console: opts.Stdout,
	})
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	keepLog := false // a part still running at the end may still log
	defer func() {
		if !keepLog {
			logCloser.Close()
		}
	}()

	log.Info().Str("version", release.Version()).Str("arch", release.Arch()).Str("os", runtime.GOOS).
		Str("serial", opts.Flock.SerialNumber).Str("authid", opts.Flock.AuthID()).
		Str("endpoint", opts.Flock.DeviceEndpointURL).Bool("offline", f.Offline).Msg("reagent starting")
	log.Debug().Interface("flags", f).Msg("command line")

	if err := makeDirs(paths); err != nil {
		log.Error().Err(err).Msg("cannot create agent directories")
		return &exitError{code: 1, err: err}
	}

	if f.Profiling {
		stopPprof, err := servePprof(f.ProfilingPort, log)
		if err != nil {
			log.Warn().Err(err).Msg("pprof not served")
		} else {
			defer stopPprof()
		}
	}

	// system_restart_agent without systemd: stop cleanly and let the
	// supervisor start us again.
	ctx, restart := context.WithCancel(ctx)
	defer restart()
	b, err := buildParts(opts, paths, log, func() {
		log.Info().Msg("restart requested: stopping")
		restart()
	})
	if err != nil {
		log.Error().Err(err).Msg("cannot build the agent")
		return &exitError{code: 1, err: err}
	}
	// Only fatal conditions end a part early (a *wamp.Fatal: rejected
	// signature, duplicate serial); they end the process with 1.
	stragglers, err := runParts(ctx, b.parts, log)
	if len(stragglers) == 0 {
		// Closed only once no part runs: a part still writing to a closed
		// store or log would fail, or recreate the log file. Stragglers
		// keep them; the process is about to exit anyway.
		b.close()
	} else {
		keepLog = true
	}
	if err != nil {
		log.Error().Err(err).Msg("reagent stopping")
		return &exitError{code: 1, err: err}
	}
	log.Info().Msg("reagent stopped")
	return nil
}

// makeDirs creates the agent's directories. Apps' data lives below AppsDir;
// it is private to the agent and the app containers.
func makeDirs(p config.Paths) error {
	for _, d := range []string{p.AgentDir, p.AppsDir, p.BuildDir, p.SharedDir, p.Downloads} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	return nil
}

// servePprof serves net/http/pprof on loopback only: profiles reveal
// memory contents and must never be reachable from the network.
func servePprof(port uint, log zerolog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
	if err != nil {
		return nil, fmt.Errorf("pprof on 127.0.0.1:%d: %w", port, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ln) }()
	log.Info().Str("addr", ln.Addr().String()).Msg("pprof served")
	return func() { _ = srv.Close(); <-served }, nil
}
