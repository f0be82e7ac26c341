package apps

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"reagent/src/backend"
	"reagent/src/config"
	"reagent/src/docker"
	"reagent/src/errdefs"
)

// Every transition reaches its state with the engine matching, reports the
// reference's sequence, and a second pass with nothing to do makes no
// engine mutation and no report (STYLE §6).
func TestTransitionsAndIdempotency(t *testing.T) {
	tests := []struct {
		target  string
		reports []string // after RUNNING was reached
		check   func(t *testing.T, h *harness, k Key, dataDir string)
	}{
		{StateRunning, nil, func(t *testing.T, h *harness, k Key, _ string) {
			ct, ok := h.eng.container("prod_1_demo")
			if !ok || !ct.State.Running || ct.Image != h.ref(k, "demo", "1.0.0") {
				t.Fatalf("container %+v %v", ct, ok)
			}
		}},
		{StatePresent, []string{StateStopping, StatePresent}, func(t *testing.T, h *harness, k Key, dataDir string) {
			if _, ok := h.eng.container("prod_1_demo"); ok {
				t.Fatal("container left")
			}
			if !h.eng.hasImage(h.ref(k, "demo", "1.0.0")) {
				t.Fatal("image gone")
			}
		}},
		{StateRemoved, []string{StateDeleting, StateRemoved}, func(t *testing.T, h *harness, k Key, dataDir string) {
			if _, ok := h.eng.container("prod_1_demo"); ok || h.eng.hasImage(h.ref(k, "demo", "1.0.0")) {
				t.Fatal("container or image left")
			}
			if _, err := os.Stat(dataDir); err != nil {
				t.Fatalf("remove deleted the data dir: %v", err)
			}
		}},
		{StateUninstalled, []string{StateDeleting, StateRemoved, StateUninstalled}, func(t *testing.T, h *harness, k Key, dataDir string) {
			if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
				t.Fatalf("uninstall kept the data dir: %v", err)
			}
			if hps, _ := h.st.HostPorts(context.Background()); len(hps) != 0 {
				t.Fatalf("host ports kept: %v", hps)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.target, func(t *testing.T) {
			h := newHarness(t, nil)
			k := Key{AppKey: 1, Stage: StageProd}
			h.eng.registry[h.ref(k, "demo", "1.0.0")] = true
			req := prodApp(1, "demo", StateRunning, "1.0.0")
			req.Ports = []backend.PortRule{{Name: "web", Port: 80, Protocol: "http"}}
			h.request(t, req)
			h.settle(t, k)
			if got := h.outboxStates(t); !slices.Equal(got, []string{StateDownloading, StatePresent, StateStarting, StateRunning}) {
				t.Fatalf("install+run reported %v", got)
			}
			dataDir := h.paths.AppDataDir(StageProd, "demo")
			if _, err := os.Stat(dataDir + "/env/APP_KEY.txt"); err != nil {
				t.Fatalf("env file: %v", err)
			}
			before := len(h.outboxStates(t))
			req.TargetState = tc.target
			h.request(t, req)
			h.settle(t, k)
			if got := h.outboxStates(t)[before:]; !slices.Equal(got, tc.reports) {
				t.Fatalf("reported %v, want %v", got, tc.reports)
			}
			if a := h.actual(t, k); a.State != tc.target {
				t.Fatalf("actual %s, want %s", a.State, tc.target)
			}
			tc.check(t, h, k, dataDir)
			h.assertIdle(t, k)
		})
	}
}

func TestContainerSettings(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.LANIP = func() string { return "10.1.2.3" } })
	h.link.credKey = "cred-key-xyz"
	k := Key{AppKey: 42, Stage: StageProd}
	h.eng.registry[h.ref(k, "Demo", "2.0.0")] = true
	r := prodApp(42, "Demo", StateRunning, "2.0.0")
	r.AppCredEpoch = 3
	r.Environment = map[string]any{"GREETING": map[string]any{"value": "hi"}}
	r.Ports = []backend.PortRule{{Name: "web", Port: 80, Protocol: "http"}}
	h.request(t, r)
	h.settle(t, k)
	spec := h.eng.specs["prod_42_demo"]
	env := map[string]string{}
	for _, e := range spec.Env {
		n, v, _ := strings.Cut(e, "=")
		env[n] = v
	}
	if env["APP_AUTH_ID"] != "app-42-prod-e3@serial-1" || env["APP_AUTH_SECRET"] != "iUNqyijBA02hiL+Npztftmk1KMZsIsHxrULdHAMchfE=" ||
		env["GREETING"] != "hi" || env["DEVICE_PORT_FOR_80"] != "40000" || env["DEVICE_LAN_IP"] != "10.1.2.3" {
		t.Fatalf("env %v", env)
	}
	if len(spec.Ports) != 1 || spec.Ports[0].HostPort != 40000 || spec.Ports[0].HostIP != "0.0.0.0" {
		t.Fatalf("ports %+v", spec.Ports)
	}
	// The host port was saved upstream (shape b).
	if len(h.cloud.ports) != 1 || h.cloud.ports[0][0].HostPort != 40000 {
		t.Fatalf("port saves %+v", h.cloud.ports)
	}
	// The registry token of the requestor (no device owner), device secret as password.
	if !slices.Equal(h.cloud.tokens, []uint64{7}) {
		t.Fatalf("token calls %v", h.cloud.tokens)
	}
	if h.log.count("Now running app Demo (2.0.0)") != 1 || h.log.count("Succesfully installed the app: Demo (Version: 2.0.0)") != 1 {
		t.Fatalf("app log %v", h.log.all())
	}
}

