package agent

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"reagent/src/api"
	"reagent/src/config"
	"reagent/src/docker"
	"reagent/src/system"
)

// part is one long-running piece of the agent. Run blocks until ctx ends
// (then returns nil) or until the part cannot go on (then it returns why,
// and the agent stops). The apps reconciler, the log relay, tunnels… join
// here as they are written.
type part interface {
	Name() string
	Run(ctx context.Context) error
}

// built is everything buildParts made: the parts to run and what to
// close after they stopped, in reverse order of construction.
type built struct {
	parts   []part
	closers []func()
}

func (b *built) close() {
	for i := len(b.closers) - 1; i >= 0; i-- {
		b.closers[i]()
	}
}

// buildParts constructs every part in dependency order. Nothing runs yet.
// restart ends the agent cleanly (system_restart_agent's fallback).
func buildParts(opts Options, paths config.Paths, log zerolog.Logger, restart func()) (*built, error) {
	b := &built{}
	// Next: store → apps reconciler → log relay, tunnel; they are built
	// here, before the link, and handed to it as procedure deps and
	// on-connect steps.
	var engine api.DockerAPI
	dc, err := docker.New(docker.Options{Log: log})
	if err != nil {
		// The engine may come later; the docker procedures say unavailable.
		log.Warn().Err(err).Msg("no docker client")
	} else {
		engine = dc
		b.closers = append(b.closers, func() { _ = dc.Close() })
	}
	if opts.Flags.Offline {
		// No socket at all: the local parts keep the device at its last
		// requested state.
		log.Info().Msg("offline: no connection to the cloud")
		return b, nil
	}
	runner := opts.runner
	if runner == nil {
		runner = system.ExecRunner{}
	}
	// The sampler's first reading watches the CPU for a moment; taking it
	// now, while the link dials, keeps that wait out of the on-connect
	// sequence.
	sampler := system.NewSampler(paths.AppsDir)
	primeCtx, stopPrime := context.WithCancel(context.Background())
	primed := make(chan struct{})
	go func() { defer close(primed); _, _ = sampler.Stats(primeCtx) }()
	b.closers = append(b.closers, func() { stopPrime(); <-primed })
	link, err := newCloudLink(opts, linkDeps{
		docker:       engine,
		sampler:      sampler,
		runner:       runner,
		restartAgent: restart,
	}, log)
	if err != nil {
		b.close()
		return nil, err
	}
	b.parts = append(b.parts, link)
	return b, nil
}

// runParts runs every part until ctx ends or one of them fails, then
// cancels the rest and waits for them at most ShutdownTimeout. It returns
// the first failure.
func runParts(ctx context.Context, parts []part, log zerolog.Logger) error {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
	)
	for _, p := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.Run(runCtx); err != nil {
				once.Do(func() { firstErr = fmt.Errorf("%s: %w", p.Name(), err) })
				cancel()
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	select {
	case <-done: // every part ended by itself: a failure (or there were none)
		if len(parts) == 0 {
			<-ctx.Done()
		}
	case <-runCtx.Done():
		log.Info().Msg("reagent stopping")
		t := time.NewTimer(ShutdownTimeout)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			log.Warn().Dur("after", ShutdownTimeout).Msg("parts still running at shutdown; leaving them")
		}
	}
	return firstErr
}
