package apps

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"reagent/src/backend"
	"reagent/src/config"
	"reagent/src/docker"
	"reagent/src/errdefs"
	"reagent/src/release"
	"reagent/src/store"
)

// Engine is what the reconciler needs from Docker (*docker.Client).
type Engine interface {
	ImageExists(ctx context.Context, ref string) (bool, error)
	PullImage(ctx context.Context, ref string, auth *docker.RegistryAuth, progress func(line []byte)) error
	BuildImage(ctx context.Context, buildContext io.Reader, opts docker.BuildOptions, progress func(line []byte)) error
	TagImage(ctx context.Context, src, dst string) error
	PushImage(ctx context.Context, ref string, auth *docker.RegistryAuth, progress func(line []byte)) error
	RemoveImage(ctx context.Context, ref string, force bool) error
	RemoveRepoImages(ctx context.Context, repo string) ([]string, error)
	CreateContainer(ctx context.Context, spec docker.ContainerSpec) (string, error)
	StartContainer(ctx context.Context, id string) error
	StopContainer(ctx context.Context, id string, timeout time.Duration) error
	RemoveContainer(ctx context.Context, id string, force bool) error
	WaitRemoved(ctx context.Context, id string) error
	InspectContainer(ctx context.Context, nameOrID string) (docker.Container, error)
	ListContainers(ctx context.Context, labels map[string]string) ([]docker.Container, error)
	WatchEvents(ctx context.Context, labels map[string]string, fn func(docker.Event)) error
}

// Cloud is what the reconciler needs from the cloud's procedures
// (*backend.Client).
type Cloud interface {
	GetRequestedAppStates(ctx context.Context) ([]backend.SyncRecord, error)
	GetRegistryToken(ctx context.Context, callerID uint64) (string, error)
	SaveAppPorts(ctx context.Context, appKey uint64, stage string, ports []backend.PortRule) error
	UpdateAppOnDevice(ctx context.Context, r backend.AppStateReport) error
}

// Link is the state of the connection to the cloud (*wamp.Session).
type Link interface {
	Connected() bool
	WaitConnected(ctx context.Context) error
	AppCredKey() string
	BaseURL() string
	// Flock is the .flock with the metadata the cloud changed since
	// start (device name, swarm, owner).
	Flock() config.Flock
}

// Transfers cancels an upload a state request supersedes
// (*transfer.Manager).
type Transfers interface {
	Cancel(containerName string) bool
}

// Clock gives the time and timers; tests may replace it.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives once d has passed, and a stop
	// function.
	After(d time.Duration) (<-chan time.Time, func() bool)
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }
func (realClock) After(d time.Duration) (<-chan time.Time, func() bool) {
	t := time.NewTimer(d)
	return t.C, t.Stop
}

// Options configure a Manager. Store, Engine and Flock are required; zero
// durations take the defaults.
type Options struct {
	Store     *store.Store
	Engine    Engine
	Flock     *config.Flock
	Paths     config.Paths // AppsDir, BuildDir, SharedDir are used
	Arch      string       // image arch incl. variant; "" → release.Arch()
	Cloud     Cloud        // nil when offline: reports stay in the outbox
	Link      Link         // nil when offline
	AppLog    AppLog       // nil → messages are dropped
	Transfers Transfers    // nil → no uploads to cancel
	Log       zerolog.Logger

	// BuildExtension is the extension of uploaded DEV sources
	// (-compressedBuildExtension): <BuildDir>/<AppName>.<ext>; "" → "tgz".
	BuildExtension string

	StopTimeout    time.Duration // SIGTERM → SIGKILL; 10 s
	HealthyAfter   time.Duration // a run this long resets the restart backoff; 10 min
	Resync         time.Duration // periodic look at every app; 5 min
	RestartMin     time.Duration // first automatic restart delay; 2 s
	RestartMax     time.Duration // 5 min
	RetryMin       time.Duration // first retry of a failed step; 2 s
	RetryMax       time.Duration // 5 min
	ReportRetryMin time.Duration // outbox redelivery; 500 ms
	ReportRetryMax time.Duration // 30 s
	PortMin        uint16        // host port pool; 40000
	PortMax        uint16        // 49999

	Clock Clock          // nil → the real one
	Rand  func() float64 // [0,1) jitter; nil → math/rand
	LANIP func() string  // DEVICE_LAN_IP; nil → none

	// Host probes; nil → the real ones. Tests replace them.
	PortFree   func(proto string, port uint16) bool
	Caps       func() ([]string, error) // capabilities of the agent's bounding set
	HasNvidia  func() bool
	PathExists func(path string) bool
}

