package apps

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"reagent/src/docker"
	"reagent/src/errdefs"
	"reagent/src/store"
)

// Result tells the worker when to look at the app again.
type Result struct {
	// Requeue: a step was taken; look again at once.
	Requeue bool
	// RequeueAfter: wait this long, then look again (a restart delay);
	// zero with Requeue false means "until the next trigger".
	RequeueAfter time.Duration
}

// appKind says how an app runs; the step table is keyed by it so compose
// apps get steps of their own.
type appKind string

const (
	kindSingle  appKind = "single"
	kindCompose appKind = "compose"
)

// observation is an app as one reconcile pass sees it: desired state from
// the store, actual state from the store and the engine.
type observation struct {
	w         *worker
	key       Key
	req       store.Requested
	act       store.Actual // State REMOVED when none is stored
	hasAct    bool
	kind      appKind
	target    string // desired state
	name      string // container and log name
	repo      string // image repository
	version   string // the version to have (PROD)
	installed string // the version whose image is present ("" none; "latest" for DEV)
	ct        *docker.Container
	foreign   bool // a container with the app's name that the agent did not create
	// logName is where this pass's messages go when not the app's own log
	// (a publish writes to pub_<key>_<name>); "" → name.
	logName string
}

// logTo is the log the pass's messages and failures go to.
func (o *observation) logTo() string {
	if o.logName != "" {
		return o.logName
	}
	return o.name
}

// ref is the image reference of a version of the app.
func (o *observation) ref(version string) string { return ImageRef(o.repo, o.key.Stage, version) }

// ours is the app's own container, nil when there is none (or it is not ours).
func (o *observation) ours() *docker.Container {
	if o.foreign {
		return nil
	}
	return o.ct
}

// planKey selects the planner of an app: stage, desired state, kind.
// Compose apps add rows here.
type planKey struct {
	stage, target string
	kind          appKind
}

// planner decides the next step for an app, or that there is none (nil).
type planner func(m *Manager, ctx context.Context, o *observation) (*step, Result, error)

var planners = map[planKey]planner{
	{StageProd, StateRunning, kindSingle}:     planRunning,
	{StageProd, StatePresent, kindSingle}:     planPresent,
	{StageProd, StateRemoved, kindSingle}:     planRemoved,
	{StageProd, StateUninstalled, kindSingle}: planUninstalled,
	{StageDev, StateRunning, kindSingle}:      planRunning,
	{StageDev, StatePresent, kindSingle}:      planPresent,
	{StageDev, StateRemoved, kindSingle}:      planRemoved,
	{StageDev, StateUninstalled, kindSingle}:  planUninstalled,
	{StageDev, StateBuilt, kindSingle}:        planBuilt,
	{StageDev, StatePublished, kindSingle}:    planPublished,
}

// terminal marks an error that retrying cannot fix until a new request.
func terminal(format string, args ...any) error { return errdefs.InvalidArgument(format, args...) }

// Reconcile compares the stored desired state of k with what the engine
// shows and takes the next step. It is idempotent: when nothing differs it
// makes no engine mutation and no report. Workers call it; tests may call
// it directly while the Manager does not run.
func (m *Manager) Reconcile(ctx context.Context, k Key) (Result, error) {
	return m.reconcile(ctx, m.workerFor(k))
}

