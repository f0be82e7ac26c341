package apps

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"reagent/src/backend"
	"reagent/src/config"
	"reagent/src/docker"
	"reagent/src/errdefs"
	"reagent/src/store"
	"reagent/src/store/storetest"
)

// fakeEngine is an in-memory engine for this package's unit tests. It
// records every mutating call, so tests can assert that a pass made none.
type fakeEngine struct {
	mu         sync.Mutex
	now        func() time.Time
	registry   map[string]bool // refs a pull can get
	images     map[string]bool // local refs
	containers map[string]*docker.Container
	specs      map[string]docker.ContainerSpec // by container name, the last create
	nextID     int
	mutations  []string

	// Knobs.
	pullGate      chan struct{}                    // non-nil: pulls wait for it to close
	pullStarted   chan string                      // non-nil: told each pull's ref
	startGate     chan struct{}                    // non-nil: starts wait for it to close
	refuse        func(docker.ContainerSpec) error // non-nil: start fails with its error
	exitCode      map[string]int                   // container name → exits at once with this code
	pullErr       error                            // pulls fail with it
	removed       chan string                      // non-nil: told each removed container name
	buildGate     chan struct{}                    // non-nil: builds wait for it to close
	buildStart    chan string                      // non-nil: told each build's tag
	buildErr      error                            // builds fail with it
	pushErr       error                            // pushes fail with it
	onImageExists func()                           // non-nil: called by every ImageExists
	builds        []docker.BuildOptions            // every build, in order
}

func newFakeEngine() *fakeEngine {
	return &fakeEngine{
		now:        time.Now,
		registry:   map[string]bool{},
		images:     map[string]bool{},
		containers: map[string]*docker.Container{},
		specs:      map[string]docker.ContainerSpec{},
		exitCode:   map[string]int{},
	}
}

func (f *fakeEngine) record(format string, args ...any) {
	f.mutations = append(f.mutations, fmt.Sprintf(format, args...))
}

func (f *fakeEngine) Mutations() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.mutations...)
}

func (f *fakeEngine) ImageExists(_ context.Context, ref string) (bool, error) {
	f.mu.Lock()
	hook := f.onImageExists
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.images[ref], nil
}

