package agent

import (
	"context"
	"errors"
	"os"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	nx "github.com/gammazero/nexus/v3/wamp"

	"reagent/src/config"
	"reagent/src/devcloud"
	"reagent/src/errdefs"
	"reagent/src/release"
	"reagent/src/wamp"
)

var statsKeys = []string{"cpu_count", "cpu_usage", "memory_total", "memory_used", "memory_available",
	"storage_total", "storage_used", "storage_free", "docker_apps_total", "docker_apps_used",
	"docker_apps_free", "docker_apps_mounted"}

// The agent connects to devcloud and runs the on-connect sequence:
// CONFIGURING then CONNECTED with stats, the architecture report, and the
// device is callable.
func TestAgentConnectsAndReports(t *testing.T) {
	cloud := startCloud(t)
	a := startAgent(t, cloud, agentOptions{})
	serial := a.flock.SerialNumber
	ctx := deadline(t, 20*time.Second)
	if err := cloud.AwaitDeviceStatus(ctx, serial, "CONNECTED"); err != nil {
		t.Fatal(err)
	}
	hist := cloud.StatusHistory(serial)
	if len(hist) < 2 || hist[0].Status != "CONFIGURING" || hist[1].Status != "CONNECTED" {
		t.Fatalf("status history = %+v, want CONFIGURING then CONNECTED", hist)
	}
	for _, rec := range hist[:2] {
		for _, k := range statsKeys {
			if _, ok := rec.Stats[k]; !ok {
				t.Fatalf("%s report lacks stats.%s: %v", rec.Status, k, rec.Stats)
			}
		}
		if rec.SessionID == 0 || rec.TunnelCapable == nil {
			t.Fatalf("%s report: session %d, tunnel_capable %v", rec.Status, rec.SessionID, rec.TunnelCapable)
		}
	}
	if n, _ := wamp.ToUint64(hist[1].Stats["cpu_count"], false); n == 0 {
		t.Fatalf("cpu_count = %v", hist[1].Stats["cpu_count"])
	}
	calls := cloud.Calls("reswarm.devices.update_device_architecture")
	if len(calls) != 1 {
		t.Fatalf("%d architecture calls", len(calls))
	}
	arch, _ := wamp.AsDict(calls[0].Args[0])
	if arch["architecture"] != release.Arch() || arch["agent_version"] != release.Version() ||
		!strings.HasPrefix(arch["os"].(string), "linux") {
		t.Fatalf("architecture payload = %v", arch)
	}
	for _, proc := range []string{"reswarm.devices.read_device_metadata", "reswarm.devices.get_app_cred_key"} {
		if len(cloud.Calls(proc)) != 1 {
			t.Fatalf("%s called %d times", proc, len(cloud.Calls(proc)))
		}
	}
	if a.sess.AppCredKey() != cloud.AppCredKey(serial) || a.sess.AppCredKey() == "" {
		t.Fatalf("app cred key %q, cloud %q", a.sess.AppCredKey(), cloud.AppCredKey(serial))
	}
	res := callOK(t, ctx, cloud, "system", serial, "wamp_connection_established", nil, nil)
	if len(res.Arguments) != 1 || res.Arguments[0] != "Hello :-)" {
		t.Fatalf("wamp_connection_established = %v", res.Arguments)
	}
	// devcloud records CONNECTED before its answer reaches the agent,
	// which counts itself connected only then.
	if err := await(ctx, a.sess.Connected); err != nil {
		t.Fatal("session does not say connected")
	}
}

