package agent

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"reagent/src/api"
	"reagent/src/apps"
	"reagent/src/config"
	"reagent/src/docker"
	"reagent/src/logs"
	"reagent/src/memtrim"
	"reagent/src/store"
	"reagent/src/system"
	"reagent/src/transfer"
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

// buildParts constructs every part in dependency order — store → docker →
// wamp session and backend → log relay → apps reconciler → transfers →
// procedures — and starts nothing. restart ends the agent cleanly
// (system_restart_agent's fallback).
func buildParts(opts Options, paths config.Paths, log zerolog.Logger, restart func()) (*built, error) {
	b := &built{}
	st, err := store.Open(context.Background(), paths.DBFile, store.Options{Logger: log})
	if err != nil {
		return nil, err
	}
	b.closers = append(b.closers, func() {
		if err := st.Close(); err != nil {
			log.Warn().Err(err).Msg("close store")
		}
	})
	var (
		engine api.DockerAPI
		dc     *docker.Client
	)
	dc, err = docker.New(docker.Options{Log: log})
	if err != nil {
		// The engine may come later; the docker procedures say unavailable.
		log.Warn().Err(err).Msg("no docker client")
		dc = nil
	} else {
		engine = dc
		b.closers = append(b.closers, func() { _ = dc.Close() })
	}

	var link *cloudLink
	if opts.Flags.Offline {
		// No socket at all: the local parts keep the device at its last
		// requested state; reports wait in the outbox.
		log.Info().Msg("offline: no connection to the cloud")
	} else {
		if link, err = newCloudLink(opts, log); err != nil {
			b.close()
			return nil, err
		}
	}

	// The trimmer keeps the agent's RSS near its working set: it runs
	// after every burst of work (the start, a connect, app starts and
	// stops) has settled.
	trimmer := memtrim.New(0, log.With().Str("component", "memtrim").Logger())
	lp, err := buildLocalParts(opts, paths, st, dc, link, trimmer, log)
	if err != nil {
		b.close()
		return nil, err
	}
	b.parts = append(b.parts, lp.parts...)
	b.parts = append(b.parts, trimmer)
	b.closers = append(b.closers, lp.closers...)
	if link == nil {
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
	link.serve(opts, linkDeps{
		docker:       engine,
		sampler:      sampler,
		runner:       runner,
		restartAgent: restart,
		apps:         lp.apps,
		relay:        lp.relay,
		transfers:    lp.transfers,
		store:        st,
	}, log)
	link.sess.OnStateChange(func(bool) { trimmer.Poke() })
	b.parts = append(b.parts, link)
	return b, nil
}

// localParts are the parts that work with or without the cloud.
type localParts struct {
	parts     []part
	closers   []func()
	apps      *apps.Manager     // nil without an engine client
	relay     *logs.Relay       // non-nil
	transfers *transfer.Manager // non-nil
}

// buildLocalParts builds the log relay, the app reconciler (with the relay
// as its app log and hook) and the upload manager.
func buildLocalParts(opts Options, paths config.Paths, st *store.Store, dc *docker.Client, link *cloudLink,
	trimmer *memtrim.Trimmer, log zerolog.Logger) (*localParts, error) {
	lp := &localParts{}
	relayOpts := logs.RelayOptions{Serial: opts.Flock.SerialNumber, Store: st, Log: log}
	if dc != nil {
		relayOpts.Engine = dc
	}
	if link != nil {
		relayOpts.Link = link.sess
	}
	relay, err := logs.NewRelay(relayOpts)
	if err != nil {
		return nil, err
	}
	lp.relay = relay
	xfer, err := transfer.New(transfer.Options{
		Dir:          paths.BuildDir,
		Progress:     relay.TransferProgress,
		Message:      relay.Write,
		ClearHistory: relay.Clear,
		// The Studio sees on the app's log why an upload ended early; the
		// agent never reports TRANSFERING, so there is no state to undo.
		Dropped: func(name string, err error) { relay.Write(name, "File transfer failed: "+err.Error()) },
		Log:     log,
	})
	if err != nil {
		return nil, err
	}
	lp.transfers = xfer
	lp.closers = append(lp.closers, func() { _ = xfer.Close() })
	if dc != nil {
		appOpts := apps.Options{
			Store: st, Engine: dc, Flock: opts.Flock, Paths: paths, AppLog: relay, Transfers: xfer, Log: log,
			LANIP: lanIP, BuildExtension: opts.Flags.CompressedBuildExtension,
		}
		if link != nil {
			appOpts.Cloud, appOpts.Link = link.be, link.sess
		}
		if opts.appsOptions != nil {
			opts.appsOptions(&appOpts)
		}
		m, err := apps.New(appOpts)
		if err != nil {
			return nil, err
		}
		m.AddHook(relay)
		m.AddHook(trimmer)
		lp.apps = m
		lp.parts = append(lp.parts, m)
	} else {
		log.Error().Msg("no docker client: apps are not managed")
	}
	// The relay stops after the reconciler in no particular order; both
	// only need their context.
	lp.parts = append(lp.parts, relay)
	return lp, nil
}

// lanIP is the device's primary LAN address (DEVICE_LAN_IP): the first
// IPv4 address that is neither loopback nor an engine bridge.
func lanIP() string {
	all, err := system.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range system.IPv4Addrs(all) {
		if strings.HasPrefix(a.Interface, "veth") || strings.HasPrefix(a.Interface, "br-") {
			continue
		}
		return a.Net.IP.String()
	}
	return ""
}

// runParts runs every part until ctx ends or one of them fails, then
// cancels the rest and waits for them at most ShutdownTimeout. It returns
// the first failure, and the names of the parts that were still running
// when it gave up waiting: what they use must stay open.
func runParts(ctx context.Context, parts []part, log zerolog.Logger) (stragglers []string, err error) {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex // guards the fields below
		running  = map[string]bool{}
		firstErr error
	)
	for _, p := range parts {
		running[p.Name()] = true
		wg.Go(func() {
			err := p.Run(runCtx)
			mu.Lock()
			delete(running, p.Name())
			if err != nil && firstErr == nil {
				firstErr = fmt.Errorf("%s: %w", p.Name(), err)
			}
			mu.Unlock()
			if err != nil {
				cancel()
			}
		})
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
			mu.Lock()
			for n := range running {
				stragglers = append(stragglers, n)
			}
			mu.Unlock()
			slices.Sort(stragglers)
			log.Error().Strs("parts", stragglers).Dur("after", ShutdownTimeout).Msg("parts still running at shutdown")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	return stragglers, firstErr
}

// The parts satisfy the small interfaces their consumers declare.
var (
	_ apps.Engine      = (*docker.Client)(nil)
	_ apps.AppLog      = (*logs.Relay)(nil)
	_ apps.PostStarter = (*logs.Relay)(nil)
	_ apps.Stopper     = (*logs.Relay)(nil)
	_ apps.Forgetter   = (*logs.Relay)(nil)
	_ apps.Transfers   = (*transfer.Manager)(nil)
)
