package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/rs/zerolog"

	"reagent/src/errdefs"
	"reagent/src/testimage"
)

// Integration test environment: the real engine of this machine, a
// go-containerregistry registry on 127.0.0.1:0 per test, and busybox images
// pushed there. Everything a test creates carries testLabel=<unique> and is
// removed by ID in t.Cleanup.

const testLabel = "io.ironflock.test"

// runID keeps label values and repository names of concurrent runs apart.
var runID = fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano()%1e9)

type env struct {
	t        *testing.T
	c        *Client
	label    string // value of testLabel for this test
	registry string // host:port of the test registry
	reg      *regHooks
}

// regHooks let a test interfere with the registry's blob downloads.
type regHooks struct {
	// When stallBlobs is set, blob downloads trickle (see trickle);
	// blobStarted/blobAborted report their start and the puller leaving.
	stallBlobs  atomic.Bool
	blobStarted chan struct{}
	blobAborted chan struct{}
	done        chan struct{}
}

// sub is the env for a subtest: same engine, registry and label, but
// failures and cleanups belong to t.
func (e *env) sub(t *testing.T) *env {
	return &env{t: t, c: e.c, label: e.label, registry: e.registry, reg: e.reg}
}

func newEnv(t *testing.T) *env {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the Docker engine")
	}
	// Tests wait on the engine far more than they compute, and share
	// nothing but the engine (labels, names and registries are their own).
	t.Parallel()
	e := &env{
		t:     t,
		label: fmt.Sprintf("%s-%s", strings.ReplaceAll(t.Name(), "/", "."), runID),
		reg: &regHooks{
			blobStarted: make(chan struct{}, 16),
			blobAborted: make(chan struct{}, 16),
			done:        make(chan struct{}),
		},
	}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if e.reg.stallBlobs.Load() && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:") {
			e.reg.trickle(w, r)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		close(e.reg.done)
		srv.Close()
	})
	e.registry = strings.TrimPrefix(srv.URL, "http://")
	e.c = e.client("")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.c.WaitReady(ctx); err != nil {
		t.Fatalf("docker engine not reachable: %v", err)
	}
	return e
}

// trickle answers a blob request with a byte now and then, forever, and
// reports when the puller hangs up. A registry that sends nothing at all
// would not do: engines up to 20.10 read blobs without a context and notice
// a cancelled pull only when a read returns.
func (h *regHooks) trickle(w http.ResponseWriter, r *http.Request) {
	h.blobStarted <- struct{}{}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", "100000000")
	w.WriteHeader(http.StatusOK)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			h.blobAborted <- struct{}{}
			return
		case <-h.done:
			return
		case <-tick.C:
			if _, err := w.Write([]byte{0}); err != nil {
				h.blobAborted <- struct{}{}
				return
			}
			w.(http.Flusher).Flush()
		}
	}
}

// client makes a client for host ("" = default) with the test's logger.
func (e *env) client(host string) *Client {
	e.t.Helper()
	c, err := New(Options{Host: host, Log: zerolog.New(zerolog.NewTestWriter(e.t)).Level(zerolog.InfoLevel)})
	if err != nil {
		e.t.Fatal(err)
	}
	c.retryMin, c.retryMax = 20*time.Millisecond, 200*time.Millisecond
	e.t.Cleanup(func() { c.Close() })
	return c
}

func (e *env) ctx(d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	e.t.Cleanup(cancel)
	return ctx
}

func (e *env) labels(extra ...string) map[string]string {
	m := map[string]string{testLabel: e.label}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i]] = extra[i+1]
	}
	return m
}

// ref names an image of this test in the test registry.
func (e *env) ref(repo, tag string) string {
	return fmt.Sprintf("%s/reagent-test/%s:%s", e.registry, repo, tag)
}

// push builds a busybox image carrying the test label and pushes it.
func (e *env) push(ref string, opts testimage.Options) {
	e.t.Helper()
	if opts.Labels == nil {
		opts.Labels = map[string]string{}
	}
	opts.Labels[testLabel] = e.label
	if err := testimage.PushBusybox(e.ctx(30*time.Second), ref, opts); err != nil {
		e.t.Fatalf("push %s: %v", ref, err)
	}
}

// removeImageLater removes the local image ref points at, by ID, when the
// test ends.
func (e *env) removeImageLater(ref string) string {
	e.t.Helper()
	insp, err := e.c.api.ImageInspect(e.ctx(10*time.Second), ref)
	if err != nil {
		e.t.Fatalf("inspect image %s: %v", ref, err)
	}
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, err := e.c.api.ImageRemove(ctx, insp.ID, image.RemoveOptions{Force: true, PruneChildren: true})
		if err != nil && !errors.Is(classify(err), errdefs.ErrNotFound) {
			e.t.Errorf("cleanup image %s: %v", insp.ID, err)
		}
	})
	return insp.ID
}

