package apps

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"reagent/src/backend"
	"reagent/src/docker"
	"reagent/src/errdefs"
	"reagent/src/store"
)

// portAttempts is how often a start is tried when host ports are taken
// (the reference's 3).
const portAttempts = 3

// runStep starts the app (apps-lifecycle §3.7): STARTING → a fresh
// container of the installed version → RUNNING. It serves only RUNNING.
func (m *Manager) runStep(o *observation) *step {
	installed := o.installed
	return &step{
		name: "run",
		serves: func(t target) bool {
			return t.State == StateRunning && !(t.Update && t.Version != "" && t.Version != installed && o.key.Stage == StageProd)
		},
		run: func(ctx context.Context) error { return m.run(ctx, o) },
	}
}

func (m *Manager) run(ctx context.Context, o *observation) error {
	m.applog.Write(o.name, fmt.Sprintf("Starting %s...", o.req.AppName))
	if err := m.setState(ctx, o, StateStarting, "", nil); err != nil {
		return err
	}
	if ct := o.ours(); ct != nil {
		if err := m.stopAndRemove(ctx, o, ct); err != nil {
			return err
		}
	}
	dataDir, err := m.dataDir(o.key, o.req.AppName)
	if err != nil {
		return err
	}
	for _, d := range []string{dataDir, m.opts.Paths.SharedDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	id, err := m.createAndStart(ctx, o, dataDir)
	if err != nil {
		return err
	}
	// The post-start hooks (the log follower, …) run whatever happens
	// next: a container that exits at once still has its output followed
	// (the relay reads a stopped container to its end, and from its
	// first line on, so starting it after the report loses nothing). They
	// run after the RUNNING report because their own engine calls would
	// queue before it on a busy engine.
	o.w.postStarted = id
	defer m.postStart(ctx, o.name, id)
	ct, err := m.eng.InspectContainer(ctx, id)
	if err != nil {
		return err
	}
	o.ct = &ct
	if !ct.State.Running {
		// It exited at once; the next pass treats the exit.
		return nil
	}
	if o.key.Stage == StageProd {
		m.applog.Write(o.name, fmt.Sprintf("Now running app %s (%s)", o.req.AppName, o.installed))
	} else {
		m.applog.Write(o.name, fmt.Sprintf("Now running app %s", o.req.AppName))
	}
	return m.setState(ctx, o, StateRunning, "", func(a *store.Actual) {
		if v := o.installedVersion(); v != "" {
			a.Version = v
		}
	})
}

// dataDir is the app's data directory, mounted at /data:
// <appsDir>/<stage lower>/<name lower>.
func (m *Manager) dataDir(k Key, appName string) (string, error) {
	if err := ValidateAppName(appName); err != nil {
		return "", err
	}
	d := m.opts.Paths.AppDataDir(k.Stage, appName)
	root := filepath.Clean(m.opts.Paths.AppsDir) + string(filepath.Separator)
	if !strings.HasPrefix(filepath.Clean(d)+string(filepath.Separator), root) || filepath.Clean(d)+string(filepath.Separator) == root {
		return "", errdefs.InvalidArgument("data dir of %s is outside the apps dir", appName)
	}
	return d, nil
}

// createAndStart creates and starts the app's container, stepping down the
// privilege ladder when the engine refuses privileges, dropping the nvidia
// runtime when the engine lacks it, and moving host ports found busy.
func (m *Manager) createAndStart(ctx context.Context, o *observation, dataDir string) (string, error) {
	warn := func(s string) { m.applog.Write(o.name, s) }
	rules, err := parsePortRules(o.req.Ports)
	if err != nil {
		return "", err
	}
	exclude := map[protoPort]bool{}
	ports, err := m.allocatePorts(ctx, o.key, rules, exclude, warn)
	if err != nil {
		return "", err
	}
	m.savePorts(ctx, o, rules, ports)
	env, err := m.environment(ctx, o, ports, warn)
	if err != nil {
		return "", err
	}
	if err := writeEnvFiles(envDir(dataDir), env); err != nil {
		return "", err
	}
	for attempt := 1; ; attempt++ {
		level, caps := m.privileges()
		nvidia := m.nvidia()
		spec := containerSpec(specInput{
			Key: o.key, AppName: o.req.AppName, Serial: m.opts.Flock.SerialNumber, Image: o.installedRef(), Env: dockerEnv(env),
			DataDir: dataDir, Shared: m.opts.Paths.SharedDir, Ports: ports, Level: level, Caps: caps,
			Nvidia: nvidia, Stop: m.opts.StopTimeout, Exists: m.opts.PathExists,
		})
		id, err := m.eng.CreateContainer(ctx, spec)
		if err == nil {
			if err = m.eng.StartContainer(ctx, id); err != nil {
				m.discard(ctx, id)
			}
		}
		if err == nil {
			if level != levelPrivileged && !o.w.levelNoted {
				o.w.levelNoted = true
				m.applog.Write(o.name, fmt.Sprintf("the engine refuses privileged containers; running %s with %s",
					o.req.AppName, level.describe(len(caps))))
			}
			return id, nil
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		var pe *docker.PortInUseError
		switch {
		case errors.Is(err, docker.ErrRuntimeUnavailable) && nvidia:
			m.log.Warn().Err(err).Msg("the engine has no nvidia runtime; starting apps without it")
			m.setNoNvidia()
		case errors.Is(err, docker.ErrPrivilegeRefused) && level < levelPlain:
			m.stepDown(ctx, level, err)
		case errors.Is(err, docker.ErrPortInUse) && len(ports) > 0 && attempt < portAttempts:
			busy := uint16(0)
			if errors.As(err, &pe) {
				busy = uint16(pe.HostPort)
			}
			for _, p := range ports {
				if busy == 0 || p.Host == busy {
					exclude[protoPort{p.Protocol, p.Host}] = true
				}
			}
			if ports, err = m.allocatePorts(ctx, o.key, rules, exclude, warn); err != nil {
				return "", err
			}
			m.savePorts(ctx, o, rules, ports)
			if env, err = m.environment(ctx, o, ports, warn); err != nil {
				return "", err
			}
			if err := writeEnvFiles(envDir(dataDir), env); err != nil {
				return "", err
			}
		default:
			return "", err
		}
	}
}

// environment composes the app's variables and lets the PreStart hooks add
// theirs. The device's metadata is read now, not at start: the cloud may
// have renamed the device (DEVICE_NAME, DEVICE_URL) since.
func (m *Manager) environment(ctx context.Context, o *observation, ports []hostPort, warn func(string)) ([]envVar, error) {
	credKey, baseURL := "", ""
	if m.opts.Link != nil {
		credKey, baseURL = m.opts.Link.AppCredKey(), m.opts.Link.BaseURL()
	}
	vars := composeEnv(envInput{
		Key: o.key, AppName: o.req.AppName, Flock: m.flock(), CredKey: credKey, Epoch: o.req.AppCredEpoch,
		InstanceKey: o.req.InstanceKey, BaseURL: baseURL, LANIP: m.opts.LANIP(),
		Environment: o.req.Environment, Template: o.req.EnvironmentTemplate, HostPorts: ports,
	}, warn)
	env := Env{}
	for _, v := range vars {
		env[v.Name] = v.Value
	}
	if err := m.preStart(ctx, o.name, env); err != nil {
		return nil, err
	}
	out := vars[:0]
	for _, v := range vars {
		if val, ok := env[v.Name]; ok {
			out = append(out, envVar{Name: v.Name, Value: val})
			delete(env, v.Name)
		}
	}
	added := make([]string, 0, len(env))
	for n := range env {
		if validEnvName(n) {
			added = append(added, n)
		}
	}
	slices.Sort(added)
	for _, n := range added {
		out = append(out, envVar{Name: n, Value: escapeEnv(env[n])})
	}
	return out, nil
}

// savePorts stores the rules with their host ports upstream when they
// changed (update_app_on_device shape b), best effort: the next start
// tries again.
func (m *Manager) savePorts(ctx context.Context, o *observation, rules []backend.PortRule, ports []hostPort) {
	updated, changed := rulesWithHostPorts(rules, ports)
	if !changed || m.opts.Cloud == nil || m.opts.Link == nil || !m.opts.Link.Connected() {
		return
	}
	if err := m.opts.Cloud.SaveAppPorts(ctx, o.key.AppKey, o.key.Stage, updated); err != nil {
		m.log.Warn().Err(err).Uint64("app_key", o.key.AppKey).Str("stage", o.key.Stage).Msg("save host ports upstream")
	}
}

// stopAndRemove stops the app's container gracefully (SIGTERM, SIGKILL
// after StopTimeout) and removes it.
func (m *Manager) stopAndRemove(ctx context.Context, o *observation, ct *docker.Container) error {
	if ct.State.Running {
		if err := m.eng.StopContainer(ctx, ct.ID, m.opts.StopTimeout); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			return err
		}
	}
	m.stopped(ctx, o.name)
	if err := m.eng.RemoveContainer(ctx, ct.ID, true); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return err
	}
	if err := m.eng.WaitRemoved(ctx, ct.ID); err != nil {
		return err
	}
	o.ct = nil
	return nil
}

