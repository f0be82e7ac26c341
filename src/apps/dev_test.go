package apps

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"reagent/src/backend"
	"reagent/src/docker"
	"reagent/src/errdefs"
)

// Unit tests of the DEV build and publish steps over the fake engine; the
// integration tests in src/agent run them on the real engine.

func devApp(key uint64, name, target string) Request {
	return Request{Key: Key{AppKey: key, Stage: StageDev}, AppName: name, TargetState: target, RequestorAccountKey: 7}
}

// writeSource writes files as <build dir>/<name>.tgz; a name starting
// with "../" is written as such, the way a hostile archive would.
func writeSource(t *testing.T, h *harness, appName string, files map[string]string) string {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(files[n])); err != nil {
			t.Fatal(err)
		}
	}
	if err := errors.Join(tw.Close(), zw.Close()); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(h.paths.BuildDir, 0o700); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(h.paths.BuildDir, appName+".tgz")
	if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

var goodSource = map[string]string{"Dockerfile": "FROM base\nCMD [\"sh\"]\n", "app/main.sh": "echo hi\n"}

// outboxReports are the queued state reports.
func (h *harness) outboxReports(t *testing.T) []backend.AppStateReport {
	t.Helper()
	es, err := h.st.PeekOutbox(context.Background(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []backend.AppStateReport
	for _, e := range es {
		var r backend.AppStateReport
		if err := json.Unmarshal(e.Payload, &r); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// assertIdle runs two passes and fails if they touch the engine or report.
func (h *harness) assertIdle(t *testing.T, k Key) {
	t.Helper()
	muts, n := len(h.eng.Mutations()), h.outboxLen(t)
	for i := 0; i < 2; i++ {
		res, err := h.m.Reconcile(context.Background(), k)
		if err != nil || res.Requeue {
			t.Fatalf("idle pass: %+v %v", res, err)
		}
	}
	if got := h.eng.Mutations(); len(got) != muts {
		t.Fatalf("idle pass mutated the engine: %v", got[muts:])
	}
	if h.outboxLen(t) != n {
		t.Fatalf("idle pass reported: %v", h.outboxStates(t)[n:])
	}
}

func TestDevBuildRunRebuild(t *testing.T) {
	h := newHarness(t, nil)
	k := Key{AppKey: 1, Stage: StageDev}
	repo := ImageRepo(h.flock.DockerRegistryURL, h.flock.DockerMainRepository, k, "amd64", "Demo")
	writeSource(t, h, "Demo", goodSource)

	h.request(t, devApp(1, "Demo", StateBuilt))
	h.settle(t, k)
	if got := h.outboxStates(t); !slices.Equal(got, []string{StateRemoved, StateBuilding, StateBuilt, StatePresent}) {
		t.Fatalf("build reported %v", got)
	}
	if !h.eng.hasImage(repo) || repo != "registry.test:5000/apps/dev_amd64_1_demo" {
		t.Fatalf("image %s not built", repo)
	}
	b := h.eng.builds[0]
	if b.Dockerfile != "Dockerfile" || b.Labels[LabelAppKey] != "1" || b.Labels[LabelStage] != StageDev {
		t.Fatalf("build options %+v", b)
	}
	for _, want := range []string{"dev_1_demo: Starting image build...", "dev_1_demo: Image built successfully"} {
		if h.log.count(want) != 1 {
			t.Fatalf("log %v lacks %q", h.log.all(), want)
		}
	}
	h.assertIdle(t, k)

	before := len(h.outboxStates(t))
	h.request(t, devApp(1, "Demo", StateRunning))
	h.settle(t, k)
	if got := h.outboxStates(t)[before:]; !slices.Equal(got, []string{StateStarting, StateRunning}) {
		t.Fatalf("run reported %v", got)
	}
	ct, ok := h.eng.container("dev_1_demo")
	if !ok || ct.Image != repo || !h.eng.specs["dev_1_demo"].OpenStdin || !ct.Tty {
		t.Fatalf("container %+v", ct)
	}

	// BUILT while running: stop, then build again for the new request.
	before = len(h.outboxStates(t))
	h.request(t, devApp(1, "Demo", StateBuilt))
	h.settle(t, k)
	want := []string{StateStopping, StatePresent, StateRemoved, StateBuilding, StateBuilt, StatePresent}
	if got := h.outboxStates(t)[before:]; !slices.Equal(got, want) {
		t.Fatalf("rebuild reported %v, want %v", got, want)
	}
	if _, ok := h.eng.container("dev_1_demo"); ok || len(h.eng.builds) != 2 {
		t.Fatalf("container left or %d builds", len(h.eng.builds))
	}
	h.assertIdle(t, k)
}

func TestDevBuildPicksArchDockerfile(t *testing.T) {
	h := newHarness(t, nil)
	k := Key{AppKey: 1, Stage: StageDev}
	writeSource(t, h, "demo", map[string]string{"Dockerfile": "FROM a\n", "deep/x/Dockerfile.amd64": "FROM b\n",
		"sub/Dockerfile.amd64": "FROM c\n", "Dockerfile.arm64": "FROM d\n"})
	h.request(t, devApp(1, "demo", StateBuilt))
	h.settle(t, k)
	if got := h.eng.builds[0].Dockerfile; got != "sub/Dockerfile.amd64" {
		t.Fatalf("built with %s", got)
	}
}

// The build hands the engine credentials for its FROM images: the device
// registry's (registry token of the requestor + device secret) and every
// docker_credentials entry, keyed by host; docker_credentials win for the
// device registry, as for pulls.
func TestDevBuildRegistryAuth(t *testing.T) {
	tests := []struct {
		name    string
		creds   map[string]Credential
		offline bool
		want    map[string]docker.RegistryAuth
		tokens  int    // get_registry_token calls
		logged  string // in the app's log; "" = nothing about credentials
	}{
		{"device registry only", nil, false, map[string]docker.RegistryAuth{
			"registry.test:5000": {Username: "token-7", Password: "s3cret", ServerAddress: "registry.test:5000"},
		}, 1, ""},
		{"device registry and docker_credentials", map[string]Credential{
			"https://Hub.Example.com/v2/": {Username: "hu", Password: "hp"},
			"ghcr.io":                     {Username: "gu", Password: "ghcr-pw"},
		}, false, map[string]docker.RegistryAuth{
			"registry.test:5000": {Username: "token-7", Password: "s3cret", ServerAddress: "registry.test:5000"},
			"hub.example.com":    {Username: "hu", Password: "hp", ServerAddress: "hub.example.com"},
			"ghcr.io":            {Username: "gu", Password: "ghcr-pw", ServerAddress: "ghcr.io"},
		}, 1, ""},
		{"docker_credentials for the device registry win", map[string]Credential{
			"registry.test:5000": {Username: "own", Password: "pw"},
		}, false, map[string]docker.RegistryAuth{
			"registry.test:5000": {Username: "own", Password: "pw", ServerAddress: "registry.test:5000"},
		}, 0, ""},
		{"offline: docker_credentials only", map[string]Credential{
			"ghcr.io": {Username: "gu", Password: "ghcr-pw"},
		}, true, map[string]docker.RegistryAuth{
			"ghcr.io": {Username: "gu", Password: "ghcr-pw", ServerAddress: "ghcr.io"},
		}, 0, "dev_1_demo: The device is offline: building without the credentials of registry.test:5000."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			k := Key{AppKey: 1, Stage: StageDev}
			writeSource(t, h, "demo", goodSource)
			h.link.set(!tc.offline)
			r := devApp(1, "demo", StateBuilt)
			r.DockerCredentials = tc.creds
			h.request(t, r)
			h.settle(t, k)
			if a := h.actual(t, k); a.State != StatePresent {
				t.Fatalf("actual %+v", a)
			}
			if len(h.eng.builds) != 1 {
				t.Fatalf("%d builds", len(h.eng.builds))
			}
			if got := h.eng.builds[0].Auth; !maps.Equal(got, tc.want) {
				t.Fatalf("build auth %v, want %v", got, tc.want)
			}
			if len(h.cloud.tokens) != tc.tokens || tc.tokens > 0 && h.cloud.tokens[0] != 7 {
				t.Fatalf("token calls %v, want %d for the requestor 7", h.cloud.tokens, tc.tokens)
			}
			if tc.logged != "" && h.log.count(tc.logged) != 1 {
				t.Fatalf("log %v lacks %q", h.log.all(), tc.logged)
			}
			for _, l := range h.log.all() {
				if strings.Contains(l, "s3cret") || strings.Contains(l, "ghcr-pw") {
					t.Fatalf("a password in the log: %q", l)
				}
			}
		})
	}
}

// A build that cannot succeed fails once, with the reason in the app's
// log, and is not retried until a new request; engine trouble is retried.
func TestDevBuildFailures(t *testing.T) {
	tests := []struct {
		name     string
		files    map[string]string // nil: nothing uploaded
		buildErr error
		builds   int    // builds the engine saw
		logged   string // in the app's log
	}{
		{"nothing uploaded", nil, nil, 0, "no source of demo to build: upload demo.tgz first"},
		{"escaping entry", map[string]string{"Dockerfile": "FROM a\n", "../../escape": "x"}, nil, 0, `the uploaded source of demo is refused: invalid archive: "../../escape" contains ..`},
		{"no Dockerfile", map[string]string{"README": "x"}, nil, 0, "has no Dockerfile"},
		{"failing RUN", goodSource, errors.New("build [x]: The command '/bin/sh -c false' returned a non-zero code: 1\nStep 2/2 : RUN false"),
			1, "returned a non-zero code: 1"},
		{"missing base image", goodSource, errdefs.NotFound("manifest for base:1 not found"), 1, "manifest for base:1 not found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			k := Key{AppKey: 1, Stage: StageDev}
			if tc.files != nil {
				writeSource(t, h, "demo", tc.files)
			}
			h.eng.buildErr = tc.buildErr
			h.request(t, devApp(1, "demo", StateBuilt))
			h.settle(t, k)
			if a := h.actual(t, k); a.State != StateFailed || !strings.Contains(a.LastError, tc.logged) {
				t.Fatalf("actual %+v", a)
			}
			if h.log.count("dev_1_demo: ") == 0 || !slices.ContainsFunc(h.log.all(), func(l string) bool { return strings.Contains(l, tc.logged) }) {
				t.Fatalf("log %v lacks %q", h.log.all(), tc.logged)
			}
			if len(h.eng.builds) != tc.builds {
				t.Fatalf("%d builds, want %d", len(h.eng.builds), tc.builds)
			}
			h.assertIdle(t, k)

			// Fixed source, new request: built.
			writeSource(t, h, "demo", goodSource)
			h.eng.buildErr = nil
			h.request(t, devApp(1, "demo", StateBuilt))
			h.settle(t, k)
			if a := h.actual(t, k); a.State != StatePresent {
				t.Fatalf("after the fix: %+v", a)
			}
		})
	}
	t.Run("engine unavailable is retried", func(t *testing.T) {
		h := newHarness(t, nil)
		k := Key{AppKey: 1, Stage: StageDev}
		writeSource(t, h, "demo", goodSource)
		h.eng.buildErr = errdefs.Unavailable("engine down")
		h.request(t, devApp(1, "demo", StateBuilt))
		if _, err := h.m.Reconcile(context.Background(), k); err == nil {
			t.Fatal("a transient build failure was not returned for retry")
		}
		h.eng.buildErr = nil
		h.settle(t, k)
		if a := h.actual(t, k); a.State != StatePresent {
			t.Fatalf("after the retry: %+v", a)
		}
	})
}

// A second BUILT while a build runs cancels it; the next pass builds for
// the new request, and the cancel is no failure.
func TestDevBuildSuperseded(t *testing.T) {
	h := newHarness(t, nil)
	k := Key{AppKey: 1, Stage: StageDev}
	writeSource(t, h, "demo", goodSource)
	gate := make(chan struct{})
	h.eng.buildGate, h.eng.buildStart = gate, make(chan string, 4)
	h.run(t)
	h.request(t, devApp(1, "demo", StateBuilt))
	recv(t, h.eng.buildStart, "the first build")
	h.request(t, devApp(1, "demo", StateBuilt))
	recv(t, h.eng.buildStart, "the second build, after the first was cancelled")
	close(gate)
	await(t, waitLong, "PRESENT", func() bool { a, ok := h.m.Actual(context.Background(), k); return ok && a.State == StatePresent })
	if n := len(h.eng.Mutations()); countPrefix(h.eng.Mutations(), "build ") != 2 {
		t.Fatalf("%d mutations %v: want exactly 2 builds", n, h.eng.Mutations())
	}
	await(t, waitLong, "PRESENT reported", func() bool {
		s := h.cloud.states(1)
		return len(s) > 0 && s[len(s)-1] == StatePresent
	})
	got := h.cloud.states(1)
	if slices.Contains(got, StateFailed) || countPrefix(got, StateBuilt) != 1 {
		t.Fatalf("reported %v: want one BUILT and no FAILED", got)
	}
}

// recv waits for a value from ch, failing the test after waitLong.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	timer := time.NewTimer(waitLong)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		t.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}

func TestDevPublish(t *testing.T) {
	h := newHarness(t, nil)
	k := Key{AppKey: 1, Stage: StageDev}
	prod := h.ref(Key{AppKey: 1, Stage: StageProd}, "Demo", "1.2.3")
	writeSource(t, h, "Demo", goodSource)
	r := devApp(1, "Demo", StatePublished)
	r.Version = "1.2.3"
	h.request(t, r)
	h.settle(t, k)
	var states []string
	var release []bool
	for _, rep := range h.outboxReports(t) {
		states, release = append(states, rep.State), append(release, rep.ReleaseBuild)
	}
	if want := []string{StateRemoved, StateBuilding, StateBuilt, StatePublishing, StatePublished}; !slices.Equal(states, want) {
		t.Fatalf("publish reported %v, want %v", states, want)
	}
	if want := []bool{true, true, true, false, false}; !slices.Equal(release, want) {
		t.Fatalf("release_build %v, want %v", release, want)
	}
	if !h.eng.registry[prod] || prod != "registry.test:5000/apps/prod_amd64_1_demo:1.2.3" {
		t.Fatalf("%s not pushed: %v", prod, h.eng.Mutations())
	}
	if h.eng.hasImage(prod) {
		t.Fatal("the local PROD tag of the release was kept")
	}
	if h.cloud.tokens[len(h.cloud.tokens)-1] != 7 {
		t.Fatalf("registry token for %v, want the requestor 7", h.cloud.tokens)
	}
	for _, want := range []string{"pub_1_demo: Initializing publish process for Demo...", "pub_1_demo: Starting image build...",
		"pub_1_demo: App build has finished, Starting to publish..."} {
		if h.log.count(want) != 1 {
			t.Fatalf("log %v lacks %q", h.log.all(), want)
		}
	}
	if h.log.count("dev_1_demo: ") != 0 {
		t.Fatalf("publish wrote to the DEV log: %v", h.log.all())
	}
	// One-shot: later passes (events, resync, reconnect) publish nothing.
	h.assertIdle(t, k)
}

func TestDevPublishFailures(t *testing.T) {
	tests := []struct {
		name    string
		version string
		pushErr error
		logged  string
	}{
		{"no version", "", nil, `cannot publish demo as version ""`},
		{"bad version", "1.2.3/x", nil, "want a version usable as an image tag"},
		{"push refused", "1.0.0", errors.New("unauthorized: authentication required"), "unauthorized"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			k := Key{AppKey: 1, Stage: StageDev}
			writeSource(t, h, "demo", goodSource)
			h.eng.pushErr = tc.pushErr
			r := devApp(1, "demo", StatePublished)
			r.Version = tc.version
			h.request(t, r)
			h.settle(t, k)
			if a := h.actual(t, k); a.State != StateFailed {
				t.Fatalf("actual %+v", a)
			}
			if !slices.ContainsFunc(h.log.all(), func(l string) bool { return strings.HasPrefix(l, "pub_1_demo: ") && strings.Contains(l, tc.logged) }) {
				t.Fatalf("pub log %v lacks %q", h.log.all(), tc.logged)
			}
			if reps := h.outboxReports(t); reps[len(reps)-1].ReleaseBuild {
				t.Fatal("FAILED reported as a release build")
			}
			h.assertIdle(t, k)
		})
	}
}

// fakeTransfers records the uploads the reconciler cancels.
type fakeTransfers struct {
	mu       sync.Mutex
	canceled []string
}

func (f *fakeTransfers) Cancel(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.canceled = append(f.canceled, name)
	return true
}

func TestDevUninstallDeletesSource(t *testing.T) {
	xf := &fakeTransfers{}
	h := newHarness(t, func(o *Options) { o.Transfers, o.BuildExtension = xf, "tar.gz" })
	k := Key{AppKey: 1, Stage: StageDev}
	tgz := writeSource(t, h, "Demo", goodSource)
	src := filepath.Join(h.paths.BuildDir, "Demo.tar.gz")
	if err := os.Rename(tgz, src); err != nil {
		t.Fatal(err)
	}
	h.request(t, devApp(1, "Demo", StateBuilt))
	h.settle(t, k)
	if a := h.actual(t, k); a.State != StatePresent {
		t.Fatalf("build with extension tar.gz: %+v", a)
	}
	if !slices.Equal(xf.canceled, []string{"dev_1_demo"}) {
		t.Fatalf("a BUILT request cancels an upload in progress: %v", xf.canceled)
	}
	h.request(t, devApp(1, "Demo", StateUninstalled))
	h.settle(t, k)
	if _, err := os.Stat(src); !os.IsNotExist(err) {
		t.Fatalf("uninstall kept the source: %v", err)
	}
	if len(xf.canceled) != 2 {
		t.Fatalf("uninstall did not cancel uploads: %v", xf.canceled)
	}
}

// A DEV app is never pulled: RUNNING before a build fails at once.
func TestDevRunNeedsBuild(t *testing.T) {
	h := newHarness(t, nil)
	k := Key{AppKey: 1, Stage: StageDev}
	h.request(t, devApp(1, "demo", StateRunning))
	h.settle(t, k)
	if a := h.actual(t, k); a.State != StateFailed || !strings.Contains(a.LastError, "build the app first") {
		t.Fatalf("actual %+v", a)
	}
	if muts := h.eng.Mutations(); len(muts) != 0 {
		t.Fatalf("engine touched: %v", muts)
	}
	h.assertIdle(t, k)
}
