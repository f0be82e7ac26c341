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

// appsEnv is a devcloud, an agent and the engine, for app tests.
type appsEnv struct {
	cloud  *devcloud.Cloud
	agent  *testAgent
	dc     *docker.Client
	serial string
	ctx    context.Context
}

type appsEnvOptions struct {
	setup func(*config.Flock)
	apps  func(*apps.Options)
}

func appsStart(t *testing.T, o appsEnvOptions) *appsEnv {
	t.Helper()
	cloud := startCloud(t)
	e := &appsEnv{cloud: cloud, dc: engineClient(t), ctx: deadline(t, 3*time.Minute)}
	knobs := func(ao *apps.Options) {
		fastApps(ao)
		if o.apps != nil {
			o.apps(ao)
		}
	}
	e.agent = startAgentOpts(t, cloud, agentTestOptions{setup: o.setup, apps: knobs})
	e.serial = e.agent.flock.SerialNumber
	t.Cleanup(func() { e.cleanup(t) })
	if err := cloud.AwaitDeviceStatus(e.ctx, e.serial, "CONNECTED"); err != nil {
		t.Fatal(err)
	}
	return e
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

// cleanup removes every container the test's device created, and the
// images of its registry (unique per devcloud: its port).
func (e *appsEnv) cleanup(t *testing.T) {
	t.Helper()
	removeDeviceContainers(t, e.dc, e.serial)
	removeRegistryImages(t, e.dc, e.cloud.RegistryHost())
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