func (m *Manager) reconcile(ctx context.Context, w *worker) (res Result, err error) {
	defer func() {
		if r := recover(); r != nil {
			m.log.Error().Uint64("app_key", w.key.AppKey).Str("stage", w.key.Stage).Interface("panic", r).Str("stack", string(debug.Stack())).
				Msg("reconcile panicked")
			err = fmt.Errorf("internal error while reconciling %s: %v", keyString(w.key), r)
		}
	}()
	o, err := m.observe(ctx, w)
	if err != nil || o == nil {
		// Nothing desired, or the engine cannot be read: no report, retry.
		return Result{}, err
	}
	if w.terminalGen == o.req.Generation {
		return Result{}, nil
	}
	plan, ok := planners[planKey{o.key.Stage, o.target, o.kind}]
	if !ok {
		plan = planUnsupported
	}
	st, res, err := plan(m, ctx, o)
	if err != nil {
		if ctx.Err() != nil {
			return Result{}, ctx.Err() // superseded or shutting down: not a failure
		}
		return res, m.failed(ctx, o, "", err)
	}
	if st == nil {
		if o.target == StateRemoved && w.isForgetting() {
			return Result{}, m.forgetApp(ctx, o)
		}
		return res, nil
	}
	if !w.begin(st) {
		return Result{Requeue: true}, nil
	}
	m.log.Debug().Uint64("app_key", o.key.AppKey).Str("stage", o.key.Stage).Str("step", st.name).Str("target", o.target).Msg("step")
	if err := st.run(ctx); err != nil {
		if ctx.Err() != nil {
			return Result{}, ctx.Err()
		}
		return Result{}, m.failed(ctx, o, st.name, err)
	}
	return Result{Requeue: true}, nil
}

// observe reads the app's desired and actual state; nil when nothing is
// desired for it.
func (m *Manager) observe(ctx context.Context, w *worker) (*observation, error) {
	req, err := m.st.GetRequested(ctx, w.key)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	o := &observation{w: w, key: w.key, req: req, target: req.TargetState, kind: kindSingle,
		name: ContainerName(w.key, req.AppName), version: targetVersion(req)}
	o.repo = ImageRepo(m.opts.Flock.DockerRegistryURL, m.opts.Flock.DockerMainRepository, w.key, m.arch, req.AppName)
	if len(bytes.TrimSpace(req.DockerCompose)) > 0 && !bytes.Equal(bytes.TrimSpace(req.DockerCompose), []byte("null")) {
		o.kind = kindCompose
	}
	o.act, err = m.st.GetActual(ctx, w.key)
	switch {
	case err == nil:
		o.hasAct = true
	case errors.Is(err, errdefs.ErrNotFound):
		o.act = store.Actual{Key: w.key, AppName: req.AppName, State: StateRemoved}
	default:
		return nil, err
	}
	if o.kind == kindCompose {
		return o, nil
	}
	ct, err := m.eng.InspectContainer(ctx, o.name)
	switch {
	case err == nil:
		o.ct = &ct
		o.foreign = !ownedBy(ct.Labels, w.key, m.opts.Flock.SerialNumber)
	case !errors.Is(err, errdefs.ErrNotFound):
		return nil, err
	}
	if o.installed, err = m.installedVersion(ctx, o); err != nil {
		return nil, err
	}
	return o, nil
}

// installedVersion finds the version whose image is present: the one the
// app last installed, else the target version (a pull interrupted after
// the engine had the image).
func (m *Manager) installedVersion(ctx context.Context, o *observation) (string, error) {
	if o.key.Stage == StageDev {
		ok, err := m.eng.ImageExists(ctx, o.repo)
		if err != nil || !ok {
			return "", err
		}
		return "latest", nil
	}
	for _, v := range []string{o.act.Version, o.version} {
		if v == "" {
			continue
		}
		ok, err := m.eng.ImageExists(ctx, o.ref(v))
		if err != nil {
			return "", err
		}
		if ok {
			return v, nil
		}
	}
	return "", nil
}

// imageRef is the reference of the installed image.
func (o *observation) installedRef() string {
	if o.key.Stage == StageDev {
		return o.repo
	}
	return o.ref(o.installed)
}

// updatePending: PROD, request_update, and another version installed.
func (o *observation) updatePending() bool {
	return o.key.Stage == StageProd && o.req.RequestUpdate && o.version != "" && o.installed != "" &&
		o.installed != o.version
}

