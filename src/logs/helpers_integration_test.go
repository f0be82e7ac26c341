package logs_test

// Helpers of the integration tests: a device (real wamp session against a
// devcloud router, real SQLite store, the log relay, the log procedures)
// and containers on the real Docker engine, labelled per test and removed
// by that label.

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gammazero/nexus/v3/client"
	nx "github.com/gammazero/nexus/v3/wamp"
	"github.com/rs/zerolog"

	"reagent/src/api"
	"reagent/src/backend"
	"reagent/src/config"
	"reagent/src/devcloud"
	"reagent/src/docker"
	"reagent/src/logs"
	"reagent/src/store"
	"reagent/src/system"
	"reagent/src/testimage"
	"reagent/src/wamp"
)

const testLabel = "io.ironflock.test"

// device is a relay connected through a real session to a devcloud.
type device struct {
	t      *testing.T
	cloud  *devcloud.Cloud
	flock  *config.Flock
	serial string
	st     *store.Store
	dbPath string
	engine *docker.Client
	label  string
	image  string

	// The current relay and its session; replaced by restart.
	mu    sync.Mutex
	relay *logs.Relay
	sess  *wamp.Session
	stop  func()
}

type deviceOptions struct {
	relay logs.RelayOptions // Serial, Store, Engine, Link, Log are filled in
}

func newDevice(t *testing.T, o deviceOptions) *device {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the Docker engine and a router")
	}
	cloud := devcloud.StartTest(t, devcloud.Options{Log: zerolog.Nop()})
	fl, _, err := cloud.NewDevice(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	engine, err := docker.New(docker.Options{Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = engine.Close() })
	d := &device{t: t, cloud: cloud, flock: fl, serial: fl.SerialNumber, engine: engine,
		dbPath: filepath.Join(t.TempDir(), "reagent.db")}
	d.label = fmt.Sprintf("%s-%d", strings.ReplaceAll(t.Name(), "/", "."), randKey(t))
	ctx := d.ctx(30 * time.Second)
	if err := engine.WaitReady(ctx); err != nil {
		t.Fatalf("docker engine not reachable: %v", err)
	}
	t.Cleanup(d.removeContainers)
	d.start(o)
	return d
}

func (d *device) ctx(timeout time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	d.t.Cleanup(cancel)
	return ctx
}

