package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gammazero/nexus/v3/client"
	"github.com/gammazero/nexus/v3/wamp"

	"reagent/src/config"
	"reagent/src/devcloud"
)

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// syncBuffer is an io.Writer safe for a command writing while the test
// reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// cli runs the program in-process against c and returns its output.
func cli(t *testing.T, c *devcloud.Cloud, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut syncBuffer
	full := append([]string{"studio", "--url", c.RouterURL(), "--registry", c.RegistryHost()}, args...)
	code = run(testCtx(t), full, &out, &errOut)
	return out.String(), errOut.String(), code
}

func mustCLI(t *testing.T, c *devcloud.Cloud, args ...string) string {
	t.Helper()
	out, errOut, code := cli(t, c, args...)
	if code != 0 {
		t.Fatalf("devcloud %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// joinDevice connects as the device with a plain nexus client.
func joinDevice(t *testing.T, c *devcloud.Cloud, f *config.Flock) *client.Client {
	t.Helper()
	cl, err := devcloud.Dial(testCtx(t), devcloud.DialOptions{URL: c.RouterURL(), AuthID: f.AuthID(), Secret: f.Secret.Reveal()})
	if err != nil {
		t.Fatalf("device joins: %v", err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

func newDevice(t *testing.T, c *devcloud.Cloud) *config.Flock {
	t.Helper()
	f, _, err := c.NewDevice(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// row finds the output line that starts with prefix.
func row(out, prefix string) []string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			return strings.Fields(l)
		}
	}
	return nil
}

// TestStudioDevicesShowsDisconnected: a device session that drops without
// GOODBYE shows DISCONNECTED in `studio devices` (its testament fired).
func TestStudioDevicesShowsDisconnected(t *testing.T) {
	c := devcloud.StartTest(t, devcloud.Options{})
	f := newDevice(t, c)
	dev := joinDevice(t, c, f)
	payload := wamp.Dict{"swarm_key": uint64(1), "device_key": uint64(f.DeviceKey), "serial_number": f.SerialNumber, "wamp_session_id": uint64(dev.ID())}
	if _, err := dev.Call(testCtx(t), string(wamp.MetaProcSessionAddTestament), nil, wamp.List{devcloud.TopicTestament, wamp.List{payload}, wamp.Dict{}}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := dev.Call(testCtx(t), devcloud.ProcUpdateDeviceStatus, nil, wamp.List{wamp.Dict{
		"swarm_key": uint64(1), "device_key": uint64(f.DeviceKey), "status": "CONNECTED", "wamp_session_id": uint64(dev.ID()),
		"stats": wamp.Dict{"cpu_usage": 12.5, "memory_used": uint64(1 << 30), "memory_total": uint64(4 << 30)}, "tunnel_capable": true,
	}}, nil, nil); err != nil {
		t.Fatal(err)
	}
	r := row(mustCLI(t, c, "devices"), f.SerialNumber)
	if len(r) < 4 || r[1] != f.AuthID() || r[3] != "CONNECTED" || !strings.Contains(strings.Join(r, " "), "12.5%") ||
		!strings.Contains(strings.Join(r, " "), "1.0/4.0GiB") {
		t.Fatalf("connected row %q", r)
	}

	// Drop every websocket without GOODBYE, as a crashed link does.
	if err := c.StopRouter(); err != nil {
		t.Fatal(err)
	}
	if err := c.AwaitDeviceStatus(testCtx(t), f.SerialNumber, "DISCONNECTED"); err != nil {
		t.Fatal(err)
	}
	if err := c.StartRouter(); err != nil {
		t.Fatal(err)
	}
	r = row(mustCLI(t, c, "devices"), f.SerialNumber)
	if len(r) < 4 || r[3] != "DISCONNECTED" || !strings.Contains(strings.Join(r, " "), "12.5%") {
		t.Fatalf("disconnected row %q", r)
	}
}

// TestStudioRequestAndApps: request stores the state and sends the
// reference kwargs; apps shows requested vs reported.
func TestStudioRequestAndApps(t *testing.T) {
	c := devcloud.StartTest(t, devcloud.Options{Users: []devcloud.User{
		{AuthID: "100", Secret: "pw", Privileges: []string{"READ", "OPERATE"}},
		{AuthID: "200", Secret: "pw", Privileges: []string{"READ"}},
	}})
	f := newDevice(t, c)
	dev := joinDevice(t, c, f)
	got := make(chan *wamp.Invocation, 2)
	if err := dev.Register(devcloud.DeviceProcedure(f.SerialNumber, "request_app_state"), func(_ context.Context, inv *wamp.Invocation) client.InvokeResult {
		got <- inv
		return client.InvokeResult{}
	}, wamp.Dict{"force_reregister": true}); err != nil {
		t.Fatal(err)
	}

	out := mustCLI(t, c, "--user", "100", "--secret", "pw", "request", f.SerialNumber, "--key", "1", "--name", "demo", "--stage", "prod",
		"--target", "running", "--version", "1.0.0", "--env", "GREETING=hi", "--port", "8080/tcp:20001", "--kw", `instance_key=7`)
	if !strings.Contains(out, "requested app 1 demo (PROD) RUNNING") {
		t.Fatalf("output %q", out)
	}
	inv := <-got
	kw := inv.ArgumentsKw
	want := map[string]any{
		"app_key": uint64(1), "app_name": "demo", "stage": "PROD", "target_state": "RUNNING", "current_state": "REMOVED",
		"newest_version": "1.0.0", "version": "1.0.0", "requestor_account_key": uint64(100), "instance_key": uint64(7),
		"request_update": false, "app_cred_epoch": uint64(0),
	}
	for k, v := range want {
		if kw[k] != v {
			t.Errorf("kwarg %s = %#v, want %#v", k, kw[k], v)
		}
	}
	if env := kw["environment"].(map[string]any)["GREETING"]; !reflect.DeepEqual(env, map[string]any{"value": "hi"}) {
		t.Errorf("environment %#v", kw["environment"])
	}
	port := kw["ports"].([]any)[0].(map[string]any)
	if port["port"] != uint64(8080) || port["protocol"] != "tcp" || port["remote_port"] != uint64(20001) || port["main"] != true {
		t.Errorf("ports %#v", kw["ports"])
	}
	if inv.Details["caller_authid"] != "100" {
		t.Errorf("caller %v", inv.Details["caller_authid"])
	}

	// READ alone may look but not request.
	if _, errOut, code := cli(t, c, "--user", "200", "--secret", "pw", "request", f.SerialNumber, "--key", "1", "--name", "demo", "--target", "REMOVED"); code != 1 || !strings.Contains(errOut, "not_authorized") {
		t.Fatalf("READ-only request: exit %d %s", code, errOut)
	}

	if _, err := dev.Call(testCtx(t), devcloud.ProcUpdateAppOnDevice, nil, wamp.List{wamp.Dict{
		"app_key": uint64(1), "device_key": uint64(f.DeviceKey), "swarm_key": uint64(1), "serial_number": f.SerialNumber,
		"stage": "PROD", "state": "DOWNLOADING", "updateStatus": "",
	}}, nil, nil); err != nil {
		t.Fatal(err)
	}
	r := row(mustCLI(t, c, "--user", "200", "--secret", "pw", "apps", f.SerialNumber), "1 ")
	if !reflect.DeepEqual(r[:6], []string{"1", "demo", "PROD", "RUNNING", "1.0.0", "DOWNLOADING"}) {
		t.Fatalf("apps row %q", r)
	}
	if _, errOut, code := cli(t, c, "apps", "no-such-device"); code != 1 || !strings.Contains(errOut, "no device") {
		t.Fatalf("unknown device: %d %s", code, errOut)
	}
}

func TestStudioCall(t *testing.T) {
	c := devcloud.StartTest(t, devcloud.Options{})
	f := newDevice(t, c)
	dev := joinDevice(t, c, f)
	if err := dev.Register(devcloud.DeviceProcedure(f.SerialNumber, "echo"), func(_ context.Context, inv *wamp.Invocation) client.InvokeResult {
		if len(inv.Arguments) > 0 && inv.Arguments[0] == "fail" {
			return client.InvokeResult{Err: wamp.ErrCanceled, Args: wamp.List{wamp.Dict{"error": "asked to fail"}}}
		}
		return client.InvokeResult{Args: inv.Arguments, Kwargs: inv.ArgumentsKw}
	}, wamp.Dict{"force_reregister": true}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"args only", []string{`[{"containerName":"prod_1_demo","tail":5}]`}, 0, "[\n  {\n    \"containerName\": \"prod_1_demo\",\n    \"tail\": 5\n  }\n]\n"},
		{"no args", nil, 0, "[]\n"},
		{"kwargs", []string{`[]`, `{"a":1}`}, 0, "{\n  \"args\": [],\n  \"kwargs\": {\n    \"a\": 1\n  }\n}\n"},
		{"error", []string{`["fail"]`}, 1, "\"error\": \"wamp.error.canceled\""},
		{"bad json", []string{`[`}, 1, ""},
		{"kwargs not an object", []string{`[]`, `[1]`}, 1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := cli(t, c, append([]string{"call", f.SerialNumber, "echo"}, tt.args...)...)
			if code != tt.code || !strings.Contains(out, tt.want) {
				t.Fatalf("exit %d (want %d), stdout %q, stderr %q", code, tt.code, out, errOut)
			}
		})
	}
	if _, _, code := cli(t, c, "call", f.SerialNumber); code != 2 {
		t.Fatalf("missing procedure: exit %d", code)
	}
}

func TestStudioLogs(t *testing.T) {
	c := devcloud.StartTest(t, devcloud.Options{})
	f := newDevice(t, c)
	dev := joinDevice(t, c, f)
	if err := dev.Register(devcloud.DeviceProcedure(f.SerialNumber, "get_app_log_history"), func(context.Context, *wamp.Invocation) client.InvokeResult {
		return client.InvokeResult{Args: wamp.List{wamp.List{"old line 1", "old line 2"}}}
	}, nil); err != nil {
		t.Fatal(err)
	}
	topic := devcloud.LogTopic(f.SerialNumber, "prod_1_demo")

	ctx, cancel := context.WithCancel(testCtx(t))
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"studio", "--url", c.RouterURL(), "logs", f.SerialNumber, "prod_1_demo"}, &out, &errOut)
	}()
	// Publish until the follower has subscribed and printed a line.
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !strings.Contains(out.String(), "new line") {
		select {
		case <-tick.C:
			if err := dev.Publish(topic, nil, wamp.List{"new line\n"}, nil); err != nil {
				t.Fatal(err)
			}
		case <-deadline.C:
			t.Fatalf("no line followed; stdout %q stderr %q", out.String(), errOut.String())
		}
	}
	for _, p := range []wamp.List{
		{wamp.Dict{"type": "build", "chunk": "Image built successfully"}},
		{wamp.Dict{"type": "build", "chunk": "LOGGER_CLEAR"}},
		{wamp.Dict{"id": "app.tgz", "status": "Transfer Progress:", "progress": "50.000%"}},
		{"last line"},
	} {
		if err := dev.Publish(topic, wamp.Dict{wamp.OptAcknowledge: true}, p, nil); err != nil {
			t.Fatal(err)
		}
	}
	for !strings.Contains(out.String(), "last line") {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("stdout %q", out.String())
		}
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("logs exit %d: %s", code, errOut.String())
	}
	s := out.String()
	for _, want := range []string{"old line 1\nold line 2\n", "Image built successfully\n", "--- log cleared ---\n", "Transfer Progress: app.tgz 50.000%\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
}

// TestServe runs the program's serve with every flag and checks the
// wiring: devices from -device, users from -users and -user, the system
// secret, the data dir.
func TestServe(t *testing.T) {
	dir := t.TempDir()
	c0 := devcloud.StartTest(t, devcloud.Options{}) // only to mint a device file
	f, devFile, err := c0.NewDevice(dir)
	if err != nil {
		t.Fatal(err)
	}
	usersFile := filepath.Join(dir, "users.json")
	if err := os.WriteFile(usersFile, []byte(`[{"authid":"100","secret":"file-pw","privileges":["READ"]}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")

	ctx, cancel := context.WithCancel(testCtx(t))
	ready := make(chan *devcloud.Cloud, 1)
	done := make(chan int, 1)
	var out, errOut syncBuffer
	go func() {
		done <- serve(ctx, []string{"-router-addr", "127.0.0.1:0", "-registry-addr", "127.0.0.1:0", "-data", data,
			"-device", devFile, "-users", usersFile, "-user", "200:flag-pw:DEVELOP", "-system-secret", "sys-pw",
			"-port-range", "31000-31001", "-log-level", "warn"},
			serveEnv{stdout: &out, stderr: &errOut, onReady: func(c *devcloud.Cloud) { ready <- c }})
	}()
	var c *devcloud.Cloud
	select {
	case c = <-ready:
	case code := <-done:
		t.Fatalf("serve exited %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), c.RouterURL()) || !strings.Contains(out.String(), c.RegistryHost()) {
		t.Fatalf("banner %q", out.String())
	}
	join := func(authid, secret string) error {
		cl, err := devcloud.Dial(testCtx(t), devcloud.DialOptions{URL: c.RouterURL(), AuthID: authid, Secret: secret})
		if err == nil {
			cl.Close()
		}
		return err
	}
	for _, id := range [][2]string{{f.AuthID(), f.Secret.Reveal()}, {"100", "file-pw"}, {"200", "flag-pw"}, {"system", "sys-pw"}} {
		if err := join(id[0], id[1]); err != nil {
			t.Errorf("%s cannot join: %v", id[0], err)
		}
	}
	if err := join("system", devcloud.DefaultSystemSecret); err == nil {
		t.Error("-system-secret did not replace the default")
	}
	dev, err := devcloud.Dial(testCtx(t), devcloud.DialOptions{URL: c.RouterURL(), AuthID: f.AuthID(), Secret: f.Secret.Reveal()})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	check := func(user uint64, priv string) any {
		res, err := dev.Call(testCtx(t), devcloud.ProcCheckPrivilege, nil, wamp.List{wamp.Dict{"privilege": priv, "entity": "DEVICE",
			"entity_key": uint64(f.DeviceKey), "requestor_account_key": user, "swarm_key": uint64(1)}}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return res.Arguments[0]
	}
	if check(100, "READ") != true || check(100, "DEVELOP") != false || check(200, "DEVELOP") != true {
		t.Error("check_privilege does not follow -users / -user")
	}
	res, err := dev.Call(testCtx(t), devcloud.ProcExposePort, nil, wamp.List{wamp.Dict{"port": uint64(0), "protocol": "tcp"}}, nil, nil)
	if err != nil || res.Arguments[0].(map[string]any)["remote_port"] != uint64(31000) {
		t.Errorf("expose_port ignores -port-range: %v %v", res, err)
	}

	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("serve exit %d: %s", code, errOut.String())
	}
	if _, err := os.Stat(filepath.Join(data, "devcloud.db")); err != nil {
		t.Fatalf("data dir: %v", err)
	}
}

func TestServeRejectsBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"unknown flag", []string{"-nope"}},
		{"stray argument", []string{"extra"}},
		{"bad port range", []string{"-port-range", "10-5"}},
		{"bad user", []string{"-user", "alice:pw:READ"}},
		{"unknown privilege", []string{"-user", "100:pw:FLY"}},
		{"missing users file", []string{"-users", "/nonexistent/users.json"}},
		{"bad log level", []string{"-log-level", "loud"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut syncBuffer
			if code := serve(testCtx(t), tt.args, serveEnv{stdout: &out, stderr: &errOut}); code != 2 {
				t.Fatalf("exit %d, want 2 (%s)", code, errOut.String())
			}
		})
	}
	var out, errOut syncBuffer
	if code := serve(testCtx(t), []string{"-router-addr", "127.0.0.1:0", "-registry-addr", "127.0.0.1:0", "-device", "/nonexistent.flock"},
		serveEnv{stdout: &out, stderr: &errOut}); code != 1 {
		t.Fatalf("missing device file: exit %d", code)
	}
}