// needInstall returns the step that brings the image onto the device, an
// error when that is impossible, or nil when the image is there.
func (m *Manager) needInstall(o *observation) (*step, error) {
	if o.installed != "" {
		return nil, nil
	}
	if o.key.Stage == StageDev {
		return nil, terminal("%s has no image yet: build the app first (request BUILT)", o.name)
	}
	if o.version == "" {
		return nil, terminal("no version of %s to install: the request names none", o.name)
	}
	return m.pullStep(o), nil
}

// planRunning: install if needed, update if requested, then have exactly
// one running container of the installed version.
func planRunning(m *Manager, ctx context.Context, o *observation) (*step, Result, error) {
	if o.foreign {
		return nil, Result{}, foreignError(o)
	}
	if st, err := m.needInstall(o); st != nil || err != nil {
		return st, Result{}, err
	}
	if o.updatePending() {
		return m.updateStep(o), Result{}, nil
	}
	ct := o.ct
	switch {
	case ct == nil, ct.State.Status == "created":
		return m.runStep(o), Result{}, nil
	case ct.State.Running || ct.State.Status == "restarting" || ct.State.Status == "paused":
		if ct.Image != o.installedRef() {
			return m.runStep(o), Result{}, nil
		}
		o.w.restart.Healthy(ct.State.StartedAt, m.clock.Now())
		if o.act.State != StateRunning || o.act.Version != o.installedVersion() {
			return m.reportStep(o, StateRunning, "", nil), Result{}, nil
		}
		if o.w.postStarted != ct.ID {
			o.w.postStarted = ct.ID
			m.postStart(ctx, o.name, ct.ID)
		}
		return nil, Result{}, nil
	}
	return m.planExited(ctx, o)
}

// installedVersion is the version recorded in the actual row ("" for DEV).
func (o *observation) installedVersion() string {
	if o.key.Stage == StageDev {
		return ""
	}
	return o.installed
}

// planExited handles a container that ran and exited while RUNNING is
// desired. A PROD app that exited 0 has finished: PRESENT, left alone until
// the next request. Any other exit of a PROD app is a crash, restarted
// after the restart tracker's delay. A DEV app stays FAILED.
func (m *Manager) planExited(ctx context.Context, o *observation) (*step, Result, error) {
	ct := o.ct
	code := ct.State.ExitCode
	clean := code == 0 && !ct.State.OOMKilled
	gen, id, err := m.finished(ctx, o.key)
	if err != nil {
		return nil, Result{}, err
	}
	if id == ct.ID {
		if gen != o.req.Generation {
			// It finished for an earlier request; this one wants it again.
			return m.runStep(o), Result{}, nil
		}
		want := StatePresent
		if !clean {
			want = StateFailed
		}
		if o.act.State != want {
			return m.reportStep(o, want, o.act.LastError, nil), Result{}, nil
		}
		return nil, Result{}, nil
	}
	exitText := exitReason(ct.State)
	if clean || o.key.Stage == StageDev {
		// Done for this request: recorded, so neither events nor an agent
		// restart start it again.
		state, lastErr := StatePresent, ""
		if !clean {
			state, lastErr = StateFailed, exitText
		}
		return m.reportStep(o, state, lastErr, func(ctx context.Context) error {
			m.applog.Write(o.name, fmt.Sprintf("%s (%s) exited with status code: %d", o.name, o.key.Stage, code))
			m.stopped(ctx, o.name)
			return m.st.SetMeta(ctx, metaKey(o.key, metaFinished), strconv.FormatUint(o.req.Generation, 10)+" "+ct.ID)
		}), Result{}, nil
	}
	w := o.w
	if !ct.State.FinishedAt.Equal(w.crashSeen) {
		delay, reason := w.restart.Next(exitText, ct.State.StartedAt, ct.State.FinishedAt)
		w.crashSeen, w.restartAt = ct.State.FinishedAt, m.clock.Now().Add(delay)
		return m.reportStep(o, StateFailed, exitText, func(ctx context.Context) error {
			m.applog.Write(o.name, fmt.Sprintf("%s (%s) exited with status code: %d", o.name, o.key.Stage, code))
			m.applog.Write(o.name, reason)
			m.log.Info().Uint64("app_key", o.key.AppKey).Str("stage", o.key.Stage).Int("exit_code", code).Dur("delay", delay).
				Int("restarts", w.restart.Count()).Msg("app crashed; restart scheduled")
			m.stopped(ctx, o.name)
			return nil
		}), Result{}, nil
	}
	if wait := w.restartAt.Sub(m.clock.Now()); wait > 0 {
		if o.act.State != StateFailed {
			return m.reportStep(o, StateFailed, exitText, nil), Result{}, nil
		}
		return nil, Result{RequeueAfter: wait}, nil
	}
	return m.runStep(o), Result{}, nil
}

