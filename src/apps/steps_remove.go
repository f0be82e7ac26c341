package apps

import (
	"context"
	"errors"
	"fmt"
	"os"

	"reagent/src/store"
)

// removeStep removes the app (apps-lifecycle §3.10): DELETING → container
// and every tag of the app's image repository gone → REMOVED. The data
// dir is kept. It serves REMOVED and UNINSTALLED.
func (m *Manager) removeStep(o *observation) *step {
	return &step{
		name: "remove",
		serves: func(t target) bool {
			return t.State == StateRemoved || t.State == StateUninstalled
		},
		run: func(ctx context.Context) error { return m.remove(ctx, o) },
	}
}

func (m *Manager) remove(ctx context.Context, o *observation) error {
	m.applog.Clear(o.name)
	m.applog.Write(o.name, fmt.Sprintf("Starting removal process for %s...", o.req.AppName))
	if err := m.setState(ctx, o, StateDeleting, "", nil); err != nil {
		return err
	}
	if ct := o.ours(); ct != nil {
		if err := m.stopAndRemove(ctx, o, ct); err != nil {
			return err
		}
	}
	if _, err := m.eng.RemoveRepoImages(ctx, o.repo); err != nil {
		return err
	}
	o.installed = ""
	if err := m.setState(ctx, o, StateRemoved, "", func(a *store.Actual) { a.Version = "" }); err != nil {
		return err
	}
	m.applog.Write(o.name, fmt.Sprintf("Successfully removed %s!", o.req.AppName))
	return nil
}

// uninstallStep uninstalls the app (apps-lifecycle §3.11): the removal
// steps if anything is left, then the data dir (env files included), the
// uploaded source of a DEV app and the host-port reservations go, and the
// app is UNINSTALLED. It serves only UNINSTALLED.
func (m *Manager) uninstallStep(o *observation) *step {
	return &step{
		name:   "uninstall",
		serves: func(t target) bool { return t.State == StateUninstalled },
		run: func(ctx context.Context) error {
			if o.ours() != nil || o.installed != "" || (o.act.State != StateRemoved && o.act.State != StateUninstalled) {
				if err := m.remove(ctx, o); err != nil {
					return err
				}
			}
			if err := m.st.ReleaseHostPorts(ctx, o.key); err != nil {
				return err
			}
			dir, err := m.dataDir(o.key, o.req.AppName)
			if err != nil {
				return err
			}
			if err := os.RemoveAll(dir); err != nil {
				return fmt.Errorf("delete data of %s: %w", o.req.AppName, err)
			}
			if o.key.Stage == StageDev && m.opts.Paths.BuildDir != "" {
				if m.opts.Transfers != nil {
					m.opts.Transfers.Cancel(o.name) // an upload in progress would bring it back
				}
				if err := os.Remove(m.sourcePath(o.req.AppName)); err != nil && !errors.Is(err, os.ErrNotExist) {
					return fmt.Errorf("delete source of %s: %w", o.req.AppName, err)
				}
			}
			for _, what := range []string{metaFinished, metaBuilt, metaPublished} {
				if err := m.st.SetMeta(ctx, metaKey(o.key, what), ""); err != nil {
					return err
				}
			}
			m.forgotten(ctx, o.name)
			return m.setState(ctx, o, StateUninstalled, "", func(a *store.Actual) { a.Version = "" })
		},
	}
}
