package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gammazero/nexus/v3/client"
	"github.com/gammazero/nexus/v3/wamp"

	"reagent/src/devcloud"
	"reagent/src/testimage"
)

// Commands of the bench apps. The idle one traps SIGTERM (sh as PID 1
// ignores it otherwise), so a stop is quick and clean. The chatty one
// prints consecutive numbers as fast as busybox can, so gaps in what a
// subscriber receives show lost lines; seq runs in the background so that
// the shell can take SIGTERM at once (the container ends with its PID 1).
var (
	cmdIdle   = []string{"sh", "-c", `trap "exit 0" TERM; while true; do sleep 1; done`}
	cmdChatty = []string{"sh", "-c", `trap "exit 0" TERM; seq 1 2000000000 & wait`}
)

// appWait bounds one app reaching a state (a pull from the local registry
// included).
const appWait = 3 * time.Minute

// benchApp is one PROD app of the run.
type benchApp struct {
	key   uint64
	name  string
	ports []map[string]any
}

const appVersion = "1.0.0"

func (a benchApp) requested(target string) devcloud.Requested {
	return devcloud.Requested{AppKey: a.key, AppName: a.name, Stage: "PROD", TargetState: target,
		PresentVersion: appVersion, NewestVersion: appVersion, DeviceOwnerAccountKey: 1, ReleaseKey: 1,
		Ports: a.ports}
}

func (a benchApp) container() string { return fmt.Sprintf("prod_%d_%s", a.key, a.name) }

// push builds the app's image and pushes it to devcloud's registry. A
// marker with the run id makes the image unique to this run, so removing
// it at the end never touches an image someone else uses.
func (b *bench) push(ctx context.Context, a benchApp, cmd []string) error {
	_, err := b.cloud.PushBusybox(ctx, a.key, a.name, appVersion, testimage.Options{
		Cmd:   cmd,
		Files: map[string]string{"/etc/reagent-bench": b.runID + "\n"},
	})
	if err != nil {
		return fmt.Errorf("push image of %s: %w", a.name, err)
	}
	return nil
}

// errNoApps: the agent binary has no app reconciler yet.
var errNoApps = errors.New("the agent does not register request_app_state (the app reconciler is not wired in)")

// request stores the app's requested state in devcloud and calls
// request_app_state, as the cloud does.
func (b *bench) request(ctx context.Context, a benchApp, target string) error {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := b.cloud.RequestApp(cctx, b.serial, a.requested(target), nil)
	var rpc client.RPCError
	if errors.As(err, &rpc) && rpc.Err != nil && rpc.Err.Error == wamp.ErrNoSuchProcedure {
		return errNoApps
	}
	return err
}

// awaitState waits until the app's latest report is state.
func (b *bench) awaitState(ctx context.Context, a benchApp, state string) error {
	ctx, cancel := context.WithTimeout(ctx, appWait)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- b.cloud.AwaitAppState(ctx, b.serial, a.key, "PROD", state) }()
	select {
	case err := <-done:
		if err != nil {
			return b.agentFailure(err)
		}
		return nil
	case <-b.agent.done:
		cancel()
		<-done
		return b.agentFailure(fmt.Errorf("waiting for %s %s: %w", a.name, state, b.agent.exitErr()))
	}
}

// idleApps are the apps of the idle figures: keys keyBase+1 … .
func (b *bench) idleApps() []benchApp {
	out := make([]benchApp, b.plan.apps)
	for i := range out {
		out[i] = benchApp{key: b.keyBase + 1 + uint64(i), name: fmt.Sprintf("idle%d", i+1)}
	}
	return out
}

// measureIdleApps brings plan.apps idle PROD apps to RUNNING, waits
// plan.settle, reads the RSS, then counts the agent's CPU time over
// plan.cpuWindow with nothing happening but the apps idling. The apps keep
// running for the steps after this one.
func (b *bench) measureIdleApps(ctx context.Context) error {
	if err := b.ensureAgent(ctx); err != nil {
		return err
	}
	apps := b.idleApps()
	for _, a := range apps {
		if err := b.push(ctx, a, cmdIdle); err != nil {
			return err
		}
	}
	t0 := time.Now()
	for _, a := range apps {
		if err := b.request(ctx, a, "RUNNING"); err != nil {
			return err
		}
	}
	for _, a := range apps {
		if err := b.awaitState(ctx, a, "RUNNING"); err != nil {
			return err
		}
	}
	b.logf("%d apps RUNNING after %v", len(apps), time.Since(t0).Round(time.Millisecond))

	if err := sleep(ctx, b.plan.settle); err != nil {
		return err
	}
	m, err := b.readAgentMem("idle-apps")
	if err != nil {
		return err
	}
	f := b.rep.set(figRSSApps, float64(m.RSS), formatMiB(m.RSS))
	f.Details = memDetails(m)
	b.logf("RSS with %d apps: %s (anon %s, file %s)", len(apps), formatMiB(m.RSS), formatMiB(m.RSSAnon), formatMiB(m.RSSFile))

	hz, fromKernel := clockTicks()
	c0, err := readCPUTicks(b.agent.pid())
	if err != nil {
		return err
	}
	w0 := time.Now()
	profiled := b.cpuProfile("idle-apps", b.plan.cpuWindow)
	if err := sleep(ctx, b.plan.cpuWindow); err != nil {
		return err
	}
	profiled()
	c1, err := readCPUTicks(b.agent.pid())
	if err != nil {
		return err
	}
	window := time.Since(w0)
	if b.agent.exited() {
		return b.agentFailure(b.agent.exitErr())
	}
	secs := float64(c1-c0) / float64(hz)
	pct := 100 * secs / window.Seconds()
	f = b.rep.set(figCPUApps, pct, fmt.Sprintf("%.3f %% (%.2f s CPU in %.0f s)", pct, secs, window.Seconds()))
	f.Details = map[string]any{"cpu_seconds": secs, "window_seconds": window.Seconds(), "ticks": c1 - c0,
		"clock_ticks_per_s": hz, "clock_ticks_from_auxv": fromKernel}
	b.logf("CPU with %d apps: %.2f s over %v = %.3f %% of one core", len(apps), secs, window.Round(time.Second), pct)
	b.saveProfiles("idle-apps-after-cpu")
	return nil
}
