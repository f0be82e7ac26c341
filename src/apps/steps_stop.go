package apps

import (
	"context"
	"fmt"

	"reagent/src/store"
)

// stopStep stops the app (apps-lifecycle §3.9): STOPPING → graceful stop
// (SIGTERM, SIGKILL after StopTimeout) → container removed → PRESENT. A
// container that already exited and was recorded PRESENT (it finished) is
// removed without reports. It serves PRESENT, REMOVED and UNINSTALLED,
// and BUILT and PUBLISHED of a DEV app (the reference stops a running app
// before it builds): all need the container gone.
func (m *Manager) stopStep(o *observation) *step {
	quiet := !o.ct.State.Running && o.act.State == StatePresent
	return &step{
		name: "stop",
		serves: func(t target) bool {
			switch t.State {
			case StatePresent, StateRemoved, StateUninstalled, StateBuilt, StatePublished:
				return true
			}
			return false
		},
		run: func(ctx context.Context) error {
			if !quiet {
				m.applog.Write(o.name, "Received stop signal for "+o.req.AppName)
				if err := m.setState(ctx, o, StateStopping, "", nil); err != nil {
					return err
				}
			}
			if err := m.stopAndRemove(ctx, o, o.ct); err != nil {
				return err
			}
			if quiet {
				return nil
			}
			if err := m.setState(ctx, o, StatePresent, "", func(a *store.Actual) {
				if v := o.installedVersion(); v != "" {
					a.Version = v
				}
			}); err != nil {
				return err
			}
			m.applog.Write(o.name, fmt.Sprintf("Successfully stopped %s", o.req.AppName))
			return nil
		},
	}
}