// An app started after the cloud renamed the device (or moved it to
// another swarm) gets the new metadata, not the .flock's of start; its
// reports carry the new swarm key.
func TestEnvFollowsDeviceMetadata(t *testing.T) {
	h := newHarness(t, nil)
	h.link.baseURL = "https://studio.test"
	env := func(name string) map[string]string {
		out := map[string]string{}
		for _, e := range h.eng.specs[name].Env {
			n, v, _ := strings.Cut(e, "=")
			out[n] = v
		}
		return out
	}
	first := Key{AppKey: 1, Stage: StageProd}
	h.eng.registry[h.ref(first, "One", "1.0.0")] = true
	h.request(t, prodApp(1, "One", StateRunning, "1.0.0"))
	h.settle(t, first)
	if e := env("prod_1_one"); e["DEVICE_NAME"] != "dev-1" || e["DEVICE_URL"] != "https://studio.test/owner/swarms/swarm/settings/devices/dev-1" {
		t.Fatalf("env before the rename %v", e)
	}

	h.link.setFlock(func(fl *config.Flock) {
		fl.Name, fl.SwarmName, fl.SwarmOwnerName, fl.SwarmKey = "renamed", "swarm-b", "alice", 77
	})
	second := Key{AppKey: 2, Stage: StageProd}
	h.eng.registry[h.ref(second, "Two", "1.0.0")] = true
	reports := len(h.outboxReports(t))
	h.request(t, prodApp(2, "Two", StateRunning, "1.0.0"))
	h.settle(t, second)
	e := env("prod_2_two")
	if e["DEVICE_NAME"] != "renamed" || e["SWARM_KEY"] != "77" ||
		e["DEVICE_URL"] != "https://studio.test/alice/swarms/swarm-b/settings/devices/renamed" {
		t.Fatalf("env after the rename %v", e)
	}
	for _, r := range h.outboxReports(t)[reports:] {
		if r.SwarmKey != 77 || r.DeviceKey != h.flock.DeviceKey {
			t.Fatalf("report %+v: want swarm 77, device %d", r, h.flock.DeviceKey)
		}
	}
	if h.flock.Name != "dev-1" {
		t.Fatal("the Manager changed the .flock it was given")
	}
}

