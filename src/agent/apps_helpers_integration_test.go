package agent

// Helpers of the app reconciler's integration tests (apps_*_test.go): the
// real agent wiring against devcloud (router, backend, registry) and this
// machine's Docker engine, busybox images pushed to devcloud's registry,
// unique app keys, and cleanup of everything by the labels of those keys.

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	nx "github.com/gammazero/nexus/v3/wamp"
	"github.com/rs/zerolog"

	"reagent/src/apps"
	"reagent/src/config"
	"reagent/src/devcloud"
	"reagent/src/docker"
	"reagent/src/errdefs"
	"reagent/src/release"
	"reagent/src/store"
	"reagent/src/testimage"
)

// Busybox commands of the test apps. The service traps SIGTERM (sh as PID 1
// ignores it otherwise), writes where it was stopped gracefully and exits 0.
var (
	cmdService = []string{"sh", "-c", `trap 'echo term > /data/stopped; exit 0' TERM; echo started; while true; do sleep 1; done`}
	cmdCrash   = []string{"sh", "-c", `echo crashing; exit 1`}
	cmdJob     = []string{"sh", "-c", `echo done; exit 0`}
)

// fastApps shortens the reconciler's timings; tests wait on conditions,
// never on these.
func fastApps(o *apps.Options) {
	o.StopTimeout = 3 * time.Second
	o.RestartMin, o.RestartMax = 300*time.Millisecond, 3*time.Second
	o.RetryMin, o.RetryMax = 200*time.Millisecond, 2*time.Second
	o.ReportRetryMin, o.ReportRetryMax = 50*time.Millisecond, 500*time.Millisecond
}

// appsEnv is a devcloud, a device with its agent and the engine, for app
// tests.
type appsEnv struct {
	cloud    *devcloud.Cloud
	agent    *testAgent // nil until start; nil when the test runs the binary
	dc       *docker.Client
	serial   string
	ctx      context.Context
	registry string     // host:port the device pulls from
	gate     *gateProxy // with appsEnvOptions.gate
}

type appsEnvOptions struct {
	setup func(*config.Flock)
	apps  func(*apps.Options) // on top of fastApps
	// gate puts a gateProxy (e.gate) between the device and the registry.
	gate bool
}

// appsStart is a new devcloud with a connected in-process agent.
func appsStart(t *testing.T, o appsEnvOptions) *appsEnv {
	t.Helper()
	e := newAppsEnv(t, 3*time.Minute)
	e.start(t, o)
	return e
}

// newAppsEnv is a devcloud and the engine; no device yet. Everything the
// test runs must end within d.
func newAppsEnv(t *testing.T, d time.Duration) *appsEnv {
	t.Helper()
	cloud := startCloud(t)
	return &appsEnv{cloud: cloud, dc: engineClient(t), ctx: deadline(t, d), registry: cloud.RegistryHost()}
}

// start creates the device, runs its agent in-process and waits for
// CONNECTED. The device's containers and images go when the test ends.
func (e *appsEnv) start(t *testing.T, o appsEnvOptions) {
	t.Helper()
	if o.gate {
		e.gate = startGateProxy(t, e.cloud.RegistryHost())
		e.registry = e.gate.host
	}
	setup := func(fl *config.Flock) {
		if e.gate != nil {
			fl.DockerRegistryURL = e.gate.host + "/"
		}
		if o.setup != nil {
			o.setup(fl)
		}
	}
	knobs := func(ao *apps.Options) {
		fastApps(ao)
		if o.apps != nil {
			o.apps(ao)
		}
	}
	e.agent = startAgent(t, e.cloud, agentOptions{setup: setup, apps: knobs})
	e.serial = e.agent.flock.SerialNumber
	t.Cleanup(func() { e.cleanup(t) })
	if err := e.cloud.AwaitDeviceStatus(e.ctx, e.serial, "CONNECTED"); err != nil {
		t.Fatal(err)
	}
}

// newDevice creates a device for an agent the test runs itself (the
// binary): its .flock path and agent dir. The device's containers and
// images go when the test ends.
func (e *appsEnv) newDevice(t *testing.T) (flockPath, agentDir string) {
	t.Helper()
	dir := t.TempDir()
	fl, flockPath, err := e.cloud.NewDevice(dir)
	if err != nil {
		t.Fatal(err)
	}
	e.serial = fl.SerialNumber
	t.Cleanup(func() { e.cleanup(t) })
	return flockPath, filepath.Join(dir, "agent")
}