func (f *fakeEngine) PullImage(ctx context.Context, ref string, _ *docker.RegistryAuth, progress func([]byte)) error {
	f.mu.Lock()
	f.record("pull %s", ref)
	gate, started, perr := f.pullGate, f.pullStarted, f.pullErr
	f.mu.Unlock()
	if started != nil {
		started <- ref
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if perr != nil {
		return perr
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.registry[ref] {
		return errdefs.NotFound("pull %s: manifest unknown", ref)
	}
	if progress != nil {
		progress([]byte(`{"status":"Pull complete"}`))
	}
	f.images[ref] = true
	return nil
}

func (f *fakeEngine) BuildImage(ctx context.Context, buildContext io.Reader, opts docker.BuildOptions, progress func([]byte)) error {
	if _, err := io.Copy(io.Discard, buildContext); err != nil {
		return err
	}
	f.mu.Lock()
	f.record("build %s", strings.Join(opts.Tags, ","))
	f.builds = append(f.builds, opts)
	gate, started, berr := f.buildGate, f.buildStart, f.buildErr
	f.mu.Unlock()
	if started != nil {
		started <- opts.Tags[0]
	}
	if progress != nil {
		progress([]byte(`{"stream":"Step 1/2 : FROM base"}`))
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if berr != nil {
		return berr
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, t := range opts.Tags {
		f.images[t] = true
	}
	return nil
}

func (f *fakeEngine) TagImage(_ context.Context, src, dst string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.images[src] {
		return errdefs.NotFound("no image %s", src)
	}
	f.record("tag %s %s", src, dst)
	f.images[dst] = true
	return nil
}

func (f *fakeEngine) PushImage(_ context.Context, ref string, _ *docker.RegistryAuth, progress func([]byte)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("push %s", ref)
	if !f.images[ref] {
		return errdefs.NotFound("no image %s", ref)
	}
	if f.pushErr != nil {
		return f.pushErr
	}
	if progress != nil {
		progress([]byte(`{"status":"Pushed"}`))
	}
	f.registry[ref] = true
	return nil
}

func (f *fakeEngine) RemoveImage(_ context.Context, ref string, _ bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.images[ref] {
		return errdefs.NotFound("no image %s", ref)
	}
	f.record("rmi %s", ref)
	delete(f.images, ref)
	return nil
}

func (f *fakeEngine) RemoveRepoImages(_ context.Context, repo string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for ref := range f.images {
		if ref == repo || strings.HasPrefix(ref, repo+":") {
			delete(f.images, ref)
			out = append(out, ref)
			f.record("rmi %s", ref)
		}
	}
	return out, nil
}

func (f *fakeEngine) CreateContainer(_ context.Context, spec docker.ContainerSpec) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.containers[spec.Name]; ok {
		return "", errdefs.Conflict("name %s in use", spec.Name)
	}
	if !f.images[spec.Image] {
		return "", errdefs.NotFound("no image %s", spec.Image)
	}
	f.nextID++
	id := fmt.Sprintf("%064d", f.nextID)
	f.containers[spec.Name] = &docker.Container{
		ID: id, Name: spec.Name, Image: spec.Image, Labels: spec.Labels, Env: spec.Env, Mounts: spec.Mounts,
		Ports: spec.Ports, Privileged: spec.Privileged, CapAdd: spec.CapAdd, Tty: spec.Tty,
		State: docker.ContainerState{Status: "created"}, Created: f.now(),
	}
	f.specs[spec.Name] = spec
	f.record("create %s", spec.Name)
	return id, nil
}

func (f *fakeEngine) byIDLocked(id string) *docker.Container {
	for _, c := range f.containers {
		if c.ID == id || c.Name == id {
			return c
		}
	}
	return nil
}

func (f *fakeEngine) StartContainer(ctx context.Context, id string) error {
	f.mu.Lock()
	gate := f.startGate
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.byIDLocked(id)
	if c == nil {
		return errdefs.NotFound("no container %s", id)
	}
	f.record("start %s", c.Name)
	if f.refuse != nil {
		if err := f.refuse(f.specs[c.Name]); err != nil {
			return err
		}
	}
	now := f.now()
	c.State = docker.ContainerState{Status: "running", Running: true, StartedAt: now}
	if code, ok := f.exitCode[c.Name]; ok {
		c.State = docker.ContainerState{Status: "exited", ExitCode: code, StartedAt: now, FinishedAt: now.Add(time.Millisecond)}
	}
	return nil
}

// exit makes a running container exit with code.
func (f *fakeEngine) exit(name string, code int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.containers[name]
	c.State.Running, c.State.Status, c.State.ExitCode, c.State.FinishedAt = false, "exited", code, f.now()
}

func (f *fakeEngine) StopContainer(_ context.Context, id string, _ time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.byIDLocked(id)
	if c == nil {
		return errdefs.NotFound("no container %s", id)
	}
	f.record("stop %s", c.Name)
	c.State.Running, c.State.Status, c.State.FinishedAt = false, "exited", f.now()
	return nil
}

func (f *fakeEngine) RemoveContainer(_ context.Context, id string, _ bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.byIDLocked(id)
	if c == nil {
		return errdefs.NotFound("no container %s", id)
	}
	f.record("rm %s", c.Name)
	delete(f.containers, c.Name)
	if f.removed != nil {
		select {
		case f.removed <- c.Name:
		default:
		}
	}
	return nil
}

func (f *fakeEngine) WaitRemoved(context.Context, string) error { return nil }

func (f *fakeEngine) InspectContainer(_ context.Context, nameOrID string) (docker.Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.byIDLocked(nameOrID)
	if c == nil {
		return docker.Container{}, errdefs.NotFound("no container %s", nameOrID)
	}
	return *c, nil
}

func (f *fakeEngine) ListContainers(_ context.Context, labels map[string]string) ([]docker.Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []docker.Container
	for _, c := range f.containers {
		ok := true
		for k, v := range labels {
			if c.Labels[k] != v {
				ok = false
			}
		}
		if ok {
			out = append(out, *c)
		}
	}
	return out, nil
}

func (f *fakeEngine) WatchEvents(ctx context.Context, _ map[string]string, fn func(docker.Event)) error {
	fn(docker.Event{Action: docker.ActionResync})
	<-ctx.Done()
	return ctx.Err()
}

// addForeign puts a container the agent did not create under name.
func (f *fakeEngine) addForeign(name string, labels map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	f.containers[name] = &docker.Container{ID: fmt.Sprintf("%064d", f.nextID), Name: name, Labels: labels,
		State: docker.ContainerState{Status: "running", Running: true}}
}

func (f *fakeEngine) container(name string) (docker.Container, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.containers[name]
	if !ok {
		return docker.Container{}, false
	}
	return *c, true
}

func (f *fakeEngine) hasImage(ref string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.images[ref]
}

// fakeCloud records reports and answers the backend calls.
type fakeCloud struct {
	mu      sync.Mutex
	reports []backend.AppStateReport
	ports   [][]backend.PortRule
	records []backend.SyncRecord
	syncErr error
	failN   int // the next failN reports fail
	tokens  []uint64
}

func (c *fakeCloud) GetRequestedAppStates(context.Context) ([]backend.SyncRecord, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.syncErr != nil {
		return nil, c.syncErr
	}
	return append([]backend.SyncRecord{}, c.records...), nil
}

func (c *fakeCloud) GetRegistryToken(_ context.Context, callerID uint64) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tokens = append(c.tokens, callerID)
	return fmt.Sprintf("token-%d", callerID), nil
}

func (c *fakeCloud) SaveAppPorts(_ context.Context, _ uint64, _ string, ports []backend.PortRule) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ports = append(c.ports, ports)
	return nil
}

func (c *fakeCloud) UpdateAppOnDevice(_ context.Context, r backend.AppStateReport) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failN > 0 {
		c.failN--
		return errdefs.Unavailable("router gone")
	}
	c.reports = append(c.reports, r)
	return nil
}