func TestForeignContainerAndOrphans(t *testing.T) {
	h := newHarness(t, nil)
	k := Key{AppKey: 9, Stage: StageProd}
	h.eng.registry[h.ref(k, "foo", "1.0.0")] = true
	h.eng.addForeign("prod_9_foo", map[string]string{"com.example": "x"})
	h.eng.addForeign("prod_77_orphan", appLabels(Key{AppKey: 77, Stage: StageProd}, "orphan", "serial-1"))
	h.eng.addForeign("prod_9_oldname", appLabels(k, "oldname", "serial-1"))                      // ours, from before a rename
	h.eng.addForeign("prod_78_x", appLabels(Key{AppKey: 78, Stage: StageProd}, "x", "serial-2")) // another device's agent
	h.request(t, prodApp(9, "foo", StateRunning, "1.0.0"))
	h.settle(t, k)
	a := h.actual(t, k)
	if a.State != StateFailed || !strings.Contains(a.LastError, "did not create") {
		t.Fatalf("actual %+v", a)
	}
	if h.log.count("prod_9_foo exists that this agent did not create") != 1 {
		t.Fatalf("app log %v", h.log.all())
	}
	muts := len(h.eng.Mutations())
	if _, err := h.m.Reconcile(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	if len(h.eng.Mutations()) != muts {
		t.Fatal("a terminal failure was retried without a new request")
	}
	if err := h.m.CleanupOrphans(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, kept := range []string{"prod_9_foo", "prod_78_x"} {
		if _, ok := h.eng.container(kept); !ok {
			t.Fatalf("%s, not ours, was removed", kept)
		}
	}
	for _, gone := range []string{"prod_77_orphan", "prod_9_oldname"} {
		if _, ok := h.eng.container(gone); ok {
			t.Fatalf("%s survived the cleanup", gone)
		}
	}
	// Removal targets leave the foreign container alone and succeed.
	h.request(t, prodApp(9, "foo", StateRemoved, "1.0.0"))
	h.settle(t, k)
	if _, ok := h.eng.container("prod_9_foo"); !ok || h.actual(t, k).State != StateRemoved {
		t.Fatal("remove touched the foreign container or did not finish")
	}
}

func TestExitCodes(t *testing.T) {
	k := Key{AppKey: 1, Stage: StageProd}
	t.Run("exit 0 is finished, not restarted until a new request", func(t *testing.T) {
		h := newHarness(t, nil)
		h.eng.registry[h.ref(k, "job", "1")] = true
		h.eng.exitCode["prod_1_job"] = 0
		h.request(t, prodApp(1, "job", StateRunning, "1"))
		h.settle(t, k)
		if got := h.outboxStates(t); !slices.Equal(got, []string{StateDownloading, StatePresent, StateStarting, StatePresent}) {
			t.Fatalf("reported %v", got)
		}
		if _, ok := h.eng.container("prod_1_job"); !ok {
			t.Fatal("the finished container was removed")
		}
		muts := len(h.eng.Mutations())
		for i := 0; i < 3; i++ {
			if res, err := h.m.Reconcile(context.Background(), k); err != nil || res.Requeue || res.RequeueAfter != 0 {
				t.Fatalf("pass %+v %v", res, err)
			}
		}
		if len(h.eng.Mutations()) != muts {
			t.Fatal("a finished app was restarted")
		}
		// The same holds for a manager built anew over the same store (agent restart).
		m2, err := New(h.m.opts)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m2.Reconcile(context.Background(), k); err != nil || len(h.eng.Mutations()) != muts {
			t.Fatalf("after an agent restart: %v %v", err, h.eng.Mutations()[muts:])
		}
		h.request(t, prodApp(1, "job", StateRunning, "1"))
		h.settle(t, k)
		if n := slices.Index(h.eng.Mutations()[muts:], "start prod_1_job"); n < 0 {
			t.Fatalf("a new request did not run it again: %v", h.eng.Mutations()[muts:])
		}
	})
	t.Run("crash is FAILED and restarted after the delay", func(t *testing.T) {
		h := newHarness(t, nil)
		h.eng.registry[h.ref(k, "crash", "1")] = true
		h.eng.exitCode["prod_1_crash"] = 3
		h.request(t, prodApp(1, "crash", StateRunning, "1"))
		var res Result
		for i := 0; i < 10; i++ {
			var err error
			if res, err = h.m.Reconcile(context.Background(), k); err != nil {
				t.Fatal(err)
			}
			if !res.Requeue {
				break
			}
		}
		if res.RequeueAfter <= 0 {
			t.Fatalf("no restart scheduled: %+v", res)
		}
		a := h.actual(t, k)
		if a.State != StateFailed || a.LastError != "exited with status code 3" {
			t.Fatalf("actual %+v", a)
		}
		if h.log.count("prod_1_crash (PROD) exited with status code: 3") != 1 ||
			h.log.count("restarting in 10ms (1st restart): exited with status code 3") != 1 {
			t.Fatalf("app log %v", h.log.all())
		}
	})
	t.Run("DEV crash stays FAILED", func(t *testing.T) {
		h := newHarness(t, nil)
		dk := Key{AppKey: 5, Stage: StageDev}
		h.eng.images[ImageRepo(h.flock.DockerRegistryURL, h.flock.DockerMainRepository, dk, "amd64", "d")] = true
		h.eng.exitCode["dev_5_d"] = 2
		h.request(t, Request{Key: dk, AppName: "d", TargetState: StateRunning})
		h.settle(t, dk)
		if a := h.actual(t, dk); a.State != StateFailed {
			t.Fatalf("actual %+v", a)
		}
		muts := len(h.eng.Mutations())
		if res, err := h.m.Reconcile(context.Background(), dk); err != nil || res.Requeue || res.RequeueAfter != 0 {
			t.Fatalf("pass %+v %v", res, err)
		}
		if len(h.eng.Mutations()) != muts {
			t.Fatal("a crashed DEV app was restarted")
		}
	})
}

func TestPrivilegeLadder(t *testing.T) {
	refused := fmt.Errorf("start: unable to apply caps: %w", docker.ErrPrivilegeRefused)
	tests := []struct {
		name      string
		refuse    func(docker.ContainerSpec) error
		wantLevel privilegeLevel
		wantNote  string
	}{
		{"privileged accepted", func(docker.ContainerSpec) error { return nil }, levelPrivileged, ""},
		{"privileged refused", func(s docker.ContainerSpec) error {
			if s.Privileged {
				return refused
			}
			return nil
		}, levelCapabilities, "running demo with the 2 capabilities the engine allows and the host's devices, not privileged"},
		{"devices refused too", func(s docker.ContainerSpec) error {
			if s.Privileged || len(s.Devices) > 0 {
				return refused
			}
			return nil
		}, levelPlain, "running demo with no extra capabilities and no host devices"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.eng.refuse = tc.refuse
			k := Key{AppKey: 1, Stage: StageProd}
			h.eng.registry[h.ref(k, "demo", "1")] = true
			h.request(t, prodApp(1, "demo", StateRunning, "1"))
			h.settle(t, k)
			if a := h.actual(t, k); a.State != StateRunning {
				t.Fatalf("actual %+v", a)
			}
			spec := h.eng.specs["prod_1_demo"]
			want := docker.ContainerSpec{}
			applyLevel(&want, tc.wantLevel, []string{"CAP_CHOWN", "CAP_NET_ADMIN"})
			if spec.Privileged != want.Privileged || !slices.Equal(spec.CapAdd, want.CapAdd) || len(spec.Devices) != len(want.Devices) {
				t.Fatalf("running with %v %v %v, want level %d", spec.Privileged, spec.CapAdd, spec.Devices, tc.wantLevel)
			}
			lvl, _, _ := h.st.GetMeta(context.Background(), metaPrivilegeLevel)
			if tc.wantLevel > 0 && lvl != fmt.Sprint(int(tc.wantLevel)) {
				t.Fatalf("remembered level %q", lvl)
			}
			if tc.wantNote == "" {
				if h.log.count("refuses privileged") != 0 {
					t.Fatal("a note without a refusal")
				}
				return
			}
			if h.log.count("the engine refuses privileged containers; "+tc.wantNote) != 1 {
				t.Fatalf("app log %v", h.log.all())
			}
			// A later container starts at the remembered level at once,
			// also in a manager built anew (agent restart).
			m2, err := New(h.m.opts)
			if err != nil {
				t.Fatal(err)
			}
			m2.loadLevel(context.Background())
			k2 := Key{AppKey: 2, Stage: StageProd}
			h.eng.registry[h.ref(k2, "other", "1")] = true
			if err := m2.Request(context.Background(), prodApp(2, "other", StateRunning, "1")); err != nil {
				t.Fatal(err)
			}
			muts := len(h.eng.Mutations())
			for i := 0; i < 10; i++ {
				res, err := m2.Reconcile(context.Background(), k2)
				if err != nil {
					t.Fatal(err)
				}
				if !res.Requeue {
					break
				}
			}
			creates := 0
			for _, mu := range h.eng.Mutations()[muts:] {
				if strings.HasPrefix(mu, "create ") {
					creates++
				}
			}
			if creates != 1 {
				t.Fatalf("%d creates for the second app, want 1 at the remembered level", creates)
			}
		})
	}
}

func TestStartRetries(t *testing.T) {
	k := Key{AppKey: 1, Stage: StageProd}
	t.Run("busy host port is moved", func(t *testing.T) {
		h := newHarness(t, nil)
		h.eng.registry[h.ref(k, "web", "1")] = true
		h.eng.refuse = func(s docker.ContainerSpec) error {
			if s.Ports[0].HostPort == 40000 {
				return &docker.PortInUseError{HostPort: 40000}
			}
			return nil
		}
		r := prodApp(1, "web", StateRunning, "1")
		r.Ports = []backend.PortRule{{Port: 80}}
		h.request(t, r)
		h.settle(t, k)
		if spec := h.eng.specs["prod_1_web"]; h.actual(t, k).State != StateRunning || spec.Ports[0].HostPort != 40001 {
			t.Fatalf("state %s ports %+v", h.actual(t, k).State, spec.Ports)
		}
		hps, _ := h.st.HostPorts(context.Background())
		if len(hps) != 1 || hps[0].HostPort != 40001 {
			t.Fatalf("reservation %v", hps)
		}
	})
	t.Run("no nvidia runtime", func(t *testing.T) {
		h := newHarness(t, func(o *Options) { o.HasNvidia = func() bool { return true } })
		h.eng.registry[h.ref(k, "gpu", "1")] = true
		h.eng.refuse = func(s docker.ContainerSpec) error {
			if s.Runtime == "nvidia" {
				return fmt.Errorf("unknown runtime: %w", docker.ErrRuntimeUnavailable)
			}
			return nil
		}
		h.request(t, prodApp(1, "gpu", StateRunning, "1"))
		h.settle(t, k)
		if h.actual(t, k).State != StateRunning || h.eng.specs["prod_1_gpu"].Runtime != "" {
			t.Fatal("not running without the nvidia runtime")
		}
	})
	t.Run("missing image version is retried, not terminal", func(t *testing.T) {
		h := newHarness(t, nil)
		h.request(t, prodApp(1, "nothere", StateRunning, "9.9.9"))
		_, err := h.m.Reconcile(context.Background(), k)
		if !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("err %v", err)
		}
		if a := h.actual(t, k); a.State != StateFailed || !strings.Contains(a.LastError, "manifest unknown") {
			t.Fatalf("actual %+v", a)
		}
	})
}

