package devcloud

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/gammazero/nexus/v3/client"
	"github.com/gammazero/nexus/v3/wamp"

	"reagent/src/config"
)

// TestDeviceCallsEveryBackendProcedure joins as a device with a plain nexus
// client, calls every backend procedure with the reference payloads and
// checks what devcloud answered and stored.
func TestDeviceCallsEveryBackendProcedure(t *testing.T) {
	c := StartTest(t, Options{PortRange: [2]int{30000, 30002}})
	f := newDevice(t, c)
	dev := joinDevice(t, c.RouterURL(), f)
	serial, dkey, skey := f.SerialNumber, uint64(f.DeviceKey), uint64(f.SwarmKey)

	t.Run("read_device_metadata", func(t *testing.T) {
		got := callBackend(t, dev, ProcReadDeviceMetadata, wamp.Dict{"device_key": dkey})
		want := wamp.List{map[string]any{"device_name": f.Name, "swarm_name": "devcloud", "ownername": "developer", "swarm_key": skey}}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got %#v, want %#v", got, want)
		}
		if err := c.SetDeviceMetadata(serial, "renamed", "swarm-b", "alice", int64(skey)); err != nil {
			t.Fatal(err)
		}
		got = callBackend(t, dev, ProcReadDeviceMetadata, wamp.Dict{"device_key": dkey})
		want = wamp.List{map[string]any{"device_name": "renamed", "swarm_name": "swarm-b", "ownername": "alice", "swarm_key": skey}}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("after SetDeviceMetadata got %#v, want %#v", got, want)
		}
	})

	t.Run("get_app_cred_key", func(t *testing.T) {
		a := callBackend(t, dev, ProcGetAppCredKey)
		b := callBackend(t, dev, ProcGetAppCredKey)
		key, _ := a[0].(string)
		if len(key) < 32 || key != c.AppCredKey(serial) || !reflect.DeepEqual(a, b) {
			t.Fatalf("key %v then %v, AppCredKey %q", a, b, c.AppCredKey(serial))
		}
	})

	t.Run("update_device_status", func(t *testing.T) {
		stats := wamp.Dict{
			"cpu_count": 2, "cpu_usage": 12.5, "memory_total": 4096, "memory_used": 1024, "memory_available": 3072,
			"storage_total": 100, "storage_used": 40, "storage_free": 60, "docker_apps_total": 100,
			"docker_apps_used": 40, "docker_apps_free": 60, "docker_apps_mounted": false,
		}
		for _, status := range []string{"CONFIGURING", "CONNECTED"} {
			got := callBackend(t, dev, ProcUpdateDeviceStatus, wamp.Dict{
				"swarm_key": skey, "device_key": dkey, "status": status, "wamp_session_id": uint64(dev.ID()),
				"stats": stats, "tunnel_capable": true,
			})
			d, _ := got[0].(map[string]any)
			if u, _ := d["reswarmBaseURL"].(string); !strings.HasPrefix(u, "http://127.0.0.1:") {
				t.Fatalf("answer %#v has no reswarmBaseURL", got)
			}
		}
		hist := c.StatusHistory(serial)
		if len(hist) != 2 || hist[0].Status != "CONFIGURING" || hist[1].Status != "CONNECTED" {
			t.Fatalf("history %+v", hist)
		}
		last, ok := c.DeviceStatus(serial)
		if !ok || last.SessionID != uint64(dev.ID()) || last.TunnelCapable == nil || !*last.TunnelCapable || last.At.IsZero() {
			t.Fatalf("latest %+v", last)
		}
		if last.Stats["cpu_usage"] != 12.5 || last.Stats["memory_total"] != uint64(4096) || last.Stats["docker_apps_mounted"] != false || len(last.Stats) != 12 {
			t.Fatalf("stats %#v", last.Stats)
		}
	})

	t.Run("update_device_architecture", func(t *testing.T) {
		p := wamp.Dict{"swarm_key": skey, "device_key": dkey, "architecture": "armv7", "os": "linux debian 12", "arch": "arm", "variant": "v7", "agent_version": "0.1.0"}
		callBackend(t, dev, ProcUpdateDeviceArchitecture, p)
		got := c.DeviceArchitecture(serial)
		if got["architecture"] != "armv7" || got["variant"] != "v7" || got["agent_version"] != "0.1.0" || got["device_key"] != dkey {
			t.Fatalf("stored %#v", got)
		}
	})

	t.Run("get_requested_app_states", func(t *testing.T) {
		got := callBackend(t, dev, ProcGetRequestedAppStates, wamp.Dict{"device_key": dkey})
		if l, ok := got[0].([]any); len(got) != 1 || !ok || len(l) != 0 {
			t.Fatalf("empty cloud: %#v", got)
		}
		req := Requested{
			AppKey: 7, AppName: "Demo", Stage: "PROD", TargetState: "RUNNING", RequestorAccountKey: 100,
			DeviceOwnerAccountKey: 101, ReleaseKey: 3, NewReleaseKey: 4, NewestVersion: "1.0.0", AppCredEpoch: 2,
			Environment: map[string]any{"GREETING": map[string]any{"value": "hi"}, "N": map[string]any{"value": 3}},
			Ports:       []map[string]any{{"port": 80, "protocol": "http", "main": true}},
		}
		if err := c.SetRequested(serial, req); err != nil {
			t.Fatal(err)
		}
		got = callBackend(t, dev, ProcGetRequestedAppStates, wamp.Dict{"device_key": dkey})
		recs, _ := got[0].([]any)
		if len(recs) != 1 {
			t.Fatalf("records %#v", got)
		}
		rec := recs[0].(map[string]any)
		for _, k := range []string{"app_key", "app_name", "stage", "target_state", "current_state", "requestor_account_key",
			"device_owner_account_key", "release_key", "new_release_key", "request_update", "present_version",
			"newest_version", "environment", "environment_template", "docker_compose", "new_docker_compose", "ports", "app_cred_epoch"} {
			if _, ok := rec[k]; !ok {
				t.Errorf("record lacks %q", k)
			}
		}
		if rec["app_key"] != uint64(7) || rec["current_state"] != "REMOVED" || rec["target_state"] != "RUNNING" ||
			rec["newest_version"] != "1.0.0" || rec["app_cred_epoch"] != uint64(2) || rec["docker_compose"] != nil {
			t.Fatalf("record %#v", rec)
		}
		env := rec["environment"].(map[string]any)["N"].(map[string]any)
		if env["value"] != uint64(3) {
			t.Fatalf("env number came back as %#v", env["value"])
		}
		ports := rec["ports"].([]any)
		if p := ports[0].(map[string]any); p["port"] != uint64(80) || p["main"] != true {
			t.Fatalf("ports %#v", ports)
		}
	})

	t.Run("update_app_on_device", func(t *testing.T) {
		for _, state := range []string{"DOWNLOADING", "PRESENT", "STARTING", "RUNNING"} {
			callBackend(t, dev, ProcUpdateAppOnDevice, wamp.Dict{
				"app_key": uint64(7), "device_key": dkey, "swarm_key": skey, "serial_number": serial, "stage": "PROD",
				"state": state, "device_to_app_key": uint64(0), "requestor_account_key": uint64(100), "release_key": uint64(3),
				"request_update": false, "release_build": false, "updateStatus": "",
			})
		}
		if err := c.AwaitAppState(testCtx(t), serial, 7, "PROD", "RUNNING"); err != nil {
			t.Fatal(err)
		}
		reps := c.AppReports(serial)
		if len(reps) != 4 || reps[0].State != "DOWNLOADING" || reps[3].State != "RUNNING" || reps[3].Seq <= reps[0].Seq ||
			reps[3].Payload["serial_number"] != serial || reps[3].At.Before(reps[0].At) {
			t.Fatalf("reports %+v", reps)
		}
		if r := c.RequestedApps(serial); len(r) != 1 || r[0].CurrentState != "RUNNING" {
			t.Fatalf("requested state does not follow the report: %+v", r)
		}
		ports := wamp.List{wamp.Dict{"name": "web", "port": uint64(80), "protocol": "tcp", "remote_port": uint64(30000), "host_port": uint64(41000)}}
		callBackend(t, dev, ProcUpdateAppOnDevice, wamp.Dict{"app_key": uint64(7), "device_key": dkey, "swarm_key": skey, "stage": "PROD", "ports": ports})
		pr := c.PortReports(serial)
		if len(pr) != 1 || pr[0]["app_key"] != uint64(7) || pr[0]["ports"].([]any)[0].(map[string]any)["host_port"] != uint64(41000) {
			t.Fatalf("port reports %#v", pr)
		}
		if len(c.AppReports(serial)) != 4 {
			t.Fatal("a port save was stored as a state report")
		}
		_, err := dev.Call(testCtx(t), ProcUpdateAppOnDevice, nil, wamp.List{wamp.Dict{"app_key": uint64(7)}}, nil, nil)
		if re := rpcError(t, err); re.Err.Error != wamp.ErrInvalidArgument {
			t.Fatalf("neither shape: %v", err)
		}
	})

	t.Run("get_registry_token", func(t *testing.T) {
		got := callBackend(t, dev, ProcGetRegistryToken, wamp.Dict{"callerID": uint64(42)})
		if !reflect.DeepEqual(got, wamp.List{"devcloud-token-42"}) || c.RegistryToken(42) != "devcloud-token-42" {
			t.Fatalf("token %#v", got)
		}
	})

	t.Run("expose_port and close_port", func(t *testing.T) {
		expose := func(port uint64) (uint64, error) {
			res, err := dev.Call(testCtx(t), ProcExposePort, nil, wamp.List{wamp.Dict{"port": port, "protocol": "tcp"}}, wamp.Dict{}, nil)
			if err != nil {
				return 0, err
			}
			p, _ := asUint64(res.Arguments[0].(map[string]any)["remote_port"])
			return p, nil
		}
		if p, err := expose(30001); err != nil || p != 30001 {
			t.Fatalf("requested free port: %d, %v", p, err)
		}
		if p, err := expose(0); err != nil || p != 30000 {
			t.Fatalf("any port: %d, %v", p, err)
		}
		if _, err := expose(30001); err == nil || !strings.Contains(err.Error(), "Duplicate value") {
			t.Fatalf("same port again: %v", err)
		}
		if p, err := expose(0); err != nil || p != 30002 {
			t.Fatalf("last port: %d, %v", p, err)
		}
		if _, err := expose(0); err == nil {
			t.Fatal("range exhausted, yet a port was given")
		}
		callBackend(t, dev, ProcClosePort, wamp.Dict{"port": uint64(30001), "protocol": "tcp"})
		if p, err := expose(0); err != nil || p != 30001 {
			t.Fatalf("released port is not reused: %d, %v", p, err)
		}
	})

	t.Run("calls are recorded with the caller", func(t *testing.T) {
		calls := c.Calls(ProcGetRegistryToken)
		if len(calls) != 1 || calls[0].CallerAuthID != f.AuthID() || calls[0].At.IsZero() {
			t.Fatalf("calls %+v", calls)
		}
		if p := calls[0].Args[0].(map[string]any); p["callerID"] != uint64(42) {
			t.Fatalf("args %#v", calls[0].Args)
		}
		if len(c.Calls("")) < 10 {
			t.Fatalf("all calls: %d", len(c.Calls("")))
		}
	})
}