// Manager owns every app: one worker per (app_key, stage) drives the app
// from its stored desired state to the engine, reports each step, and
// answers questions about the app.
type Manager struct {
	// Fixed at New.
	opts   Options
	st     *store.Store
	eng    Engine
	applog AppLog
	clock  Clock
	log    zerolog.Logger
	arch   string
	// outboxWake (cap 1) tells the sender a report was enqueued.
	outboxWake chan struct{}
	portFree   func(proto string, port uint16) bool

	// reqMu serialises read-modify-write of requested rows (requests, the
	// cloud sync and the worker's own bookkeeping after an update).
	reqMu sync.Mutex

	// privMu guards the privilege ladder state below.
	privMu   sync.Mutex
	level    privilegeLevel
	caps     []string // nil until read
	noNvidia bool     // the engine lacks the nvidia runtime

	mu sync.Mutex // guards the fields below
	// workers: one per app known to the manager; removed when forgotten.
	workers map[Key]*worker
	hooks   []Hook
	// runCtx is nil until Run; workers are started only under it, and no
	// longer once stopping is set (Run is waiting for them).
	runCtx   context.Context
	stopping bool
	wg       sync.WaitGroup
}

// New checks the options and builds a manager. It starts nothing.
func New(opts Options) (*Manager, error) {
	if opts.Store == nil || opts.Engine == nil || opts.Flock == nil {
		return nil, errdefs.InvalidArgument("apps: Options.Store, Engine and Flock are required")
	}
	if opts.Paths.AppsDir == "" {
		return nil, errdefs.InvalidArgument("apps: Options.Paths.AppsDir is required")
	}
	setDefaults(&opts)
	m := &Manager{
		opts:       opts,
		st:         opts.Store,
		eng:        opts.Engine,
		applog:     opts.AppLog,
		clock:      opts.Clock,
		log:        opts.Log.With().Str("component", "apps").Logger(),
		arch:       opts.Arch,
		outboxWake: make(chan struct{}, 1),
		portFree:   opts.PortFree,
		workers:    map[Key]*worker{},
	}
	if m.applog == nil {
		m.applog = nopLog{}
	}
	return m, nil
}

func setDefaults(o *Options) {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.StopTimeout, 10*time.Second)
	def(&o.HealthyAfter, 10*time.Minute)
	def(&o.Resync, 5*time.Minute)
	def(&o.RestartMin, 2*time.Second)
	def(&o.RestartMax, 5*time.Minute)
	def(&o.RetryMin, 2*time.Second)
	def(&o.RetryMax, 5*time.Minute)
	def(&o.ReportRetryMin, 500*time.Millisecond)
	def(&o.ReportRetryMax, 30*time.Second)
	if o.PortMin == 0 {
		o.PortMin = defaultPortMin
	}
	if o.PortMax == 0 {
		o.PortMax = defaultPortMax
	}
	if o.Arch == "" {
		o.Arch = release.Arch()
	}
	if o.BuildExtension == "" {
		o.BuildExtension = "tgz"
	}
	if o.Clock == nil {
		o.Clock = realClock{}
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
	if o.LANIP == nil {
		o.LANIP = func() string { return "" }
	}
	if o.PortFree == nil {
		o.PortFree = portFree
	}
	if o.Caps == nil {
		o.Caps = boundingCaps
	}
	if o.HasNvidia == nil {
		o.HasNvidia = hasNvidiaGPU
	}
	if o.PathExists == nil {
		o.PathExists = pathExists
	}
}