func engineClient(t *testing.T) *docker.Client {
	t.Helper()
	dc, err := docker.New(docker.Options{Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dc.Close() })
	return dc
}

// cleanup stops the in-process agent first (it would start a RUNNING app
// again whose container goes), opens the gate, then removes every
// container of the test's device and the images of its registry (unique
// per devcloud or gate: its port).
func (e *appsEnv) cleanup(t *testing.T) {
	t.Helper()
	if e.agent != nil {
		if err := e.agent.stop(); err != nil {
			t.Errorf("agent: %v", err)
		}
	}
	if e.gate != nil {
		e.gate.release()
	}
	removeDeviceContainers(t, e.dc, e.serial)
	removeRegistryImages(t, e.dc, e.registry)
}

func removeDeviceContainers(t *testing.T, dc *docker.Client, serial string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cts, err := dc.ListContainers(ctx, map[string]string{apps.LabelDevice: serial})
	if err != nil {
		t.Errorf("list test containers: %v", err)
		return
	}
	for _, c := range cts {
		if err := dc.RemoveContainer(ctx, c.ID, true); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("remove %s: %v", c.Name, err)
		}
	}
}

func removeRegistryImages(t *testing.T, dc *docker.Client, registryHost string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	imgs, err := dc.ListImages(ctx)
	if err != nil {
		t.Errorf("list images: %v", err)
		return
	}
	for _, img := range imgs {
		for _, tag := range img.RepoTags {
			if strings.HasPrefix(tag, registryHost+"/") {
				if err := dc.RemoveImage(ctx, tag, true); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
					t.Errorf("remove image %s: %v", tag, err)
				}
			}
		}
	}
}

// appKey is a fresh app key: container names are global on the engine and
// other packages' tests run next to these.
func appKey(t *testing.T) uint64 {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return 100000 + uint64(binary.BigEndian.Uint32(b[:])%800000)
}

// app describes one test app.
type app struct {
	key     uint64
	name    string
	version string
}

func (a app) container() string { return fmt.Sprintf("prod_%d_%s", a.key, strings.ToLower(a.name)) }