func (c *fakeCloud) states(appKey uint64) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, r := range c.reports {
		if r.AppKey == appKey {
			out = append(out, r.State)
		}
	}
	return out
}

func (c *fakeCloud) allReports() []backend.AppStateReport {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]backend.AppStateReport(nil), c.reports...)
}

// fakeLink is a link whose connection state the test sets.
type fakeLink struct {
	mu      sync.Mutex
	up      bool
	changed chan struct{}
	credKey string
	baseURL string
	flock   config.Flock // what the session knows now; setFlock changes it
}

func newFakeLink(up bool, fl config.Flock) *fakeLink {
	return &fakeLink{up: up, changed: make(chan struct{}), flock: fl}
}

func (l *fakeLink) Connected() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.up
}

func (l *fakeLink) set(up bool) {
	l.mu.Lock()
	l.up = up
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
}

func (l *fakeLink) WaitConnected(ctx context.Context) error {
	for {
		l.mu.Lock()
		up, ch := l.up, l.changed
		l.mu.Unlock()
		if up {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

func (l *fakeLink) Flock() config.Flock {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.flock
}

// setFlock is the cloud changing the device's metadata.
func (l *fakeLink) setFlock(change func(*config.Flock)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	change(&l.flock)
}

func (l *fakeLink) AppCredKey() string { return l.credKey }
func (l *fakeLink) BaseURL() string    { return l.baseURL }

// recLog records the app log messages.
type recLog struct {
	mu    sync.Mutex
	lines []string
}

func (r *recLog) Write(name, text string) {
	r.mu.Lock()
	r.lines = append(r.lines, name+": "+text)
	r.mu.Unlock()
}
func (r *recLog) Progress(string, []byte) {}
func (r *recLog) Clear(string)            {}

func (r *recLog) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.lines...)
}

func (r *recLog) count(substr string) int {
	n := 0
	for _, l := range r.all() {
		if strings.Contains(l, substr) {
			n++
		}
	}
	return n
}

// harness is a Manager over a fake engine, a fake cloud and a real store.
type harness struct {
	m     *Manager
	eng   *fakeEngine
	cloud *fakeCloud
	link  *fakeLink
	log   *recLog
	st    *store.Store
	flock *config.Flock
	paths config.Paths
}

func testFlock() *config.Flock {
	fl, err := config.ParseFlock([]byte(`{"name":"dev-1","secret":"s3cret","swarm_key":1,"device_key":2,
		"serial_number":"serial-1","device_endpoint_url":"ws://127.0.0.1:8080/ws-re-dev",
		"docker_registry_url":"registry.test:5000/","docker_main_repository":"apps/","environment":"local",
		"swarm_name":"swarm","swarm_owner_name":"owner"}`))
	if err != nil {
		panic(err)
	}
	return fl
}

func newHarness(t *testing.T, adjust func(*Options)) *harness {
	t.Helper()
	dir := t.TempDir()
	flags := config.Flags{AgentDir: dir, AppsDir: filepath.Join(dir, "apps")}
	h := &harness{eng: newFakeEngine(), cloud: &fakeCloud{}, log: &recLog{},
		st: storetest.Open(t), flock: testFlock(), paths: flags.Paths()}
	h.link = newFakeLink(true, *h.flock)
	opts := Options{
		Store: h.st, Engine: h.eng, Flock: h.flock, Paths: h.paths, Arch: "amd64", Cloud: h.cloud, Link: h.link,
		AppLog: h.log, Log: zerolog.Nop(),
		StopTimeout: time.Second, RestartMin: 10 * time.Millisecond, RestartMax: 80 * time.Millisecond,
		RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond, ReportRetryMin: time.Millisecond,
		ReportRetryMax: 5 * time.Millisecond, Rand: func() float64 { return 0.5 },
		PortFree:   func(string, uint16) bool { return true },
		Caps:       func() ([]string, error) { return []string{"CAP_CHOWN", "CAP_NET_ADMIN"}, nil },
		HasNvidia:  func() bool { return false },
		PathExists: func(string) bool { return false },
	}
	if adjust != nil {
		adjust(&opts)
	}
	m, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	h.m = m
	return h
}

// run runs the manager until the test ends.
func (h *harness) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Manager.Run did not return")
		}
	})
}

