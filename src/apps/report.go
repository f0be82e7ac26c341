package apps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"reagent/src/backend"
	"reagent/src/errdefs"
	"reagent/src/store"
)

// Reports of app states go through the store's outbox: a state change is
// stored, then its update_app_on_device payload is enqueued, and one
// sender delivers the outbox in order whenever the link is up. A report
// made offline waits; a failed call is retried; neither ever holds up a
// transition.

// outboxBatch is how many reports the sender reads at a time.
const outboxBatch = 32

// reportLocked enqueues the state report of a (payload (a) of
// wamp-contract §6.4). Caller holds w.actMu. Reports of an app being torn
// down are not made: the cloud no longer knows it.
func (m *Manager) reportLocked(ctx context.Context, w *worker, req store.Requested, a store.Actual) {
	if w.isForgetting() {
		return
	}
	status := a.UpdateStatus
	switch {
	case status != UpdatePending:
		w.pendingSent = false
	case w.pendingSent:
		// The report carrying pending_remote_confirmation is ahead of this
		// one in the outbox and is delivered first; once it is, the status
		// is completed — what this report says (the reference flips it
		// after the call; the outbox keeps the order).
		status = UpdateCompleted
	default:
		w.pendingSent = true
	}
	fl := m.flock()
	r := backend.AppStateReport{
		AppKey:              a.AppKey,
		DeviceKey:           fl.DeviceKey,
		SwarmKey:            fl.SwarmKey, // the cloud may have moved the device
		SerialNumber:        fl.SerialNumber,
		Stage:               a.Stage,
		State:               a.State,
		DeviceToAppKey:      0,
		RequestorAccountKey: req.RequestorAccountKey,
		ReleaseKey:          a.ReleaseKey,
		RequestUpdate:       req.RequestUpdate,
		ReleaseBuild:        w.releaseBuild,
		UpdateStatus:        status,
	}
	b, err := json.Marshal(r)
	if err == nil {
		// A stored state is always reported, even if the step that made it
		// is being cancelled right now.
		_, err = m.st.Enqueue(context.WithoutCancel(ctx), backend.ProcUpdateAppOnDevice, b)
	}
	if err != nil {
		m.log.Error().Err(err).Uint64("app_key", a.Key.AppKey).Str("stage", a.Key.Stage).Str("state", a.State).Msg("enqueue state report")
		return
	}
	select {
	case m.outboxWake <- struct{}{}:
	default:
	}
}

// reportCurrent enqueues a report of the app's stored state (on connect).
func (m *Manager) reportCurrent(ctx context.Context, req store.Requested) {
	w := m.workerFor(req.Key)
	w.actMu.Lock()
	defer w.actMu.Unlock()
	a, err := m.st.GetActual(ctx, req.Key)
	if err != nil {
		return // never reached a state: its worker reports as it goes
	}
	m.reportLocked(ctx, w, req, a)
}

// sendReports delivers the outbox in order while the link is up. Offline
// (no cloud) it only waits for the end.
func (m *Manager) sendReports(ctx context.Context) {
	if m.opts.Cloud == nil || m.opts.Link == nil {
		<-ctx.Done()
		return
	}
	bo := backoff{min: m.opts.ReportRetryMin, max: m.opts.ReportRetryMax, rand: m.opts.Rand}
	for {
		if err := m.opts.Link.WaitConnected(ctx); err != nil {
			return
		}
		batch, err := m.st.PeekOutbox(ctx, outboxBatch)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			m.log.Warn().Err(err).Msg("read outbox")
			if !m.sleep(ctx, bo.next()) {
				return
			}
			continue
		}
		if len(batch) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-m.outboxWake:
			}
			continue
		}
		for _, e := range batch {
			err := m.deliver(ctx, e)
			if ctx.Err() != nil {
				return
			}
			if err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) {
				if merr := m.st.MarkAttempt(ctx, e.ID); merr != nil && !errors.Is(merr, errdefs.ErrNotFound) {
					m.log.Warn().Err(merr).Msg("count report attempt")
				}
				d := bo.next()
				m.log.Debug().Err(err).Uint64("id", e.ID).Dur("retry_in", d).Msg("report not delivered")
				if !m.sleep(ctx, d) {
					return
				}
				break
			}
			if err != nil {
				// The cloud rejects this report for good; keeping it would
				// block every later one.
				m.log.Error().Err(err).Uint64("id", e.ID).Str("procedure", e.Procedure).Msg("report rejected; dropped")
			}
			bo.reset()
			if aerr := m.st.AckOutbox(ctx, e.ID); aerr != nil {
				m.log.Warn().Err(aerr).Uint64("id", e.ID).Msg("acknowledge report")
			}
		}
	}
}

// deliver sends one outbox entry.
func (m *Manager) deliver(ctx context.Context, e store.Outgoing) error {
	if e.Procedure != backend.ProcUpdateAppOnDevice {
		return errdefs.InvalidArgument("outbox entry %d: unknown procedure %s", e.ID, e.Procedure)
	}
	var r backend.AppStateReport
	if err := json.Unmarshal(e.Payload, &r); err != nil {
		return errdefs.InvalidArgument("outbox entry %d: %v", e.ID, err)
	}
	if err := m.opts.Cloud.UpdateAppOnDevice(ctx, r); err != nil {
		return fmt.Errorf("report %s of app %d/%s: %w", r.State, r.AppKey, r.Stage, err)
	}
	if r.UpdateStatus == UpdatePending {
		m.updateConfirmed(ctx, Key{AppKey: r.AppKey, Stage: r.Stage})
	}
	return nil
}

// updateConfirmed: the cloud has the report of a finished update, so the
// update status becomes completed (stored, not reported by itself).
func (m *Manager) updateConfirmed(ctx context.Context, k Key) {
	m.mu.Lock()
	w := m.workers[k]
	m.mu.Unlock()
	if w == nil {
		return
	}
	w.actMu.Lock()
	defer w.actMu.Unlock()
	a, err := m.st.GetActual(ctx, k)
	if err != nil || a.UpdateStatus != UpdatePending {
		return
	}
	a.UpdateStatus = UpdateCompleted
	if _, err := m.st.PutActual(ctx, a); err != nil {
		m.log.Warn().Err(err).Uint64("app_key", k.AppKey).Str("stage", k.Stage).Msg("record confirmed update")
	}
}

// sleep waits d or until ctx ends (false).
func (m *Manager) sleep(ctx context.Context, d time.Duration) bool {
	c, stop := m.clock.After(d)
	defer stop()
	select {
	case <-ctx.Done():
		return false
	case <-c:
		return true
	}
}
