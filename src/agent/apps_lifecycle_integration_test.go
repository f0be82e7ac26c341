package agent

// Integration tests of the app reconciler (issue #6) through the real
// agent wiring: agent.Run against devcloud and this machine's Docker
// engine, images built from busybox and pushed to devcloud's registry.

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	nx "github.com/gammazero/nexus/v3/wamp"

	"reagent/src/apps"
	"reagent/src/config"
	"reagent/src/store"
)

// install+run, then stop, remove, install again and uninstall: each ends in
// its state with the engine matching; remove keeps the data dir, uninstall
// deletes it and releases the host port.
func TestAppsLifecycle(t *testing.T) {
	e := appsStart(t, appsEnvOptions{})
	a := app{key: appKey(t), name: "Demo", version: "1.0.0"}
	ref := e.push(t, a, a.version, cmdService)
	dataDir := config.Paths{AppsDir: filepath.Join(e.agent.dir, "agent", "apps")}.AppDataDir("PROD", a.name)

	req := a.requested("RUNNING")
	req.Environment = map[string]any{"GREETING": map[string]any{"value": "hello"}}
	req.EnvironmentTemplate = map[string]any{"COLOR": map[string]any{"defaultValue": "blue"}}
	req.Ports = []map[string]any{{"name": "web", "port": 80, "protocol": "http", "active": true}}

	t.Run("install and run", func(t *testing.T) {
		e.request(t, req, nil)
		e.await(t, a.key, "RUNNING")
		if got := e.states(a.key); !slices.Equal(got, []string{"DOWNLOADING", "PRESENT", "STARTING", "RUNNING"}) {
			t.Fatalf("reported %v", got)
		}
		cts := e.containers(t, a.key)
		if len(cts) != 1 {
			t.Fatalf("%d containers", len(cts))
		}
		ct := cts[0]
		if ct.Name != a.container() || !ct.State.Running || ct.Image != ref {
			t.Fatalf("container %s running=%v image %s", ct.Name, ct.State.Running, ct.Image)
		}
		for k, v := range map[string]string{apps.LabelManaged: "true", apps.LabelAppKey: strconv.FormatUint(a.key, 10),
			apps.LabelStage: "PROD", apps.LabelAppName: "Demo", apps.LabelDevice: e.serial, "real": "True"} {
			if ct.Labels[k] != v {
				t.Errorf("label %s = %q, want %q", k, ct.Labels[k], v)
			}
		}
		env := map[string]string{}
		for _, kv := range ct.Env {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
		fl := e.agent.flock
		id, secret := apps.AppCredential(e.cloud.AppCredKey(e.serial), e.serial, apps.Key{AppKey: a.key, Stage: "PROD"}, 0)
		for k, v := range map[string]string{
			"APP_KEY": strconv.FormatUint(a.key, 10), "APP_NAME": "Demo", "ENV": "PROD", "DEVICE_SERIAL_NUMBER": e.serial,
			"DEVICE_KEY": strconv.FormatInt(fl.DeviceKey, 10), "SWARM_KEY": "1", "GREETING": "hello", "COLOR": "blue",
			"APP_AUTH_ID": id, "APP_AUTH_SECRET": secret, "TUNNEL_DOMAIN": "localhost",
			"DEVICE_ENDPOINT_URL": strings.Replace(fl.DeviceEndpointURL, "127.0.0.1", "host.docker.internal", 1),
		} {
			if env[k] != v {
				t.Errorf("env %s = %q, want %q", k, env[k], v)
			}
		}
		if _, ok := env["DEVICE_SECRET"]; ok {
			t.Error("the device secret reached the app")
		}
		mounts := map[string]string{}
		for _, m := range ct.Mounts {
			mounts[m.Target] = m.Source
		}
		if mounts["/data"] != dataDir || mounts["/shared"] != filepath.Join(e.agent.dir, "agent", "apps", "shared") {
			t.Fatalf("mounts %v", mounts)
		}
		if len(ct.Ports) != 1 || ct.Ports[0].ContainerPort != 80 || ct.Ports[0].Protocol != "tcp" ||
			ct.Ports[0].HostIP != "0.0.0.0" || ct.Ports[0].HostPort < 40000 || ct.Ports[0].HostPort > 49999 {
			t.Fatalf("port bindings %+v", ct.Ports)
		}
		if env["DEVICE_PORT_FOR_80"] != strconv.Itoa(int(ct.Ports[0].HostPort)) {
			t.Fatalf("DEVICE_PORT_FOR_80 = %q, bound %d", env["DEVICE_PORT_FOR_80"], ct.Ports[0].HostPort)
		}
		if b, err := os.ReadFile(filepath.Join(dataDir, "env", "GREETING.txt")); err != nil || string(b) != "hello" {
			t.Fatalf("env file: %q %v", b, err)
		}
		// The host port went upstream with the rules (update_app_on_device shape b).
		e.awaitCond(t, "the port save", func() bool {
			for _, p := range e.cloud.PortReports(e.serial) {
				if ports, ok := p["ports"].([]any); ok && len(ports) == 1 {
					if r, ok := ports[0].(map[string]any); ok && r["host_port"] != nil {
						return true
					}
				}
			}
			return false
		})
		// Whatever the engine allows: it runs, and a refusal is explained.
		t.Logf("running privileged=%v with %d added capabilities", ct.Privileged, len(ct.CapAdd))
		if !ct.Privileged {
			e.awaitCond(t, "the privilege note", func() bool {
				return containsLine(e.appLog(t, a.container()), "the engine refuses privileged containers; running Demo with")
			})
		}
	})

	t.Run("stop", func(t *testing.T) {
		n := len(e.states(a.key))
		e.request(t, a.requested("PRESENT"), nil)
		e.await(t, a.key, "PRESENT")
		if got := e.states(a.key)[n:]; !slices.Equal(got, []string{"STOPPING", "PRESENT"}) {
			t.Fatalf("reported %v", got)
		}
		if cts := e.containers(t, a.key); len(cts) != 0 {
			t.Fatalf("containers left: %d", len(cts))
		}
		if !e.imageExists(t, ref) {
			t.Fatal("stop removed the image")
		}
		// SIGTERM reached the app's trap: a graceful stop.
		if b, err := os.ReadFile(filepath.Join(dataDir, "stopped")); err != nil || strings.TrimSpace(string(b)) != "term" {
			t.Fatalf("no graceful stop: %q %v", b, err)
		}
	})

	t.Run("remove keeps the data", func(t *testing.T) {
		n := len(e.states(a.key))
		e.request(t, a.requested("REMOVED"), nil)
		e.await(t, a.key, "REMOVED")
		if got := e.states(a.key)[n:]; !slices.Equal(got, []string{"DELETING", "REMOVED"}) {
			t.Fatalf("reported %v", got)
		}
		if e.imageExists(t, ref) {
			t.Fatal("the image is still there")
		}
		if _, err := os.Stat(filepath.Join(dataDir, "stopped")); err != nil {
			t.Fatalf("remove deleted the data: %v", err)
		}
	})

	t.Run("uninstall deletes the data and releases the port", func(t *testing.T) {
		e.request(t, req, nil) // RUNNING again
		e.await(t, a.key, "RUNNING")
		n := len(e.states(a.key))
		e.request(t, a.requested("UNINSTALLED"), nil)
		e.await(t, a.key, "UNINSTALLED")
		if got := e.states(a.key)[n:]; !slices.Equal(got, []string{"DELETING", "REMOVED", "UNINSTALLED"}) {
			t.Fatalf("reported %v", got)
		}
		if cts := e.containers(t, a.key); len(cts) != 0 || e.imageExists(t, ref) {
			t.Fatal("container or image left")
		}
		if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
			t.Fatalf("data dir after uninstall: %v", err)
		}
		st, err := store.Open(context.Background(), filepath.Join(e.agent.dir, "agent", "reagent.db"), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		hps, err := st.HostPorts(context.Background())
		if err != nil || len(hps) != 0 {
			t.Fatalf("host ports after uninstall: %v %v", hps, err)
		}
	})
}

// A malformed request_app_state is wamp.error.invalid_argument and changes
// nothing: no stored request, no report, no container.
func TestAppsMalformedRequest(t *testing.T) {
	e := appsStart(t, appsEnvOptions{})
	key := appKey(t)
	good := nx.Dict{"app_key": key, "app_name": "bad", "stage": "PROD", "target_state": "RUNNING", "newest_version": "1"}
	tests := []struct {
		name string
		edit func(nx.Dict)
		text string
	}{
		{"missing app_key", func(d nx.Dict) { delete(d, "app_key") }, "missing from payload app_key"},
		{"app_key as a string", func(d nx.Dict) { d["app_key"] = strconv.FormatUint(key, 10) }, "failed to parse app_key"},
		{"bad stage", func(d nx.Dict) { d["stage"] = "STAGING" }, `invalid stage "STAGING": must be DEV or PROD`},
		{"unknown state", func(d nx.Dict) { d["target_state"] = "JUMPING" }, `invalid target_state "JUMPING"`},
		{"wrong type", func(d nx.Dict) { d["request_update"] = "yes" }, "failed to parse request_update"},
		{"ports not a list", func(d nx.Dict) { d["ports"] = "80" }, "failed to parse ports"},
		{"path in the name", func(d nx.Dict) { d["app_name"] = "../../x" }, `invalid app name "../../x"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kw := nx.Dict{}
			for k, v := range good {
				kw[k] = v
			}
			tc.edit(kw)
			_, err := e.cloud.CallDevice(e.ctx, "system", e.serial, "request_app_state", nil, kw)
			uri, text := rpcErr(t, err)
			if uri != "wamp.error.invalid_argument" || !strings.HasPrefix(text, tc.text) {
				t.Fatalf("%s %q, want wamp.error.invalid_argument %q", uri, text, tc.text)
			}
		})
	}
	// A valid call on the same session proves the agent is alive and the
	// bad ones left no trace.
	other := app{key: appKey(t), name: "ok", version: "1"}
	e.push(t, other, "1", cmdJob)
	e.request(t, other.requested("PRESENT"), nil)
	e.await(t, other.key, "PRESENT")
	if got := e.states(key); len(got) != 0 {
		t.Fatalf("reports for the malformed app: %v", got)
	}
	st, err := store.Open(context.Background(), filepath.Join(e.agent.dir, "agent", "reagent.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.GetRequested(context.Background(), store.Key{AppKey: key, Stage: "PROD"}); err == nil {
		t.Fatal("a malformed request was stored")
	}
	if cts := e.containers(t, key); len(cts) != 0 {
		t.Fatal("a malformed request made a container")
	}
}