// ref is the PROD image reference of app k at version.
func (h *harness) ref(k Key, name, version string) string {
	return ImageRef(ImageRepo(h.flock.DockerRegistryURL, h.flock.DockerMainRepository, k, "amd64", name), k.Stage, version)
}

// request sends a request for app k/name.
func (h *harness) request(t *testing.T, r Request) {
	t.Helper()
	if err := h.m.Request(context.Background(), r); err != nil {
		t.Fatal(err)
	}
}

// settle runs Reconcile passes until the app converges (no manager loop).
func (h *harness) settle(t *testing.T, k Key) {
	t.Helper()
	for i := 0; i < 50; i++ {
		res, err := h.m.Reconcile(context.Background(), k)
		if err != nil {
			t.Fatalf("reconcile %s: %v", keyString(k), err)
		}
		if !res.Requeue {
			return
		}
	}
	t.Fatalf("%s did not converge in 50 passes", keyString(k))
}

func (h *harness) actual(t *testing.T, k Key) store.Actual {
	t.Helper()
	a, ok := h.m.Actual(context.Background(), k)
	if !ok {
		t.Fatalf("no actual state of %s", keyString(k))
	}
	return a
}

func (h *harness) outboxLen(t *testing.T) int {
	t.Helper()
	n, err := h.st.OutboxLen(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// outboxStates lists the states of the queued reports.
func (h *harness) outboxStates(t *testing.T) []string {
	t.Helper()
	es, err := h.st.PeekOutbox(context.Background(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		var r backend.AppStateReport
		if err := json.Unmarshal(e.Payload, &r); err != nil {
			t.Fatal(err)
		}
		out = append(out, r.State)
	}
	return out
}

// await polls cond until it holds or the deadline passes.
func await(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func prodApp(key uint64, name, target, version string) Request {
	return Request{Key: Key{AppKey: key, Stage: StageProd}, AppName: name, TargetState: target, NewestVersion: version,
		Version: version, RequestorAccountKey: 7}
}