// Name names the manager among the agent's parts.
func (m *Manager) Name() string { return "apps" }

// Run drives every app until ctx ends: a worker per stored app (started
// before any cloud answer), the engine's events, the periodic resync and
// the outbox sender. It returns once every goroutine it started has
// exited; the containers keep running.
func (m *Manager) Run(ctx context.Context) error {
	m.loadLevel(ctx)
	m.mu.Lock()
	if m.runCtx != nil {
		m.mu.Unlock()
		return errors.New("apps: Run called twice")
	}
	m.runCtx = ctx
	for _, w := range m.workers {
		m.startLocked(w)
	}
	m.mu.Unlock()

	if err := m.wakeStored(ctx); err != nil && ctx.Err() == nil {
		m.log.Error().Err(err).Msg("read stored apps")
	}
	m.goRun(func() { m.watchEvents(ctx) })
	m.goRun(func() { m.resyncLoop(ctx) })
	m.goRun(func() { m.sendReports(ctx) })
	<-ctx.Done()
	m.mu.Lock()
	m.stopping = true
	m.mu.Unlock()
	m.wg.Wait()
	return nil
}

func (m *Manager) goRun(fn func()) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		fn()
	}()
}

// wakeStored sets every stored app's worker to its stored target.
func (m *Manager) wakeStored(ctx context.Context) error {
	rows, err := m.st.ListRequested(ctx)
	if err != nil {
		return err
	}
	for _, r := range rows {
		m.workerFor(r.Key).set(targetOf(r, false))
	}
	return nil
}

// pokeAll wakes every worker to look at its app again.
func (m *Manager) pokeAll() {
	m.mu.Lock()
	ws := make([]*worker, 0, len(m.workers))
	for _, w := range m.workers {
		ws = append(ws, w)
	}
	m.mu.Unlock()
	for _, w := range ws {
		w.poke()
	}
}

// resyncLoop pokes every app every Resync: the safety net behind the
// engine's events, not a polling loop per app.
func (m *Manager) resyncLoop(ctx context.Context) {
	for {
		c, stop := m.clock.After(m.opts.Resync)
		select {
		case <-ctx.Done():
			stop()
			return
		case <-c:
		}
		m.pokeAll()
	}
}

// watchEvents follows the engine's events of managed containers: every
// event pokes its app's worker, every (re)connect of the stream cleans up
// orphans and pokes all.
func (m *Manager) watchEvents(ctx context.Context) {
	err := m.eng.WatchEvents(ctx, map[string]string{LabelManaged: "true"}, func(ev docker.Event) {
		if ev.Action == docker.ActionResync {
			m.goRun(func() {
				if err := m.CleanupOrphans(ctx); err != nil && ctx.Err() == nil {
					m.log.Warn().Err(err).Msg("orphan cleanup")
				}
				m.pokeAll()
			})
			return
		}
		k, ok := keyFromLabels(ev.Labels)
		if !ok {
			return
		}
		m.mu.Lock()
		w := m.workers[k]
		m.mu.Unlock()
		if w != nil {
			w.poke()
		}
	})
	if err != nil && ctx.Err() == nil {
		m.log.Error().Err(err).Msg("engine events")
	}
}

// workerFor returns the app's worker, creating (and, under Run, starting) it.
func (m *Manager) workerFor(k Key) *worker {
	m.mu.Lock()
	defer m.mu.Unlock()
	w := m.workers[k]
	if w == nil {
		w = newWorker(m, k)
		m.workers[k] = w
		if m.runCtx != nil {
			m.startLocked(w)
		}
	}
	return w
}