// A router that goes away and comes back on the same port: the same agent
// reconnects, is callable within 5 s of the router's return and reports
// CONNECTED with a new session. The dropped session's testament fires.
func TestRouterRestart(t *testing.T) {
	cloud := startCloud(t)
	var states atomic.Int32 // OnStateChange notifications
	a := startAgent(t, cloud, agentOptions{register: func(s *wamp.Session) {
		s.OnStateChange(func(bool) { states.Add(1) })
	}})
	serial := a.flock.SerialNumber
	ctx := deadline(t, 30*time.Second)
	if err := cloud.AwaitDeviceStatus(ctx, serial, "CONNECTED"); err != nil {
		t.Fatal(err)
	}
	first, _ := cloud.DeviceStatus(serial)
	// devcloud records CONNECTED before the call's answer reaches the
	// agent; stopping the router in between would lose the first
	// "connected" notification, not a bug of the agent.
	if err := await(ctx, a.sess.Connected); err != nil {
		t.Fatal("agent never counted itself connected")
	}

	if err := cloud.StopRouter(); err != nil {
		t.Fatal(err)
	}
	// The agent notices the drop and the router publishes the testament of
	// the session that ended without GOODBYE.
	if err := await(ctx, func() bool { return !a.sess.Connected() }); err != nil {
		t.Fatal("agent still connected after StopRouter")
	}
	if err := await(ctx, func() bool { return hasTestament(cloud, serial, first.SessionID) }); err != nil {
		t.Fatalf("no testament for session %d: %v", first.SessionID, cloud.Testaments())
	}
	if err := cloud.StartRouter(); err != nil {
		t.Fatal(err)
	}
	back := deadline(t, 5*time.Second)
	err := await(back, func() bool {
		cctx, cancel := context.WithTimeout(back, time.Second)
		defer cancel()
		_, err := cloud.CallDevice(cctx, "system", serial, "wamp_connection_established", nil, nil)
		return err == nil
	})
	if err != nil {
		t.Fatal("agent not callable within 5 s of the router's return")
	}
	if err := await(back, func() bool {
		st, ok := cloud.DeviceStatus(serial)
		return ok && st.Status == "CONNECTED" && st.SessionID != first.SessionID
	}); err != nil {
		st, _ := cloud.DeviceStatus(serial)
		t.Fatalf("no CONNECTED from a new session within 5 s: %+v", st)
	}
	if err := await(ctx, func() bool { return states.Load() >= 3 }); err != nil {
		t.Fatalf("state notifications = %d, want connected, disconnected, connected", states.Load())
	}
}

func hasTestament(cloud *devcloud.Cloud, serial string, session uint64) bool {
	for _, p := range cloud.Testaments() {
		sid, _ := wamp.ToUint64(p["wamp_session_id"], false)
		if p["serial_number"] == serial && sid == session {
			return true
		}
	}
	return false
}

var allPrivileges = []wamp.Privilege{wamp.Read, wamp.Network, wamp.Maintain, wamp.Develop, wamp.Install, wamp.Operate}

// A Studio user whose check_privilege answers false gets
// wamp.error.not_authorized from every privileged procedure, and the
// handler never runs; a user holding the privilege gets through.
func TestPrivilegeDenied(t *testing.T) {
	cloud := startCloud(t)
	cloud.AddUser(devcloud.User{AuthID: "100", Secret: "nobody-secret"})
	cloud.AddUser(devcloud.User{AuthID: "101", Secret: "admin-secret",
		Privileges: []string{"READ", "NETWORK", "MAINTAIN", "DEVELOP", "INSTALL", "OPERATE"}})
	var ran atomic.Int32
	a := startAgent(t, cloud, agentOptions{register: func(s *wamp.Session) {
		for _, p := range allPrivileges {
			s.Register("test_"+strings.ToLower(string(p)), p, func(context.Context, *wamp.Call) (wamp.Result, error) {
				ran.Add(1)
				return wamp.Result{Args: []any{"ran"}}, nil
			})
		}
		s.RegisterDynamic("test_dynamic", func(_ context.Context, c *wamp.Call) (wamp.Privilege, error) {
			if c.Kwargs["current_state"] == "REMOVED" {
				return wamp.Install, nil
			}
			return wamp.Operate, nil
		}, func(context.Context, *wamp.Call) (wamp.Result, error) {
			ran.Add(1)
			return wamp.Result{}, nil
		})
	}})
	serial := a.flock.SerialNumber
	ctx := deadline(t, 30*time.Second)
	if err := cloud.AwaitDeviceStatus(ctx, serial, "CONNECTED"); err != nil {
		t.Fatal(err)
	}
	privileged := 0
	for name, p := range a.sess.Procedures() {
		if p == wamp.Public {
			continue
		}
		privileged++
		for _, kw := range []nx.Dict{nil, {"current_state": "REMOVED"}} {
			_, err := cloud.CallDevice(ctx, "100", serial, name, nx.List{nx.Dict{}}, kw)
			if err == nil {
				t.Fatalf("%s answered user 100 without the privilege", name)
			}
			if uri, text := rpcErr(t, err); uri != "wamp.error.not_authorized" || !strings.Contains(text, "insufficient privileges") {
				t.Fatalf("%s: %s %q, want wamp.error.not_authorized", name, uri, text)
			}
		}
	}
	if privileged < len(allPrivileges)+1 {
		t.Fatalf("only %d privileged procedures", privileged)
	}
	if n := ran.Load(); n != 0 {
		t.Fatalf("handlers ran %d times for a user without privileges", n)
	}
	// The same procedures for a user who holds the privileges, and for
	// system delegating to the user without them.
	for _, p := range allPrivileges {
		name := "test_" + strings.ToLower(string(p))
		callOK(t, ctx, cloud, "101", serial, name, nil, nil)
		_, err := cloud.CallDevice(ctx, "system", serial, name, nil, nx.Dict{"requestor_account_key": uint64(100)})
		if uri, _ := rpcErr(t, err); uri != "wamp.error.not_authorized" {
			t.Fatalf("system delegating to 100: %s", uri)
		}
		callOK(t, ctx, cloud, "system", serial, name, nil, nx.Dict{"requestor_account_key": "101"})
	}
	if n := ran.Load(); n != int32(2*len(allPrivileges)) {
		t.Fatalf("handlers ran %d times, want %d", n, 2*len(allPrivileges))
	}
}