func TestRequestValidation(t *testing.T) {
	h := newHarness(t, nil)
	good := prodApp(1, "demo", StateRunning, "1")
	tests := []struct {
		name string
		edit func(r *Request)
	}{
		{"no key", func(r *Request) { r.AppKey = 0 }},
		{"bad stage", func(r *Request) { r.Stage = "TEST" }},
		{"bad name", func(r *Request) { r.AppName = "../etc" }},
		{"unknown target", func(r *Request) { r.TargetState = "FLYING" }},
		{"failed is no target", func(r *Request) { r.TargetState = StateFailed }},
		{"unknown current", func(r *Request) { r.CurrentState = "FLYING" }},
		{"credential without password", func(r *Request) { r.DockerCredentials = map[string]Credential{"reg": {Username: "u"}} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := good
			tc.edit(&r)
			if err := h.m.Request(context.Background(), r); !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("err %v", err)
			}
			if rows, _ := h.st.ListRequested(context.Background()); len(rows) != 0 {
				t.Fatalf("stored %v", rows)
			}
		})
	}
	// Transient targets are stored as what they lead to; what a request
	// leaves out is kept.
	r := good
	r.TargetState = StateStarting
	r.DeviceOwnerAccountKey, r.AppCredEpoch, r.InstanceKey = 11, 4, 5
	r.DockerCredentials = map[string]Credential{"reg": {Username: "u", Password: "p"}}
	h.request(t, r)
	r2 := good
	h.request(t, r2)
	row, err := h.st.GetRequested(context.Background(), good.Key)
	if err != nil || row.TargetState != StateRunning || row.DeviceOwnerAccountKey != 11 || row.AppCredEpoch != 4 ||
		row.InstanceKey != 5 || len(row.DockerCredentials) == 0 || row.Generation != 2 {
		t.Fatalf("row %+v %v", row, err)
	}
}