func (m *Manager) startLocked(w *worker) {
	ctx := m.runCtx
	if m.stopping || ctx.Err() != nil || w.started {
		return
	}
	w.started = true
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		w.run(ctx)
		m.mu.Lock()
		if m.workers[w.key] == w && w.isDone() {
			delete(m.workers, w.key)
		}
		m.mu.Unlock()
	}()
}

// Request stores a validated desired state (the request_app_state
// handler's) and hands the app to its worker. It returns at once; the work
// is reported through update_app_on_device and the app's log.
func (m *Manager) Request(ctx context.Context, r Request) error {
	if err := r.Validate(); err != nil {
		return err
	}
	m.reqMu.Lock()
	prev, err := m.st.GetRequested(ctx, r.Key)
	if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		m.reqMu.Unlock()
		return fmt.Errorf("request %s: %w", keyString(r.Key), err)
	}
	row, err := r.toRequested(prev)
	if err != nil {
		m.reqMu.Unlock()
		return err
	}
	stored, err := m.st.PutRequested(ctx, row)
	m.reqMu.Unlock()
	if err != nil {
		return fmt.Errorf("request %s: %w", keyString(r.Key), err)
	}
	m.log.Info().Uint64("app_key", r.Key.AppKey).Str("stage", r.Key.Stage).Str("name", r.AppName).Str("target", stored.TargetState).
		Uint64("generation", stored.Generation).Bool("cancel", r.CancelTransition).Msg("requested")
	if r.Stage == StageDev && m.opts.Transfers != nil && (stored.TargetState == StatePresent || stored.TargetState == StateBuilt) {
		// A new build request supersedes an upload in progress
		// (apps-lifecycle §2.4 step 3).
		if act, ok := m.Actual(ctx, r.Key); !ok || act.State == StateRemoved || act.State == StateUninstalled ||
			act.State == StatePresent || act.State == StateFailed {
			m.opts.Transfers.Cancel(ContainerName(r.Key, r.AppName))
		}
	}
	w := m.workerFor(r.Key)
	w.setForget(false)
	w.set(targetOf(stored, r.CancelTransition))
	return nil
}

// Actual is the app's last achieved (and reported) state.
func (m *Manager) Actual(ctx context.Context, k Key) (store.Actual, bool) {
	a, err := m.st.GetActual(ctx, k)
	if err != nil {
		return store.Actual{}, false
	}
	return a, true
}

// InstallPrivilege reports whether a request for the app brings it onto the
// device (it is unknown, REMOVED or UNINSTALLED here) and so needs the
// INSTALL privilege rather than OPERATE.
func (m *Manager) InstallPrivilege(ctx context.Context, k Key) bool {
	a, ok := m.Actual(ctx, k)
	return !ok || a.State == StateRemoved || a.State == StateUninstalled
}

// Managed reports whether name is the container/log name of an app the
// manager knows (prod_42_x, dev_42_x, pub_42_x).
func (m *Manager) Managed(ctx context.Context, name string) bool {
	rows, err := m.st.ListRequested(ctx)
	if err != nil {
		return false
	}
	for _, r := range rows {
		if ContainerName(r.Key, r.AppName) == name || (r.Stage == StageDev && PublishLogName(r.AppKey, r.AppName) == name) {
			return true
		}
	}
	return false
}

// flock is the device's .flock as it is now: the link's copy, which has
// the metadata the cloud changed since start (device name, swarm, owner),
// else the one the Manager was built with.
func (m *Manager) flock() *config.Flock {
	if m.opts.Link == nil {
		return m.opts.Flock
	}
	fl := m.opts.Link.Flock()
	return &fl
}

// metaKey names a per-app fact in store meta.
func metaKey(k Key, what string) string {
	return "apps/" + k.Stage + "/" + strconv.FormatUint(k.AppKey, 10) + "/" + what
}
