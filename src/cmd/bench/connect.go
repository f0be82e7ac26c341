package main

import (
	"context"
	"fmt"
	"time"

	"reagent/src/devcloud"
)

// connectTimeout bounds one start → CONNECTED.
const connectTimeout = 60 * time.Second

// measureConnectAndIdle starts the agent plan.starts times (SIGTERM and
// wait between starts, same agent dir, so each start after the first finds
// its database) and takes the time from cmd.Start to devcloud's receipt of
// CONNECTED for that start's session. The last start stays up: after
// plan.settle connected, its RSS is the idle figure with 0 apps.
func (b *bench) measureConnectAndIdle(ctx context.Context) error {
	seen := map[uint64]bool{}
	var ds []time.Duration
	var last devcloud.StatusRecord
	for i := range b.plan.starts {
		p, err := b.restartAgent()
		if err != nil {
			return err
		}
		rec, err := b.awaitConnected(ctx, p, seen)
		if err != nil {
			return err
		}
		d := rec.At.Sub(p.started)
		ds = append(ds, d)
		last = rec
		b.logf("start %d/%d: CONNECTED after %s (session %d)", i+1, b.plan.starts, formatMs(d), rec.SessionID)
	}
	med := medianDuration(ds)
	f := b.rep.set(figConnect, msOf(med), formatMs(med))
	f.Samples = msSamples(ds)

	if err := sleep(ctx, time.Until(last.At.Add(b.plan.settle))); err != nil {
		return err
	}
	m, err := b.readAgentMem("idle-0-apps")
	if err != nil {
		return err
	}
	f = b.rep.set(figRSSIdle, float64(m.RSS), formatMiB(m.RSS))
	f.Details = memDetails(m)
	b.logf("RSS with 0 apps: %s (anon %s, file %s)", formatMiB(m.RSS), formatMiB(m.RSSAnon), formatMiB(m.RSSFile))
	return nil
}

// awaitConnected waits for the first CONNECTED status of a session of this
// device that is not in seen and arrived after p started; it adds the
// session to seen. devcloud stamps each status on arrival, so polling its
// store adds nothing to the figure.
func (b *bench) awaitConnected(ctx context.Context, p *agentProc, seen map[uint64]bool) (devcloud.StatusRecord, error) {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, r := range b.cloud.StatusHistory(b.serial) {
			if r.Status == "CONNECTED" && !seen[r.SessionID] && !r.At.Before(p.started) {
				seen[r.SessionID] = true
				return r, nil
			}
		}
		select {
		case <-p.done:
			return devcloud.StatusRecord{}, b.agentFailure(fmt.Errorf("before CONNECTED: %w", p.exitErr()))
		case <-ctx.Done():
			return devcloud.StatusRecord{}, b.agentFailure(fmt.Errorf("no CONNECTED within %v of the start: %w", connectTimeout, ctx.Err()))
		case <-tick.C:
		}
	}
}