// discard removes a container that could not be started.
func (m *Manager) discard(ctx context.Context, id string) {
	if err := m.eng.RemoveContainer(ctx, id, true); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		m.log.Warn().Err(err).Str("id", id).Msg("remove container that did not start")
		return
	}
	_ = m.eng.WaitRemoved(ctx, id)
}

// privileges is the current rung of the ladder and the capabilities of
// levelCapabilities.
func (m *Manager) privileges() (privilegeLevel, []string) {
	m.privMu.Lock()
	defer m.privMu.Unlock()
	if m.caps == nil {
		caps, err := m.opts.Caps()
		if err != nil {
			m.log.Warn().Err(err).Msg("capability bounding set unknown")
			caps = []string{}
		}
		m.caps = caps
	}
	return m.level, m.caps
}

// stepDown moves to the next rung after the engine refused from, and
// remembers it for later containers.
func (m *Manager) stepDown(ctx context.Context, from privilegeLevel, cause error) {
	m.privMu.Lock()
	if m.level <= from {
		m.level = from + 1
	}
	l := m.level
	m.privMu.Unlock()
	m.log.Warn().Err(cause).Int("level", int(l)).Msg("the engine refuses the privileges; stepping down")
	if err := m.st.SetMeta(ctx, metaPrivilegeLevel, strconv.Itoa(int(l))); err != nil {
		m.log.Warn().Err(err).Msg("remember privilege level")
	}
}

// loadLevel reads the remembered rung.
func (m *Manager) loadLevel(ctx context.Context) {
	v, ok, err := m.st.GetMeta(ctx, metaPrivilegeLevel)
	if err != nil || !ok {
		return
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < int(levelPrivileged) || n > int(levelPlain) {
		return
	}
	m.privMu.Lock()
	m.level = privilegeLevel(n)
	m.privMu.Unlock()
}

func (m *Manager) nvidia() bool {
	m.privMu.Lock()
	off := m.noNvidia
	m.privMu.Unlock()
	return !off && m.opts.HasNvidia()
}

func (m *Manager) setNoNvidia() {
	m.privMu.Lock()
	m.noNvidia = true
	m.privMu.Unlock()
}
