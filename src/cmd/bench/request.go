package main

import (
	"context"
	"fmt"
	"time"

	"reagent/src/devcloud"
)

// timedApp is the app of request → RUNNING: one port rule, like most apps.
func (b *bench) timedApp() benchApp {
	return benchApp{key: b.keyBase + 50, name: "timed", ports: []map[string]any{{
		"name": "web", "port": 8080, "protocol": "tcp", "main": true, "active": true, "public": false,
	}}}
}

// measureRequestToRunning installs the timed app (RUNNING once, so the
// image is cached, then PRESENT), then runs plan.rounds rounds. Each round
// times request_app_state RUNNING → the RUNNING report at devcloud, stops
// the app again (PRESENT, not timed), and times the same create+start done
// directly with the SDK, twice: the baseline and one with the
// agent's exact container settings. The order within a round alternates,
// so a drift of the engine's speed over the run falls on both sides.
func (b *bench) measureRequestToRunning(ctx context.Context) error {
	if err := b.ensureAgent(ctx); err != nil {
		return err
	}
	a := b.timedApp()
	if err := b.push(ctx, a, cmdIdle); err != nil {
		return err
	}
	if err := b.request(ctx, a, "RUNNING"); err != nil {
		return err
	}
	if err := b.awaitState(ctx, a, "RUNNING"); err != nil {
		return err
	}
	ins, err := b.dc.ContainerInspect(ctx, a.container())
	if err != nil {
		return fmt.Errorf("inspect the agent's container: %w", err)
	}
	plain, same, err := b.baselineSpecs(ins)
	if err != nil {
		return err
	}
	if err := b.stopApp(ctx, a); err != nil {
		return err
	}

	var agent, sdk, sdkSame, calls, startings []time.Duration
	for i := range b.plan.rounds {
		measureAgent := func() error {
			d, call, starting, err := b.agentRound(ctx, a)
			if err != nil {
				return err
			}
			agent, calls, startings = append(agent, d), append(calls, call), append(startings, starting)
			return nil
		}
		measureSDK := func() error {
			d, err := b.sdkCreateStart(ctx, plain, fmt.Sprintf("reagent-bench-%s-plain-%d", b.runID, i))
			if err != nil {
				return err
			}
			sdk = append(sdk, d)
			d, err = b.sdkCreateStart(ctx, same, fmt.Sprintf("reagent-bench-%s-same-%d", b.runID, i))
			if err != nil {
				return err
			}
			sdkSame = append(sdkSame, d)
			return nil
		}
		first, second := measureAgent, measureSDK
		if i%2 == 1 {
			first, second = measureSDK, measureAgent
		}
		if err := first(); err != nil {
			return err
		}
		if err := second(); err != nil {
			return err
		}
		b.logf("round %d/%d: agent %s, SDK %s, SDK with the agent's settings %s", i+1, b.plan.rounds,
			formatMs(agent[i]), formatMs(sdk[i]), formatMs(sdkSame[i]))
	}

	ma, ms, mss := medianDuration(agent), medianDuration(sdk), medianDuration(sdkSame)
	f := b.rep.set(figReqAgent, msOf(ma), formatMs(ma))
	f.Samples = msSamples(agent)
	// Where the agent's time goes: the call's answer, the STARTING report
	// (before any container work) and from there to RUNNING.
	f.Details = map[string]any{
		"request_call_median_ms":        msOf(medianDuration(calls)),
		"request_to_starting_median_ms": msOf(medianDuration(startings)),
		"starting_to_running_median_ms": msOf(medianDuration(diffs(agent, startings))),
	}
	f = b.rep.set(figReqSDK, msOf(ms), formatMs(ms))
	f.Samples = msSamples(sdk)
	f.Details = map[string]any{
		"same_settings_median_ms": msOf(mss), "same_settings_samples_ms": msSamples(sdkSame),
		"same_settings": fmt.Sprintf("privileged=%v, %d capabilities added, %d device mappings",
			same.host.Privileged, len(same.host.CapAdd), len(same.host.Devices)),
	}
	ratio := float64(ma) / float64(ms)
	f = b.rep.set(figReqRatio, ratio, fmt.Sprintf("%.3f×", ratio))
	f.Details = map[string]any{"ratio_to_same_settings": float64(ma) / float64(mss)}
	f.Note = fmt.Sprintf("%.3f× vs the SDK with the agent's privileges", float64(ma)/float64(mss))
	return nil
}

// agentRound times one request_app_state RUNNING of the installed, stopped
// app: from the call to devcloud's receipt of the RUNNING report. devcloud
// stores the requested state before (as RequestApp does), outside the
// timing: that is the cloud's work. It returns the time and how long the
// call itself took, then stops the app again.
func (b *bench) agentRound(ctx context.Context, a benchApp) (d, call, starting time.Duration, err error) {
	r := a.requested("RUNNING")
	r.CurrentState = "PRESENT"
	if err := b.cloud.SetRequested(b.serial, r); err != nil {
		return 0, 0, 0, err
	}
	after := b.lastReportSeq()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	t0 := time.Now()
	if _, err := b.cloud.CallDevice(cctx, devcloud.SystemAuthID, b.serial, "request_app_state", nil, devcloud.RequestKwargs(r)); err != nil {
		return 0, 0, 0, fmt.Errorf("request_app_state RUNNING: %w", err)
	}
	call = time.Since(t0)
	if err := b.awaitState(ctx, a, "RUNNING"); err != nil {
		return 0, 0, 0, err
	}
	rep, ok := b.firstReport(a, "RUNNING", after)
	if !ok {
		return 0, 0, 0, fmt.Errorf("no RUNNING report of %s after seq %d", a.name, after)
	}
	d = rep.At.Sub(t0)
	if st, ok := b.firstReport(a, "STARTING", after); ok {
		starting = st.At.Sub(t0)
	}
	if err := b.stopApp(ctx, a); err != nil {
		return 0, 0, 0, err
	}
	return d, call, starting, nil
}

// stopApp requests PRESENT (container stopped and removed) and waits for it.
func (b *bench) stopApp(ctx context.Context, a benchApp) error {
	if err := b.request(ctx, a, "PRESENT"); err != nil {
		return err
	}
	return b.awaitState(ctx, a, "PRESENT")
}

func (b *bench) lastReportSeq() int {
	last := 0
	for _, r := range b.cloud.AppReports(b.serial) {
		last = max(last, r.Seq)
	}
	return last
}

// firstReport is the app's first report of state after seq.
func (b *bench) firstReport(a benchApp, state string, after int) (devcloud.AppReport, bool) {
	for _, r := range b.cloud.AppReports(b.serial) {
		if r.Seq > after && r.AppKey == a.key && r.State == state {
			return r, true
		}
	}
	return devcloud.AppReport{}, false
}

// diffs is a[i]-b[i].
func diffs(a, b []time.Duration) []time.Duration {
	out := make([]time.Duration, 0, len(a))
	for i := range min(len(a), len(b)) {
		out = append(out, a[i]-b[i])
	}
	return out
}