// TestDeviceMayOnlyActForItself: a device cannot read or write another
// device's data, and non-devices name the device by device_key.
func TestDeviceMayOnlyActForItself(t *testing.T) {
	c := StartTest(t, Options{})
	a, b := newDevice(t, c), newDevice(t, c)
	dev := joinDevice(t, c.RouterURL(), a)
	_, err := dev.Call(testCtx(t), ProcReadDeviceMetadata, nil, wamp.List{wamp.Dict{"device_key": uint64(b.DeviceKey)}}, nil, nil)
	if re := rpcError(t, err); re.Err.Error != wamp.ErrNotAuthorized {
		t.Fatalf("device read another's metadata: %v", err)
	}
	sys, err := c.Session(testCtx(t), SystemAuthID)
	if err != nil {
		t.Fatal(err)
	}
	got := callBackend(t, sys, ProcReadDeviceMetadata, wamp.Dict{"device_key": uint64(b.DeviceKey)})
	if got[0].(map[string]any)["device_name"] != b.Name {
		t.Fatalf("system read %#v", got)
	}
	if err := dev.Register(DeviceProcedure(b.SerialNumber, "request_app_state"), nil, wamp.Dict{"force_reregister": true}); err == nil {
		t.Fatal("a device registered another device's procedure")
	}
	if _, err := dev.Call(testCtx(t), ProcStudioDevices, nil, nil, nil, nil); err == nil {
		t.Fatal("a device called a Studio procedure")
	}
	c.AddUser(User{AuthID: "100", Secret: "s", Privileges: Privileges})
	user, err := c.Session(testCtx(t), "100")
	if err != nil {
		t.Fatal(err)
	}
	_, err = user.Call(testCtx(t), ProcUpdateDeviceStatus, nil, wamp.List{wamp.Dict{"device_key": uint64(a.DeviceKey), "status": "CONNECTED"}}, nil, nil)
	if re := rpcError(t, err); re.Err.Error != wamp.ErrNotAuthorized {
		t.Fatalf("a Studio user wrote device status: %v", err)
	}
	if len(c.StatusHistory(a.SerialNumber)) != 0 {
		t.Fatal("status stored")
	}
	if err := user.Register(DeviceProcedure(a.SerialNumber, "request_app_state"), nil, nil); err == nil {
		t.Fatal("a Studio user registered a device procedure")
	}
}

func TestCheckPrivilegeFromUsersFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.json")
	data := `[{"authid": "100", "secret": "s-100", "privileges": ["READ", "operate"]},
	          {"authid": "200", "secret": "s-200", "privileges": []}]`
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	users, err := LoadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	c := StartTest(t, Options{Users: users})
	f := newDevice(t, c)
	dev := joinDevice(t, c.RouterURL(), f)

	tests := []struct {
		name      string
		requestor any
		privilege string
		want      bool
	}{
		{"granted", uint64(100), "READ", true},
		{"granted lower-case in file", uint64(100), "OPERATE", true},
		{"not granted", uint64(100), "DEVELOP", false},
		{"user without privileges", uint64(200), "READ", false},
		{"unknown user", uint64(300), "READ", false},
		{"key as float", float64(100), "READ", true},
		{"key as string", "100", "READ", true},
		{"key as negative int", int64(-1), "READ", false},
		{"system", "system", "MAINTAIN", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := dev.Call(testCtx(t), ProcCheckPrivilege, nil, wamp.List{wamp.Dict{
				"privilege": tt.privilege, "entity": "DEVICE", "entity_key": uint64(f.DeviceKey),
				"requestor_account_key": tt.requestor, "swarm_key": uint64(f.SwarmKey),
			}}, nil, nil)
			if tt.name == "key as negative int" {
				if err == nil {
					t.Fatal("a negative account key was accepted")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(res.Arguments, wamp.List{tt.want}) {
				t.Fatalf("got %#v, want [%v]", res.Arguments, tt.want)
			}
		})
	}

	// The users of the file can join with their secrets.
	for _, u := range users {
		cl, err := dial(testCtx(t), c.RouterURL(), u.AuthID, u.Secret)
		if err != nil {
			t.Fatalf("user %s joins: %v", u.AuthID, err)
		}
		if role := cl.RealmDetails()["authrole"]; role != RoleUser {
			t.Fatalf("user %s has role %v", u.AuthID, role)
		}
		cl.Close()
	}
}