// push builds and pushes the app's image with cmd under version. A marker
// file makes its layer and config unique, so the engine downloads them
// (and a gate can hold them) rather than reusing blobs it already has.
func (e *appsEnv) push(t *testing.T, a app, version string, cmd []string) string {
	t.Helper()
	marker := fmt.Sprintf("%d %s %s %d\n", a.key, a.name, version, time.Now().UnixNano())
	ref, err := e.cloud.PushBusybox(e.ctx, a.key, a.name, version, testimage.Options{Cmd: cmd,
		Files: map[string]string{"/etc/reagent-test": marker}})
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// requested is the cloud's record for the app.
func (a app) requested(target string) devcloud.Requested {
	return devcloud.Requested{AppKey: a.key, AppName: a.name, Stage: "PROD", TargetState: target,
		PresentVersion: a.version, NewestVersion: a.version, DeviceOwnerAccountKey: 5, ReleaseKey: 1}
}

// request stores r in the cloud and calls request_app_state as system.
func (e *appsEnv) request(t *testing.T, r devcloud.Requested, extra nx.Dict) {
	t.Helper()
	if err := e.cloud.RequestApp(e.ctx, e.serial, r, extra); err != nil {
		t.Fatal(err)
	}
}

// states are the states the cloud received for the app, in order.
func (e *appsEnv) states(key uint64) []string {
	var out []string
	for _, r := range e.cloud.AppReports(e.serial) {
		if r.AppKey == key {
			out = append(out, r.State)
		}
	}
	return out
}

func (e *appsEnv) reports(key uint64) []devcloud.AppReport {
	var out []devcloud.AppReport
	for _, r := range e.cloud.AppReports(e.serial) {
		if r.AppKey == key {
			out = append(out, r)
		}
	}
	return out
}

func (e *appsEnv) await(t *testing.T, key uint64, state string) {
	t.Helper()
	if err := e.cloud.AwaitAppState(e.ctx, e.serial, key, "PROD", state); err != nil {
		t.Fatalf("%v; reports %v", err, e.states(key))
	}
}

// reconnect restarts the router and waits until the device reported
// CONNECTED from a new session, so its on-connect sequence (the apps sync
// among it) has run again.
func (e *appsEnv) reconnect(t *testing.T) {
	t.Helper()
	before, _ := e.cloud.DeviceStatus(e.serial)
	if err := e.cloud.StopRouter(); err != nil {
		t.Fatal(err)
	}
	if err := e.cloud.StartRouter(); err != nil {
		t.Fatal(err)
	}
	e.awaitCond(t, "CONNECTED from a new session", func() bool {
		st, ok := e.cloud.DeviceStatus(e.serial)
		return ok && st.Status == "CONNECTED" && st.SessionID != before.SessionID
	})
}

// requestedRow is the agent's stored request of a PROD app, read from its
// database next to the running agent.
func (e *appsEnv) requestedRow(t *testing.T, key uint64) store.Requested {
	t.Helper()
	st, err := store.Open(e.ctx, filepath.Join(e.agent.dir, "agent", "reagent.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	row, err := st.GetRequested(e.ctx, store.Key{AppKey: key, Stage: "PROD"})
	if err != nil {
		t.Fatal(err)
	}
	return row
}

// awaitCond polls cond until it holds or the test's deadline.
func (e *appsEnv) awaitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if err := await(e.ctx, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// containers lists the engine's containers of the app on this device.
func (e *appsEnv) containers(t *testing.T, key uint64) []docker.Container {
	t.Helper()
	cts, err := e.dc.ListContainers(e.ctx, map[string]string{apps.LabelAppKey: fmt.Sprint(key), apps.LabelDevice: e.serial})
	if err != nil {
		t.Fatal(err)
	}
	return cts
}

func (e *appsEnv) imageExists(t *testing.T, ref string) bool {
	t.Helper()
	ok, err := e.dc.ImageExists(e.ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// appLog is the app's log history (get_app_log_history as system).
func (e *appsEnv) appLog(t *testing.T, container string) []string {
	t.Helper()
	res, err := e.cloud.CallDevice(e.ctx, devcloud.SystemAuthID, e.serial, "get_app_log_history",
		nx.List{nx.Dict{"containerName": container}}, nil)
	if err != nil {
		t.Fatalf("get_app_log_history: %v", err)
	}
	var out []string
	if len(res.Arguments) == 1 {
		if l, ok := res.Arguments[0].([]any); ok {
			for _, v := range l {
				s, _ := v.(string)
				out = append(out, s)
			}
		}
	}
	return out
}

func containsLine(lines []string, substr string) bool {
	return slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, substr) })
}

// prodRef is the image the agent pulls for the app (the image name carries
// the registry host the device is configured with).
func prodRef(registryHost string, a app, version string) string {
	return devcloud.ProdImageRef(registryHost, release.Arch(), a.key, a.name, version)
}

// gateProxy stands between the engine and devcloud's registry and can hold
// blob downloads, so a pull is reliably in flight when a test needs one.
type gateProxy struct {
	host string
	mu   sync.Mutex
	// gate is closed to let blob requests through; nil: no gate.
	gate chan struct{}
	// held receives each blob request that waits at the gate.
	held chan string
	// active counts requests being served.
	active atomic.Int64
}

func startGateProxy(t *testing.T, registryHost string) *gateProxy {
	t.Helper()
	target, err := url.Parse("http://" + registryHost)
	if err != nil {
		t.Fatal(err)
	}
	g := &gateProxy{held: make(chan string, 64)}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ErrorLog = log.New(io.Discard, "", 0)
	mux := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.active.Add(1)
		defer g.active.Add(-1)
		g.mu.Lock()
		gate := g.gate
		g.mu.Unlock()
		if gate != nil && strings.Contains(r.URL.Path, "/blobs/") {
			select {
			case g.held <- r.URL.Path:
			default:
			}
			select {
			case <-gate:
			case <-r.Context().Done():
				return
			}
		}
		rp.ServeHTTP(w, r)
	})
	srv := httpServer(t, mux)
	g.host = srv
	return g
}

// hold makes blob downloads wait until release.
func (g *gateProxy) hold() {
	g.mu.Lock()
	g.gate = make(chan struct{})
	g.mu.Unlock()
}

func (g *gateProxy) release() {
	g.mu.Lock()
	if g.gate != nil {
		close(g.gate)
		g.gate = nil
	}
	g.mu.Unlock()
}

// httpServer serves h on a free loopback port until the test ends and
// returns host:port.
func httpServer(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}
