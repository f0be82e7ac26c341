package apps

import (
	"context"
	"errors"
	"fmt"

	"reagent/src/backend"
	"reagent/src/errdefs"
	"reagent/src/store"
)

// SyncWithCloud is the "apps" step of the on-connect sequence
// (apps-lifecycle §4.2): it asks the cloud for the requested app states
// and — only if that call succeeded and decoded — stores every PROD record
// that changed (DEV rows stay the device's), tears down every local app,
// DEV or PROD, the cloud no longer lists, reports every remaining app's
// state, cleans up orphan containers and pokes every app.
func (m *Manager) SyncWithCloud(ctx context.Context) error {
	if m.opts.Cloud == nil {
		return nil
	}
	recs, err := m.opts.Cloud.GetRequestedAppStates(ctx)
	if err != nil {
		return fmt.Errorf("sync requested app states: %w", err)
	}
	listed := map[Key]bool{}
	for _, rec := range recs {
		k := Key{AppKey: rec.AppKey, Stage: rec.Stage}
		if k.AppKey == 0 || (k.Stage != StageDev && k.Stage != StageProd) {
			m.log.Warn().Uint64("app_key", rec.AppKey).Str("stage", rec.Stage).Msg("sync: record without a valid key ignored")
			continue
		}
		listed[k] = true
		if k.Stage != StageProd {
			continue
		}
		if err := m.applyRecord(ctx, k, rec); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			m.log.Warn().Err(err).Uint64("app_key", k.AppKey).Str("stage", k.Stage).Msg("sync: record not applied")
		}
	}

	local, err := m.localApps(ctx)
	if err != nil {
		return err
	}
	for k, name := range local {
		if !listed[k] {
			if err := m.teardown(ctx, k, name); err != nil {
				m.log.Warn().Err(err).Uint64("app_key", k.AppKey).Str("stage", k.Stage).Msg("sync: teardown")
			}
		}
	}
	rows, err := m.st.ListRequested(ctx)
	if err != nil {
		return err
	}
	for _, r := range rows {
		if listed[r.Key] {
			m.reportCurrent(ctx, r)
		}
	}
	if err := m.CleanupOrphans(ctx); err != nil {
		m.log.Warn().Err(err).Msg("orphan cleanup")
	}
	m.pokeAll()
	return nil
}

// applyRecord stores a PROD record unless it changes nothing, and hands
// the app to its worker.
func (m *Manager) applyRecord(ctx context.Context, k Key, rec backend.SyncRecord) error {
	m.reqMu.Lock()
	prev, err := m.st.GetRequested(ctx, k)
	found := err == nil
	if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		m.reqMu.Unlock()
		return err
	}
	row, err := fromSyncRecord(rec, prev)
	if err != nil || (found && sameRequest(prev, row)) {
		m.reqMu.Unlock()
		return err
	}
	stored, err := m.st.PutRequested(ctx, row)
	m.reqMu.Unlock()
	if err != nil {
		return err
	}
	m.log.Info().Uint64("app_key", k.AppKey).Str("stage", k.Stage).Str("target", stored.TargetState).Uint64("generation", stored.Generation).
		Msg("requested state from the cloud")
	w := m.workerFor(k)
	w.setForget(false)
	w.set(targetOf(stored, false))
	return nil
}

// localApps are the apps the store knows, with their names.
func (m *Manager) localApps(ctx context.Context) (map[Key]string, error) {
	out := map[Key]string{}
	acts, err := m.st.ListActual(ctx)
	if err != nil {
		return nil, err
	}
	for _, a := range acts {
		out[a.Key] = a.AppName
	}
	rows, err := m.st.ListRequested(ctx)
	if err != nil {
		return nil, err
	}
	for _, r := range rows {
		out[r.Key] = r.AppName
	}
	return out, nil
}

// teardown removes an app the cloud no longer lists (container and images;
// data kept) and then forgets it.
func (m *Manager) teardown(ctx context.Context, k Key, name string) error {
	w := m.workerFor(k)
	w.setForget(true)
	m.reqMu.Lock()
	row, err := m.st.GetRequested(ctx, k)
	switch {
	case errors.Is(err, errdefs.ErrNotFound):
		row = store.Requested{Key: k, AppName: name}
	case err != nil:
		m.reqMu.Unlock()
		return err
	}
	if row.TargetState != StateRemoved || errors.Is(err, errdefs.ErrNotFound) {
		row.TargetState = StateRemoved
		row, err = m.st.PutRequested(ctx, row)
	}
	m.reqMu.Unlock()
	if err != nil {
		return err
	}
	m.log.Info().Uint64("app_key", k.AppKey).Str("stage", k.Stage).Str("name", name).Msg("the cloud no longer lists the app: tearing it down")
	w.set(targetOf(row, false))
	return nil
}

// CleanupOrphans removes this device's managed containers of apps the
// store does not know (and old containers of renamed apps). Containers
// without our labels are never touched, whatever their name.
func (m *Manager) CleanupOrphans(ctx context.Context) error {
	// Containers first: one created after this list by a new request is
	// not seen, so it cannot be taken for an orphan.
	cts, err := m.eng.ListContainers(ctx, map[string]string{LabelManaged: "true", LabelDevice: m.opts.Flock.SerialNumber})
	if err != nil {
		return err
	}
	local, err := m.localApps(ctx)
	if err != nil {
		return err
	}
	for _, ct := range cts {
		k, ok := keyFromLabels(ct.Labels)
		if !ok {
			m.log.Warn().Str("container", ct.Name).Msg("managed container with unreadable labels left alone")
			continue
		}
		if name, known := local[k]; known && ct.Name == ContainerName(k, name) {
			continue
		}
		m.log.Info().Str("container", ct.Name).Uint64("app_key", k.AppKey).Str("stage", k.Stage).Msg("removing orphan container")
		if err := m.eng.RemoveContainer(ctx, ct.ID, true); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			m.log.Warn().Err(err).Str("container", ct.Name).Msg("remove orphan container")
		}
	}
	return nil
}
