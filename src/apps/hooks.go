package apps

import "context"

// The reconciler deals only with containers; side concerns (log following,
// tunnels, …) plug in as hooks. A hook is a small value with a Name that
// joins a phase by implementing one of the interfaces below; the Manager
// finds them by type assertion and runs them in the order they were added.
// Signatures take plain values (app = the container name, e.g.
// prod_42_myapp), so implementers need not import apps.

// Env is an app's environment, name → value.
type Env = map[string]string

// Hook is the base of every hook.
type Hook interface{ Name() string }

// PreStarter runs before the app's container is created; it may add to env.
// An error fails the start.
type PreStarter interface {
	Hook
	PreStart(ctx context.Context, app string, env Env) error
}

// PostStarter runs once the container runs, and for a container found
// running after an agent restart. It must be idempotent.
type PostStarter interface {
	Hook
	PostStart(ctx context.Context, app, containerID string) error
}

// Stopper runs after every final stop of the app's container (stop,
// remove, exit). It must be idempotent.
type Stopper interface {
	Hook
	Stop(ctx context.Context, app string) error
}

// Forgetter runs when the app is uninstalled or forgotten: whatever the
// hook keeps about the app goes.
type Forgetter interface {
	Hook
	Forget(ctx context.Context, app string) error
}

// AppLog is where messages about an app go: its log topic and history
// (the log relay, src/logs). Methods never block for long and never fail:
// publishing while offline must not hold up a transition.
type AppLog interface {
	Write(name, text string)           // an agent message {"type":"build","chunk":text}
	Progress(name string, line []byte) // a raw docker JSON progress line
	Clear(name string)                 // LOGGER_CLEAR
}

// AddHook adds h to the hooks; call before Run.
func (m *Manager) AddHook(h Hook) {
	m.mu.Lock()
	m.hooks = append(m.hooks, h)
	m.mu.Unlock()
}

func (m *Manager) hookList() []Hook {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Hook(nil), m.hooks...)
}

// preStart runs the PreStarters; the first error fails the start.
func (m *Manager) preStart(ctx context.Context, app string, env Env) error {
	for _, h := range m.hookList() {
		if p, ok := h.(PreStarter); ok {
			if err := p.PreStart(ctx, app, env); err != nil {
				return err
			}
		}
	}
	return nil
}

// postStart runs the PostStarters; failures are logged, the app runs.
func (m *Manager) postStart(ctx context.Context, app, id string) {
	for _, h := range m.hookList() {
		if p, ok := h.(PostStarter); ok {
			if err := p.PostStart(ctx, app, id); err != nil {
				m.log.Warn().Err(err).Str("hook", h.Name()).Str("app", app).Msg("post-start hook")
			}
		}
	}
}

// stopped runs the Stoppers.
func (m *Manager) stopped(ctx context.Context, app string) {
	for _, h := range m.hookList() {
		if s, ok := h.(Stopper); ok {
			if err := s.Stop(ctx, app); err != nil {
				m.log.Warn().Err(err).Str("hook", h.Name()).Str("app", app).Msg("stop hook")
			}
		}
	}
}

// forgotten runs the Forgetters.
func (m *Manager) forgotten(ctx context.Context, app string) {
	for _, h := range m.hookList() {
		if f, ok := h.(Forgetter); ok {
			if err := f.Forget(ctx, app); err != nil {
				m.log.Warn().Err(err).Str("hook", h.Name()).Str("app", app).Msg("forget hook")
			}
		}
	}
}

// nopLog is the AppLog when none is given.
type nopLog struct{}

func (nopLog) Write(string, string)    {}
func (nopLog) Progress(string, []byte) {}
func (nopLog) Clear(string)            {}
