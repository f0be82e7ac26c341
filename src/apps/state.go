package apps

import (
	"context"
	"errors"
	"fmt"
	"time"

	"reagent/src/errdefs"
	"reagent/src/store"
)

// storeTimeout bounds the bookkeeping that must happen even after the step
// that needed it was cancelled (recording a cancelled update, a failure).
const storeTimeout = 10 * time.Second

// setState records the app's new actual state and, when that changed
// anything, reports it to the cloud. mutate may adjust the row (version,
// release key, update status) before it is stored. Every state step is
// persisted first, then reported.
func (m *Manager) setState(ctx context.Context, o *observation, state, lastErr string, mutate func(*store.Actual)) error {
	w := o.w
	w.actMu.Lock()
	defer w.actMu.Unlock()
	a, err := m.st.GetActual(ctx, o.key)
	if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return err
	}
	a.Key = o.key
	a.AppName = o.req.AppName
	a.State = state
	a.LastError = lastErr
	if mutate != nil {
		mutate(&a)
	}
	changed, err := m.st.PutActual(ctx, a)
	if err != nil {
		return err
	}
	o.act, o.hasAct = a, true
	if changed {
		m.log.Info().Uint64("app_key", o.key.AppKey).Str("stage", o.key.Stage).Str("name", o.req.AppName).Str("state", state).
			Str("version", a.Version).Str("error", lastErr).Msg("app state")
		m.reportLocked(ctx, w, o.req, a)
	}
	return nil
}

// reportStep is a step that only records (and reports) a state the engine
// already shows, after running extra (log lines, bookkeeping). It makes no
// engine mutation.
func (m *Manager) reportStep(o *observation, state, lastErr string, extra func(ctx context.Context) error) *step {
	return &step{name: "record " + state, serves: servesAlways, run: func(ctx context.Context) error {
		if extra != nil {
			if err := extra(ctx); err != nil {
				return err
			}
		}
		v := o.installedVersion()
		return m.setState(ctx, o, state, lastErr, func(a *store.Actual) {
			if v != "" {
				a.Version = v
			}
		})
	}}
}

// failed records a failed step: FAILED with the reason, the reason in the
// app's log. Terminal errors (ErrInvalidArgument: a bad reference, a
// foreign container holding the name, …) are not retried until a new
// request; it returns nil for them and err otherwise, which the worker
// retries with backoff.
func (m *Manager) failed(ctx context.Context, o *observation, stepName string, err error) error {
	reason := err.Error()
	if stepName == "run" {
		reason = "The app failed to start, reason: " + reason
	}
	m.applog.Write(o.logTo(), reason)
	m.log.Warn().Uint64("app_key", o.key.AppKey).Str("stage", o.key.Stage).Str("step", stepName).Err(err).Msg("app step failed")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	if serr := m.setState(sctx, o, StateFailed, reason, nil); serr != nil {
		m.log.Error().Err(serr).Uint64("app_key", o.key.AppKey).Str("stage", o.key.Stage).Msg("record failure")
	}
	if errors.Is(err, errdefs.ErrInvalidArgument) {
		o.w.terminalGen = o.req.Generation
		return nil
	}
	return err
}

// forgetApp ends a teardown: the app's rows, meta and host ports go, the
// hooks forget it, and its worker ends. Nothing is reported: the cloud no
// longer knows the app.
func (m *Manager) forgetApp(ctx context.Context, o *observation) error {
	w := o.w
	m.reqMu.Lock()
	defer m.reqMu.Unlock()
	cur, err := m.st.GetRequested(ctx, o.key)
	if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return err
	}
	if !w.isForgetting() || (err == nil && cur.Generation != o.req.Generation) {
		return nil // a new request arrived meanwhile
	}
	for _, fn := range []func() error{
		func() error { return m.st.ReleaseHostPorts(ctx, o.key) },
		func() error { return m.st.SetMeta(ctx, metaKey(o.key, metaFinished), "") },
		func() error { return m.st.SetMeta(ctx, metaKey(o.key, metaBuilt), "") },
		func() error { return m.st.SetMeta(ctx, metaKey(o.key, metaPublished), "") },
		func() error { return m.st.DeleteActual(ctx, o.key) },
		func() error { return m.st.DeleteRequested(ctx, o.key) },
	} {
		if err := fn(); err != nil {
			return fmt.Errorf("forget %s: %w", keyString(o.key), err)
		}
	}
	m.forgotten(ctx, o.name)
	m.log.Info().Uint64("app_key", o.key.AppKey).Str("stage", o.key.Stage).Str("name", o.req.AppName).Msg("app forgotten")
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
	m.mu.Lock()
	if m.workers[o.key] == w {
		delete(m.workers, o.key)
	}
	m.mu.Unlock()
	return nil
}