// image pushes and pulls a busybox image and returns its reference.
func (e *env) image(repo string, opts testimage.Options) string {
	e.t.Helper()
	ref := e.ref(repo, "1")
	e.push(ref, opts)
	if err := e.c.PullImage(e.ctx(60*time.Second), ref, nil, nil); err != nil {
		e.t.Fatalf("pull %s: %v", ref, err)
	}
	e.removeImageLater(ref)
	return ref
}

// create creates a container labelled for this test and removes it (by ID)
// when the test ends.
func (e *env) create(spec ContainerSpec) string {
	e.t.Helper()
	if spec.Labels == nil {
		spec.Labels = map[string]string{}
	}
	if _, ok := spec.Labels[testLabel]; !ok {
		spec.Labels[testLabel] = e.label
	}
	id, err := e.c.CreateContainer(e.ctx(30*time.Second), spec)
	if err != nil {
		e.t.Fatalf("create %s: %v", spec.Name, err)
	}
	e.removeContainerLater(id)
	return id
}

func (e *env) removeContainerLater(id string) {
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := e.c.RemoveContainer(ctx, id, true); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			e.t.Errorf("cleanup container %s: %v", id, err)
		}
	})
}

// run creates and starts a container.
func (e *env) run(spec ContainerSpec) string {
	e.t.Helper()
	id := e.create(spec)
	if err := e.c.StartContainer(e.ctx(30*time.Second), id); err != nil {
		e.t.Fatalf("start %s: %v", spec.Name, err)
	}
	return id
}

// name gives a container name unique to this test.
func (e *env) name(suffix string) string {
	n := strings.NewReplacer("/", "_", " ", "_").Replace(e.label + "_" + suffix)
	return strings.ToLower(n)
}

// waitFor polls cond until it holds or the deadline passes.
func (e *env) waitFor(what string, d time.Duration, cond func() (bool, error)) {
	e.t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, err := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s (last error: %v)", what, err)
		}
		time.Sleep(25 * time.Millisecond) // poll interval, not synchronisation
	}
}

// waitExited waits until the container has exited and returns its state.
func (e *env) waitExited(id string) Container {
	e.t.Helper()
	var ct Container
	e.waitFor("container "+id+" to exit", 30*time.Second, func() (bool, error) {
		var err error
		ct, err = e.c.InspectContainer(e.ctx(10*time.Second), id)
		return err == nil && ct.State.Status == "exited", err
	})
	return ct
}

// logs reads a container's log to its end.
func (e *env) logs(id string, opts LogsOptions) []LogEntry {
	e.t.Helper()
	var out []LogEntry
	err := e.c.Logs(e.ctx(60*time.Second), id, opts, func(le LogEntry) error {
		out = append(out, le)
		return nil
	})
	if err != nil {
		e.t.Fatalf("logs of %s: %v", id, err)
	}
	return out
}

// waitLogLine follows the container's log until a line equals want.
func (e *env) waitLogLine(id, want string) {
	e.t.Helper()
	found := errors.New("found")
	err := e.c.Logs(e.ctx(30*time.Second), id, LogsOptions{Follow: true}, func(le LogEntry) error {
		if le.Text == want {
			return found
		}
		return nil
	})
	if !errors.Is(err, found) {
		e.t.Fatalf("log line %q of %s not seen: %v", want, id, err)
	}
}

// sockProxy forwards a unix socket to the engine's socket and can cut every
// connection, the way an engine restart or a broken socket does.
type sockProxy struct {
	path, target string
	ln           net.Listener
	mu           sync.Mutex
	conns        []net.Conn
	wg           sync.WaitGroup
}

// engineSocket is the unix socket of the engine the tests use.
func engineSocket(t *testing.T) string {
	t.Helper()
	host := os.Getenv("DOCKER_HOST")
	if host == "" {
		host = client.DefaultDockerHost
	}
	path, ok := strings.CutPrefix(host, "unix://")
	if !ok {
		t.Skipf("engine at %s is not a unix socket", host)
	}
	return path
}

func newSockProxy(t *testing.T) *sockProxy {
	t.Helper()
	dir, err := os.MkdirTemp("", "dkp") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	p := &sockProxy{path: dir + "/engine.sock", target: engineSocket(t)}
	t.Cleanup(p.close)
	return p
}

func (p *sockProxy) host() string { return "unix://" + p.path }

func (p *sockProxy) start(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("unix", p.path)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("unix", p.target)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			p.wg.Add(2)
			go func() { defer p.wg.Done(); io.Copy(out, in); out.Close() }()
			go func() { defer p.wg.Done(); io.Copy(in, out); in.Close() }()
		}
	}()
}

// dropAll cuts every open connection; the listener stays.
func (p *sockProxy) dropAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// close stops listening, cuts everything and waits for the copiers.
func (p *sockProxy) close() {
	p.mu.Lock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	p.mu.Unlock()
	p.dropAll()
	p.wg.Wait()
	os.Remove(p.path)
}