func TestWrongSecretAndUnknownAuthIDRejected(t *testing.T) {
	c := StartTest(t, Options{Users: []User{{AuthID: "100", Secret: "right"}}})
	f := newDevice(t, c)
	tests := []struct {
		name, authid, secret, want string
	}{
		{"device wrong secret", f.AuthID(), "wrong", errBadSignature},
		{"user wrong secret", "100", "wrong", errBadSignature},
		{"system wrong secret", "system", "wrong", errBadSignature},
		{"unknown device", "1-999999", f.Secret.Reveal(), `no user with authid "1-999999"`},
		{"unknown user", "555", "x", `no user with authid "555"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// nexus's router may close the connection before its ABORT
			// is sent; the client then only sees the close. Refused it
			// is either way; the reason must come within a few tries.
			var err error
			for try := 0; try < 5; try++ {
				var cl *client.Client
				cl, err = dial(testCtx(t), c.RouterURL(), tt.authid, tt.secret)
				if err == nil {
					cl.Close()
					t.Fatal("joined")
				}
				if !strings.Contains(err.Error(), "receive channel closed") {
					break
				}
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
		})
	}
	// and the right secrets work
	for _, id := range [][2]string{{f.AuthID(), f.Secret.Reveal()}, {"100", "right"}, {"system", DefaultSystemSecret}} {
		cl, err := dial(testCtx(t), c.RouterURL(), id[0], id[1])
		if err != nil {
			t.Fatalf("%s: %v", id[0], err)
		}
		cl.Close()
	}
}

// TestSwarmKeyChangeChangesAuthID: read_device_metadata can move a device
// to another swarm; its authid follows, the old one stops working.
func TestSwarmKeyChangeChangesAuthID(t *testing.T) {
	c := StartTest(t, Options{})
	f := newDevice(t, c)
	if err := c.SetDeviceMetadata(f.SerialNumber, f.Name, "other", "bob", 5); err != nil {
		t.Fatal(err)
	}
	if _, err := dial(testCtx(t), c.RouterURL(), f.AuthID(), f.Secret.Reveal()); err == nil {
		t.Fatal("old authid still accepted")
	}
	cl, err := dial(testCtx(t), c.RouterURL(), fmt.Sprintf("5-%d", f.DeviceKey), f.Secret.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := callBackend(t, cl, ProcReadDeviceMetadata, wamp.Dict{"device_key": uint64(f.DeviceKey)})
	if got[0].(map[string]any)["swarm_key"] != uint64(5) {
		t.Fatalf("metadata %#v", got)
	}
}

func TestDeviceFilesAndNewDeviceFile(t *testing.T) {
	c := StartTest(t, Options{})
	f, path, err := c.NewDevice(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("device file %v %v", st, err)
	}
	loaded, err := config.LoadFlock(path)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.DeviceEndpointURL != c.RouterURL() || loaded.DockerRegistryURL != c.RegistryHost()+"/" ||
		loaded.DockerMainRepository != "apps/" || loaded.Environment != "local" || loaded.SwarmKey != 1 ||
		loaded.Secret.Reveal() != f.Secret.Reveal() {
		t.Fatalf("device file %+v", loaded)
	}
	g := newDevice(t, c)
	if g.DeviceKey == f.DeviceKey || g.SerialNumber == f.SerialNumber {
		t.Fatal("two new devices share keys")
	}

	// A second cloud loads the same file with Options.DeviceFiles.
	c2 := StartTest(t, Options{DeviceFiles: []string{path}})
	joinDevice(t, c2.RouterURL(), loaded)
	if _, err := Start(testCtx(t), Options{DeviceFiles: []string{filepath.Join(t.TempDir(), "missing.flock")}}); err == nil {
		t.Fatal("a missing device file was accepted")
	}
}