func exitReason(s docker.ContainerState) string {
	switch {
	case s.OOMKilled:
		return fmt.Sprintf("killed for lack of memory (status code %d)", s.ExitCode)
	case s.Status == "dead":
		return fmt.Sprintf("container is dead (status code %d)", s.ExitCode)
	}
	return fmt.Sprintf("exited with status code %d", s.ExitCode)
}

// metaFinished names the per-app fact "this container's exit was final
// for this generation": "<generation> <container id>".
const metaFinished = "finished"

// finished reads which container's exit was accepted as final, and for
// which request generation.
func (m *Manager) finished(ctx context.Context, k Key) (gen uint64, id string, err error) {
	v, ok, err := m.st.GetMeta(ctx, metaKey(k, metaFinished))
	if err != nil || !ok || v == "" {
		return 0, "", err
	}
	g, id, _ := strings.Cut(v, " ")
	gen, _ = strconv.ParseUint(g, 10, 64)
	return gen, id, nil
}

// planPresent: install if needed, update if requested, no container.
func planPresent(m *Manager, ctx context.Context, o *observation) (*step, Result, error) {
	if o.foreign {
		return nil, Result{}, foreignError(o)
	}
	if o.installed == "" && o.key.Stage == StageDev {
		return nil, Result{}, nil // nothing built yet: nothing to stop or keep
	}
	if st, err := m.needInstall(o); st != nil || err != nil {
		return st, Result{}, err
	}
	if o.updatePending() {
		return m.updateStep(o), Result{}, nil
	}
	if o.ct != nil {
		return m.stopStep(o), Result{}, nil
	}
	if o.act.State != StatePresent || o.act.Version != o.installedVersion() {
		return m.reportStep(o, StatePresent, "", nil), Result{}, nil
	}
	return nil, Result{}, nil
}

// planRemoved: no container, no image; data kept. A foreign container with
// the app's name is left alone.
func planRemoved(m *Manager, ctx context.Context, o *observation) (*step, Result, error) {
	if o.ours() != nil || o.installed != "" || o.act.State != StateRemoved {
		return m.removeStep(o), Result{}, nil
	}
	return nil, Result{}, nil
}

// planUninstalled: removed, and the app's data, env files and host ports gone.
func planUninstalled(m *Manager, ctx context.Context, o *observation) (*step, Result, error) {
	if o.ours() != nil || o.installed != "" || o.act.State != StateUninstalled {
		return m.uninstallStep(o), Result{}, nil
	}
	return nil, Result{}, nil
}

// planUnsupported covers combinations without steps yet. Compose apps fail
// visibly; other pairs (e.g. a PROD app asked for BUILT) are left as they
// are, as the reference does.
func planUnsupported(m *Manager, ctx context.Context, o *observation) (*step, Result, error) {
	if o.kind == kindCompose {
		return nil, Result{}, terminal("%s: compose apps are not supported by this agent yet", o.name)
	}
	m.log.Info().Uint64("app_key", o.key.AppKey).Str("stage", o.key.Stage).Str("target", o.target).Msg("no transition for this target; left as is")
	return nil, Result{}, nil
}

func foreignError(o *observation) error {
	return terminal("a container named %s exists that this agent did not create; remove or rename it", o.name)
}
