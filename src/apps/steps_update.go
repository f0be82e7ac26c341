package apps

import (
	"context"
	"errors"
	"fmt"

	"reagent/src/errdefs"
	"reagent/src/store"
)

// updateStep moves a PROD app to a newer version (apps-lifecycle §3.12),
// with less downtime than the reference: UPDATING → pull the new tag while
// the old container keeps running → stop and remove the old container →
// version, release key and updateStatus pending_remote_confirmation
// recorded, PRESENT → the old tag removed → the stored request rewritten
// (present = newest = new version, request_update off), after which the
// level trigger runs the new version if RUNNING is wanted. It serves
// PRESENT and RUNNING while the same update is requested; anything else
// (or cancel_transition) cancels it, which records updateStatus canceled
// and keeps the old version.
func (m *Manager) updateStep(o *observation) *step {
	from, to := o.installed, o.version
	return &step{
		name: "update " + from + " → " + to,
		serves: func(t target) bool {
			return (t.State == StatePresent || t.State == StateRunning) && t.Update && t.Version == to
		},
		run: func(ctx context.Context) error { return m.update(ctx, o, from, to) },
	}
}

func (m *Manager) update(ctx context.Context, o *observation, from, to string) error {
	if err := m.setState(ctx, o, StateUpdating, "", nil); err != nil {
		return m.updateInterrupted(ctx, o, to, err)
	}
	m.applog.Clear(o.name)
	m.applog.Write(o.name, fmt.Sprintf("Initialising download for the app: %s...", o.req.AppName))
	if err := m.pull(ctx, o, to); err != nil {
		return m.updateInterrupted(ctx, o, to, err)
	}
	m.applog.Write(o.name, fmt.Sprintf("Succesfully installed the app: %s (Version: %s)", o.req.AppName, to))
	if ct := o.ours(); ct != nil {
		if err := m.stopAndRemove(ctx, o, ct); err != nil {
			return m.updateInterrupted(ctx, o, to, err)
		}
	}
	release := o.req.NewReleaseKey
	o.installed = to
	if err := m.setState(ctx, o, StatePresent, "", func(a *store.Actual) {
		a.Version = to
		if release != 0 {
			a.ReleaseKey = release
		}
		a.UpdateStatus = UpdatePending
	}); err != nil {
		return err
	}
	// The old image goes, best effort (the reference's too); a container
	// still using it keeps it.
	if from != "" && from != to {
		if err := m.eng.RemoveImage(ctx, o.ref(from), false); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			m.log.Info().Err(err).Uint64("app_key", o.key.AppKey).Str("stage", o.key.Stage).Msg("old image kept")
		}
	}
	return m.updateDone(ctx, o, to, release)
}

// updateDone rewrites the stored request so the update is not run again:
// present = newest = version = the new version, request_update off, the
// new release key. A request that arrived meanwhile wins.
func (m *Manager) updateDone(ctx context.Context, o *observation, to string, release uint64) error {
	m.reqMu.Lock()
	defer m.reqMu.Unlock()
	cur, err := m.st.GetRequested(ctx, o.key)
	if err != nil {
		return err
	}
	if cur.Generation != o.req.Generation {
		return nil
	}
	cur.PresentVersion, cur.NewestVersion, cur.Version, cur.RequestUpdate = to, to, to, false
	if release != 0 {
		cur.ReleaseKey = release
	}
	_, err = m.st.PutRequested(ctx, cur)
	return err
}

// updateInterrupted handles an update step that stopped early. Cancelled
// by a newer request that does not want this update any more (or by
// cancel_transition): updateStatus canceled, request_update cleared in the
// stored request so the update is not driven again, the old version kept,
// and the state the engine shows recorded. Other errors are failures.
func (m *Manager) updateInterrupted(ctx context.Context, o *observation, to string, err error) error {
	if !errors.Is(context.Cause(ctx), errSuperseded) {
		return err
	}
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	m.reqMu.Lock()
	cur, gerr := m.st.GetRequested(bctx, o.key)
	abandoned := gerr == nil && !(cur.RequestUpdate && targetVersion(cur) != to)
	if gerr == nil && cur.RequestUpdate && targetVersion(cur) == to {
		cur.RequestUpdate = false
		if _, perr := m.st.PutRequested(bctx, cur); perr != nil {
			m.log.Warn().Err(perr).Uint64("app_key", o.key.AppKey).Str("stage", o.key.Stage).Msg("clear request_update of a canceled update")
		}
	}
	m.reqMu.Unlock()
	if !abandoned {
		return err // another update replaces this one
	}
	state := StatePresent
	if ct := o.ours(); ct != nil && ct.State.Running {
		state = StateRunning
	}
	if serr := m.setState(bctx, o, state, "", func(a *store.Actual) { a.UpdateStatus = UpdateCanceled }); serr != nil {
		m.log.Warn().Err(serr).Uint64("app_key", o.key.AppKey).Str("stage", o.key.Stage).Msg("record canceled update")
	}
	m.applog.Write(o.name, fmt.Sprintf("The update of %s to version %s was canceled", o.req.AppName, to))
	if rerr := m.eng.RemoveImage(bctx, o.ref(to), false); rerr != nil && !errors.Is(rerr, errdefs.ErrNotFound) {
		m.log.Debug().Err(rerr).Uint64("app_key", o.key.AppKey).Str("stage", o.key.Stage).Msg("new image of canceled update kept")
	}
	return err
}