// start opens the store and runs a session and a relay until stop (or the
// end of the test).
func (d *device) start(o deviceOptions) {
	t := d.t
	t.Helper()
	st, err := store.Open(context.Background(), d.dbPath, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := wamp.New(wamp.Options{Flock: d.flock, Log: zerolog.Nop(), HeartbeatInterval: time.Hour,
		BackoffBase: 100 * time.Millisecond, BackoffCap: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	sess.SetBackend(backend.New(sess, d.flock, wamp.DefaultCallTimeout).ForSession(func() string { return "linux" }))
	ro := o.relay
	ro.Serial, ro.Store, ro.Engine, ro.Link, ro.Log = d.serial, st, d.engine, sess, zerolog.Nop()
	relay, err := logs.NewRelay(ro)
	if err != nil {
		t.Fatal(err)
	}
	api.Register(sess, api.Deps{
		Flock:  d.flock,
		Runner: noRunner{},
		Stats:  func(context.Context) (system.StatsPayload, error) { return system.StatsPayload{}, nil },
		Log:    zerolog.Nop(),
		Logs:   api.LogDeps{Relay: relay, Managed: logs.ManagedFromStore(st)},
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := relay.Run(ctx); err != nil {
			t.Errorf("relay: %v", err)
		}
	})
	wg.Go(func() { _ = sess.Run(ctx) })
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Error("relay or session did not stop")
			}
			if err := st.Close(); err != nil {
				t.Errorf("close store: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	d.mu.Lock()
	d.relay, d.sess, d.stop, d.st = relay, sess, stop, st
	d.mu.Unlock()
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := sess.WaitConnected(wctx); err != nil {
		t.Fatalf("the device did not connect: %v", err)
	}
}

// restart stops the relay, its session and the store, and starts new ones
// over the same database: what an agent restart does.
func (d *device) restart(o deviceOptions) {
	d.t.Helper()
	d.stop()
	d.start(o)
}

// manage records app as requested in the store, so the log procedures
// accept its name.
func (d *device) manage(key uint64, appName string) {
	d.t.Helper()
	_, err := d.st.PutRequested(d.ctx(10*time.Second), store.Requested{
		Key: store.Key{AppKey: key, Stage: "PROD"}, AppName: appName, TargetState: "RUNNING"})
	if err != nil {
		d.t.Fatal(err)
	}
}

// ensureImage pushes a busybox image to the cloud's registry and pulls it.
func (d *device) ensureImage() string {
	d.t.Helper()
	if d.image != "" {
		return d.image
	}
	ctx := d.ctx(2 * time.Minute)
	ref := fmt.Sprintf("%s/logtest/busybox-%d:1", d.cloud.RegistryHost(), randKey(d.t))
	// The ref in a file makes the image ID this test's own: an image
	// shared with another test would only be untagged by the removal.
	if err := testimage.PushBusybox(ctx, ref, testimage.Options{Cmd: []string{"sh"}, Files: map[string]string{"/id": ref}}); err != nil {
		d.t.Fatal(err)
	}
	if err := d.engine.PullImage(ctx, ref, nil, nil); err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() {
		// The containers go first: an image still in use is only
		// untagged, and left behind.
		d.removeContainers()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := d.engine.RemoveImage(ctx, ref, true); err != nil {
			d.t.Logf("remove image %s: %v", ref, err)
		}
	})
	d.image = ref
	return ref
}

// runContainer starts a labelled container called name running script.
func (d *device) runContainer(name, script string, tty bool) string {
	d.t.Helper()
	ctx := d.ctx(time.Minute)
	id, err := d.engine.CreateContainer(ctx, docker.ContainerSpec{
		Name: name, Image: d.ensureImage(), Cmd: []string{"sh", "-c", script}, Tty: tty,
		Labels: map[string]string{testLabel: d.label}, LogMaxSize: "10m", LogMaxFiles: 3,
	})
	if err != nil {
		d.t.Fatal(err)
	}
	if err := d.engine.StartContainer(ctx, id); err != nil {
		d.t.Fatal(err)
	}
	return id
}

func (d *device) removeContainers() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cts, err := d.engine.ListContainers(ctx, map[string]string{testLabel: d.label})
	if err != nil {
		d.t.Logf("list test containers: %v", err)
		return
	}
	for _, c := range cts {
		if err := d.engine.RemoveContainer(ctx, c.ID, true); err != nil {
			d.t.Logf("remove container %s: %v", c.Name, err)
		}
	}
}

func (d *device) currentRelay() *logs.Relay {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.relay
}

func (d *device) currentStore() *store.Store {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.st
}

// stored is every stored line of a log.
func (d *device) stored(name string) []store.LogLine {
	d.t.Helper()
	res, err := d.currentStore().QueryLogs(d.ctx(30*time.Second), name, store.LogQuery{})
	if err != nil {
		d.t.Fatal(err)
	}
	return res.Lines
}

// call calls a device procedure as system.
func (d *device) call(ctx context.Context, procedure string, args ...any) (*nx.Result, error) {
	return d.cloud.CallDevice(ctx, "system", d.serial, procedure, nx.List(args), nil)
}

// subscriber collects what a Studio session receives on a log topic.
type subscriber struct {
	mu     sync.Mutex
	events []received
	wake   chan struct{}
	cl     *client.Client
}

type received struct {
	at   time.Time
	args nx.List
}

func (d *device) subscribe(topic string) *subscriber {
	d.t.Helper()
	cl, err := d.cloud.Session(d.ctx(30*time.Second), "system")
	if err != nil {
		d.t.Fatal(err)
	}
	s := &subscriber{wake: make(chan struct{}, 1), cl: cl}
	err = cl.Subscribe(topic, func(ev *nx.Event) {
		s.mu.Lock()
		s.events = append(s.events, received{at: time.Now(), args: ev.Arguments})
		s.mu.Unlock()
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}, nil)
	if err != nil {
		d.t.Fatal(err)
	}
	return s
}

// lines are the text lines received so far, each with its arrival time.
func (s *subscriber) lines() ([]string, []time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	var at []time.Time
	for _, ev := range s.events {
		for _, a := range ev.args {
			if text, ok := a.(string); ok {
				for _, l := range strings.Split(text, "\n") {
					out = append(out, l)
					at = append(at, ev.at)
				}
			}
		}
	}
	return out, at
}

// waitFor polls cond until it holds, failing the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// randKey is a fresh app key: container names are global on the engine
// and other packages' tests run next to these.
func randKey(t *testing.T) uint64 {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return 100000 + uint64(binary.BigEndian.Uint32(b[:])%800000)
}

type noRunner struct{}

func (noRunner) Run(context.Context, string, ...string) error { return nil }