// Malformed calls never take the agent down: every kind of bad input gets
// an ERROR in the reference shape (invalid_argument where the handler
// validates, canceled for a recovered panic) and the agent still answers.
func TestRobustness(t *testing.T) {
	cloud := startCloud(t)
	a := startAgent(t, cloud, agentOptions{register: func(s *wamp.Session) {
		s.Register("test_decode", wamp.Read, func(_ context.Context, c *wamp.Call) (wamp.Result, error) {
			d, err := c.Dict(0)
			if err != nil {
				return wamp.Result{}, err
			}
			name, err := wamp.String(d, "name", true)
			if err != nil {
				return wamp.Result{}, err
			}
			key, err := wamp.Uint64(d, "app_key", true, false)
			if err != nil {
				return wamp.Result{}, err
			}
			return wamp.Result{Args: []any{name, key}}, nil
		})
		s.Register("test_kwargs", wamp.Read, func(_ context.Context, c *wamp.Call) (wamp.Result, error) {
			if _, err := wamp.Bool(c.Kwargs, "cancel_transition", false); err != nil {
				return wamp.Result{}, err
			}
			return wamp.Result{}, nil
		})
		s.Register("test_careless", wamp.Read, func(_ context.Context, c *wamp.Call) (wamp.Result, error) {
			// Written like the reference: indexes without checking.
			return wamp.Result{Args: []any{c.Args[0].(map[string]any)["name"]}}, nil
		})
		s.Register("test_echo_size", wamp.Public, func(_ context.Context, c *wamp.Call) (wamp.Result, error) {
			s, _ := c.Args[0].(string)
			return wamp.Result{Args: []any{len(s)}}, nil
		})
	}})
	serial := a.flock.SerialNumber
	ctx := deadline(t, 60*time.Second)
	if err := cloud.AwaitDeviceStatus(ctx, serial, "CONNECTED"); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 5<<20)
	inputs := malformedCalls(big,
		malformedCall{"wrong-typed fields", nx.List{nx.Dict{"name": 5, "app_key": "seven"}}, nil},
		malformedCall{"negative key", nx.List{nx.Dict{"name": "a", "app_key": -1}}, nil},
		malformedCall{"wrong-typed kwargs", nil, nx.Dict{"cancel_transition": "yes", "app_key": []any{1}}},
		malformedCall{"bad delegation", nil, nx.Dict{"requestor_account_key": "not-a-number"}},
	)
	// Every registered procedure, except those whose valid defaults act on
	// this machine (a bare prune_images prunes the engine's dangling
	// images; the power procedures are covered with fakes in src/api).
	skip := map[string]bool{"prune_images": true, "system_reboot": true, "system_shutdown": true,
		"system_restart_agent": true, "execute_cmd": true}
	var procs []string
	for name := range a.sess.Procedures() {
		if !skip[name] {
			procs = append(procs, name)
		}
	}
	sort.Strings(procs)
	callMalformed(t, ctx, cloud, serial, procs, inputs)
	// The big payload arrived whole.
	res := callOK(t, ctx, cloud, "system", serial, "test_echo_size", nx.List{big}, nil)
	if n, _ := wamp.ToUint64(res.Arguments[0], false); n != uint64(len(big)) {
		t.Fatalf("5 MB string arrived as %v bytes", res.Arguments[0])
	}
	// Good input still works and the agent still answers.
	res = callOK(t, ctx, cloud, "system", serial, "test_decode", nx.List{nx.Dict{"name": "demo", "app_key": 7.0}}, nil)
	if res.Arguments[0] != "demo" {
		t.Fatalf("test_decode = %v", res.Arguments)
	}
	callOK(t, ctx, cloud, "system", serial, "wamp_connection_established", nil, nil)
	if _, ok := a.sess.Procedures()["device_handshake"]; ok {
		callOK(t, ctx, cloud, "system", serial, "device_handshake", nil, nil)
	}
	if !a.sess.Connected() {
		t.Fatal("agent disconnected")
	}
	logData := readFile(t, a.logFile)
	if !strings.Contains(logData, "procedure handler panicked") {
		t.Fatal("the careless handler's panic was not logged")
	}
}