// recHook records the hook calls.
type recHook struct{ calls []string }

func (h *recHook) Name() string { return "rec" }
func (h *recHook) PreStart(_ context.Context, app string, env Env) error {
	h.calls = append(h.calls, "prestart "+app)
	env["FROM_HOOK"] = "yes"
	return nil
}
func (h *recHook) PostStart(_ context.Context, app, id string) error {
	h.calls = append(h.calls, "poststart "+app)
	return nil
}
func (h *recHook) Stop(_ context.Context, app string) error {
	h.calls = append(h.calls, "stop "+app)
	return nil
}
func (h *recHook) Forget(_ context.Context, app string) error {
	h.calls = append(h.calls, "forget "+app)
	return nil
}

func TestHooks(t *testing.T) {
	h := newHarness(t, nil)
	hook := &recHook{}
	h.m.AddHook(hook)
	k := Key{AppKey: 1, Stage: StageProd}
	h.eng.registry[h.ref(k, "demo", "1")] = true
	h.request(t, prodApp(1, "demo", StateRunning, "1"))
	h.settle(t, k)
	if !slices.Contains(h.eng.specs["prod_1_demo"].Env, "FROM_HOOK=yes") {
		t.Fatalf("env %v lacks the PreStart hook's variable", h.eng.specs["prod_1_demo"].Env)
	}
	// An agent restart finds the app running: PostStart once more, once.
	m2, err := New(h.m.opts)
	if err != nil {
		t.Fatal(err)
	}
	m2.AddHook(hook)
	for i := 0; i < 3; i++ {
		if _, err := m2.Reconcile(context.Background(), k); err != nil {
			t.Fatal(err)
		}
	}
	h.request(t, prodApp(1, "demo", StateUninstalled, "1"))
	h.settle(t, k)
	want := []string{"prestart prod_1_demo", "poststart prod_1_demo", "poststart prod_1_demo", "stop prod_1_demo", "forget prod_1_demo"}
	if !slices.Equal(hook.calls, want) {
		t.Fatalf("hook calls %v, want %v", hook.calls, want)
	}
}