// Wire errors keep their class for Go callers of Session.Call.
func TestSessionCallErrors(t *testing.T) {
	cloud := startCloud(t)
	a := startAgent(t, cloud, agentOptions{})
	ctx := deadline(t, 20*time.Second)
	if err := a.sess.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := a.sess.Call(ctx, "reswarm.devices.no_such_thing", nil, nil)
	var re *wamp.RemoteError
	if !errors.As(err, &re) || re.URI != "wamp.error.no_such_procedure" || !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("call of a missing procedure: %v", err)
	}
	if err := a.sess.Publish("reswarm.test.topic", []any{"x"}, nil, true); err != nil {
		t.Fatalf("acknowledged publish: %v", err)
	}
	if n := cloud.PublishCount("reswarm.test.topic"); n != 1 {
		t.Fatalf("publish count = %d", n)
	}
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.sess.Call(ctx, "reswarm.devices.get_app_cred_key", nil, nil); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("call after stop: %v", err)
	}
	if err := a.sess.Publish("reswarm.test.topic", nil, nil, false); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("publish after stop: %v", err)
	}
}

// read_device_metadata: names the cloud changed are saved into the .flock
// (atomically, 0600, unknown keys kept); unchanged metadata leaves the file
// alone.
func TestMetadataSavedToFlock(t *testing.T) {
	cloud := startCloud(t)
	unchanged := startAgent(t, cloud, agentOptions{})
	before := readFile(t, unchanged.path)
	renamed := startAgent(t, cloud, agentOptions{setup: func(fl *config.Flock) {
		if err := cloud.SetDeviceMetadata(fl.SerialNumber, "renamed-device", "other swarm", "bob", fl.SwarmKey); err != nil {
			t.Fatal(err)
		}
	}})
	ctx := deadline(t, 20*time.Second)
	for _, a := range []*testAgent{unchanged, renamed} {
		if err := cloud.AwaitDeviceStatus(ctx, a.flock.SerialNumber, "CONNECTED"); err != nil {
			t.Fatal(err)
		}
	}
	if after := readFile(t, unchanged.path); after != before {
		t.Fatalf("unchanged metadata rewrote the .flock:\n%s\n%s", before, after)
	}
	saved, err := config.LoadFlock(renamed.path)
	if err != nil {
		t.Fatal(err)
	}
	if saved.Name != "renamed-device" || saved.SwarmName != "other swarm" || saved.SwarmOwnerName != "bob" ||
		saved.Secret != renamed.flock.Secret || saved.SerialNumber != renamed.flock.SerialNumber {
		t.Fatalf("saved .flock = %+v", saved)
	}
	if st, err := os.Stat(renamed.path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %v, %v", st.Mode(), err)
	}
	if !strings.Contains(readFile(t, renamed.path), `"environment"`) {
		t.Fatal("the environment field was lost")
	}
}
