package devcloud

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gammazero/nexus/v3/client"
	"github.com/gammazero/nexus/v3/wamp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"reagent/src/config"
	"reagent/src/release"
	"reagent/src/testimage"
)

// addTestament installs the reference testament for the device session.
func addTestament(t *testing.T, dev *client.Client, f *config.Flock) wamp.Dict {
	t.Helper()
	payload := wamp.Dict{"swarm_key": uint64(f.SwarmKey), "device_key": uint64(f.DeviceKey), "serial_number": f.SerialNumber, "wamp_session_id": uint64(dev.ID())}
	_, err := dev.Call(testCtx(t), string(wamp.MetaProcSessionAddTestament), nil, wamp.List{TopicTestament, wamp.List{payload}, wamp.Dict{}}, nil, nil)
	if err != nil {
		t.Fatalf("add testament: %v", err)
	}
	return payload
}

func reportConnected(t *testing.T, dev *client.Client, f *config.Flock) {
	t.Helper()
	callBackend(t, dev, ProcUpdateDeviceStatus, wamp.Dict{"swarm_key": uint64(f.SwarmKey), "device_key": uint64(f.DeviceKey),
		"status": "CONNECTED", "wamp_session_id": uint64(dev.ID()), "stats": wamp.Dict{}, "tunnel_capable": false})
}

// TestTestamentMarksDisconnected: a device whose link dies without GOODBYE
// is DISCONNECTED through its testament.
func TestTestamentMarksDisconnected(t *testing.T) {
	c := StartTest(t, Options{})
	f := newDevice(t, c)
	proxy := newCutProxy(t, strings.TrimPrefix(strings.TrimSuffix(c.RouterURL(), RouterPath), "ws://"))
	dev := joinDevice(t, "ws://"+proxy.addr()+RouterPath, f)
	payload := addTestament(t, dev, f)
	reportConnected(t, dev, f)

	proxy.cut()
	if err := c.AwaitDeviceStatus(testCtx(t), f.SerialNumber, "DISCONNECTED"); err != nil {
		t.Fatal(err)
	}
	hist := c.StatusHistory(f.SerialNumber)
	if len(hist) != 2 || hist[0].Status != "CONNECTED" || hist[1].SessionID != uint64(dev.ID()) {
		t.Fatalf("history %+v", hist)
	}
	ts := c.Testaments()
	if len(ts) != 1 || ts[0]["serial_number"] != payload["serial_number"] || ts[0]["wamp_session_id"] != payload["wamp_session_id"] {
		t.Fatalf("testaments %#v", ts)
	}
}

// TestOldSessionTestamentAfterReconnect: the testament of a session that
// is only noticed gone after the device reconnected does not mark the
// connected device DISCONNECTED.
func TestOldSessionTestamentAfterReconnect(t *testing.T) {
	c := StartTest(t, Options{})
	f := newDevice(t, c)
	proxy := newCutProxy(t, strings.TrimPrefix(strings.TrimSuffix(c.RouterURL(), RouterPath), "ws://"))
	old := joinDevice(t, "ws://"+proxy.addr()+RouterPath, f)
	addTestament(t, old, f)
	reportConnected(t, old, f)

	fresh := joinDevice(t, c.RouterURL(), f)
	reportConnected(t, fresh, f)
	proxy.cut()
	ctx := testCtx(t)
	for len(c.Testaments()) == 0 { // the testament is recorded before it is judged
		select {
		case <-c.chg.wait():
		case <-ctx.Done():
			t.Fatal("no testament")
		}
	}
	c.bg.Wait()
	if st, _ := c.DeviceStatus(f.SerialNumber); st.Status != "CONNECTED" || st.SessionID != uint64(fresh.ID()) {
		t.Fatalf("status %+v", st)
	}
}

// TestStopStartRouter: StopRouter drops every session without GOODBYE
// (testaments fire), the port stays the same, state survives, and clients
// reconnect after StartRouter.
func TestStopStartRouter(t *testing.T) {
	c := StartTest(t, Options{})
	f := newDevice(t, c)
	url := c.RouterURL()
	dev := joinDevice(t, url, f)
	addTestament(t, dev, f)
	reportConnected(t, dev, f)
	if err := dev.Register(DeviceProcedure(f.SerialNumber, "ping"), func(context.Context, *wamp.Invocation) client.InvokeResult {
		return client.InvokeResult{Args: wamp.List{"pong"}}
	}, wamp.Dict{"force_reregister": true}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CallDevice(testCtx(t), SystemAuthID, f.SerialNumber, "ping", nil, nil); err != nil {
		t.Fatal(err)
	}

	if err := c.StopRouter(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-dev.Done():
	case <-testCtx(t).Done():
		t.Fatal("device session survived StopRouter")
	}
	if err := c.AwaitDeviceStatus(testCtx(t), f.SerialNumber, "DISCONNECTED"); err != nil {
		t.Fatal(err)
	}
	if cl, err := dial(testCtx(t), url, f.AuthID(), f.Secret.Reveal()); err == nil {
		cl.Close()
		t.Fatal("joined a stopped router")
	}

	if err := c.StartRouter(); err != nil {
		t.Fatal(err)
	}
	if c.RouterURL() != url {
		t.Fatalf("router moved from %s to %s", url, c.RouterURL())
	}
	dev2 := joinDevice(t, url, f)
	reportConnected(t, dev2, f)
	if err := dev2.Register(DeviceProcedure(f.SerialNumber, "ping"), func(context.Context, *wamp.Invocation) client.InvokeResult {
		return client.InvokeResult{Args: wamp.List{"pong again"}}
	}, wamp.Dict{"force_reregister": true}); err != nil {
		t.Fatal(err)
	}
	res, err := c.CallDevice(testCtx(t), SystemAuthID, f.SerialNumber, "ping", nil, nil)
	if err != nil || res.Arguments[0] != "pong again" {
		t.Fatalf("call after restart: %v %v", res, err)
	}
	hist := c.StatusHistory(f.SerialNumber)
	if n := len(hist); n != 3 || hist[1].Status != "DISCONNECTED" || hist[2].Status != "CONNECTED" {
		t.Fatalf("history %+v", hist)
	}
}

// TestCallDeviceDisclosesCaller: Studio calls carry disclose_me, so the
// device sees who calls; RequestApp stores the state and sends the
// reference kwargs.
func TestCallDeviceDisclosesCaller(t *testing.T) {
	c := StartTest(t, Options{Users: []User{{AuthID: "100", Secret: "s", Privileges: []string{"READ"}}}})
	f := newDevice(t, c)
	dev := joinDevice(t, c.RouterURL(), f)
	got := make(chan *wamp.Invocation, 4)
	for _, name := range []string{"whoami", "request_app_state"} {
		if err := dev.Register(DeviceProcedure(f.SerialNumber, name), func(_ context.Context, inv *wamp.Invocation) client.InvokeResult {
			got <- inv
			return client.InvokeResult{Args: wamp.List{inv.Details["caller_authid"]}}
		}, wamp.Dict{"force_reregister": true}); err != nil {
			t.Fatal(err)
		}
	}
	for _, who := range []string{SystemAuthID, "100"} {
		res, err := c.CallDevice(testCtx(t), who, f.SerialNumber, "whoami", wamp.List{1}, wamp.Dict{"k": "v"})
		if err != nil {
			t.Fatal(err)
		}
		inv := <-got
		if res.Arguments[0] != who || inv.Arguments[0] != uint64(1) || inv.ArgumentsKw["k"] != "v" {
			t.Fatalf("%s: result %v, invocation %+v", who, res.Arguments, inv)
		}
	}
	if _, err := c.CallDevice(testCtx(t), "nobody", f.SerialNumber, "whoami", nil, nil); err == nil {
		t.Fatal("called as an unknown user")
	}
	if _, err := c.CallDevice(testCtx(t), SystemAuthID, f.SerialNumber, "missing", nil, nil); err == nil {
		t.Fatal("called a procedure nobody registered")
	}

	req := Requested{AppKey: 1, AppName: "demo", Stage: "PROD", TargetState: "RUNNING", NewestVersion: "1.0.0", RequestorAccountKey: 100,
		Environment: map[string]any{"A": map[string]any{"value": "1"}}}
	if err := c.RequestApp(testCtx(t), f.SerialNumber, req, wamp.Dict{"cancel_transition": true, "version": "9.9.9"}); err != nil {
		t.Fatal(err)
	}
	inv := <-got
	kw := inv.ArgumentsKw
	want := map[string]any{"app_key": uint64(1), "app_name": "demo", "stage": "PROD", "target_state": "RUNNING", "current_state": "REMOVED",
		"newest_version": "1.0.0", "version": "9.9.9", "cancel_transition": true, "requestor_account_key": uint64(100), "request_update": false}
	for k, v := range want {
		if kw[k] != v {
			t.Errorf("kwarg %s = %#v, want %#v", k, kw[k], v)
		}
	}
	for _, k := range []string{"device_owner_account_key", "release_key", "new_release_key", "present_version", "environment", "app_cred_epoch"} {
		if _, ok := kw[k]; !ok {
			t.Errorf("kwarg %s missing", k)
		}
	}
	if _, ok := kw["docker_compose"]; ok {
		t.Error("docker_compose sent for a single-container app")
	}
	if inv.Details["caller_authid"] != SystemAuthID || len(inv.Arguments) != 0 {
		t.Errorf("details %v args %v", inv.Details, inv.Arguments)
	}
	if r := c.RequestedApps(f.SerialNumber); len(r) != 1 || r[0].TargetState != "RUNNING" {
		t.Fatalf("stored %+v", r)
	}
	if err := c.DeleteRequested(f.SerialNumber, 1, "PROD"); err != nil || len(c.RequestedApps(f.SerialNumber)) != 0 {
		t.Fatalf("delete: %v", err)
	}
	if err := c.DeleteRequested(f.SerialNumber, 1, "PROD"); err == nil {
		t.Fatal("deleted twice")
	}
	if err := c.SetRequested(f.SerialNumber, Requested{AppKey: 1, Stage: "LIVE", AppName: "x", TargetState: "RUNNING"}); err == nil {
		t.Fatal("stored a bad stage")
	}
}

func TestPublishCountAndLogFollow(t *testing.T) {
	c := StartTest(t, Options{})
	f := newDevice(t, c)
	dev := joinDevice(t, c.RouterURL(), f)
	topic := LogTopic(f.SerialNumber, "prod_1_demo")
	sub, err := c.Session(testCtx(t), SystemAuthID)
	if err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 8)
	if err := sub.Subscribe(topic, func(ev *wamp.Event) {
		s, _ := ev.Arguments[0].(string)
		lines <- s
	}, nil); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := dev.Publish(topic, wamp.Dict{wamp.OptAcknowledge: true}, wamp.List{strings.Repeat("x", i+1)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		select {
		case l := <-lines:
			if l != strings.Repeat("x", i+1) {
				t.Fatalf("line %d = %q", i, l)
			}
		case <-testCtx(t).Done():
			t.Fatal("log line not delivered")
		}
	}
	if n := c.PublishCount(topic); n != 3 {
		t.Fatalf("PublishCount = %d", n)
	}
	if n := c.PublishCount(topic + ".other"); n != 0 {
		t.Fatalf("other topic counted %d", n)
	}
}

func TestFaults(t *testing.T) {
	c := StartTest(t, Options{})
	f := newDevice(t, c)
	dev := joinDevice(t, c.RouterURL(), f)
	token := func(ctx context.Context) error {
		_, err := dev.Call(ctx, ProcGetRegistryToken, nil, wamp.List{wamp.Dict{"callerID": uint64(1)}}, nil, nil)
		return err
	}

	c.SetFault(ProcGetRegistryToken, Fault{ErrorURI: "wamp.error.canceled", Times: 2})
	for i := range 2 {
		if re := rpcError(t, token(testCtx(t))); re.Err.Error != wamp.ErrCanceled {
			t.Fatalf("call %d: %v", i, re)
		}
	}
	if err := token(testCtx(t)); err != nil {
		t.Fatalf("fault outlived its Times: %v", err)
	}

	// A delay longer than the caller waits: the call cannot complete.
	c.SetFault(ProcGetRegistryToken, Fault{Delay: time.Hour})
	ctx, cancel := context.WithTimeout(testCtx(t), 200*time.Millisecond)
	defer cancel()
	if err := token(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("delayed call: %v", err)
	}
	c.ClearFaults()
	if err := token(testCtx(t)); err != nil {
		t.Fatalf("after ClearFaults: %v", err)
	}
	if n := len(c.Calls(ProcGetRegistryToken)); n != 5 {
		t.Fatalf("recorded %d calls, want 5 (faulted ones included)", n)
	}
}

// TestRegistryKeepsImagesAcrossRestart: blobs are on disk, manifests are
// replayed from SQLite, devices stay known.
func TestRegistryKeepsImagesAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	c, err := Start(testCtx(t), Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	f := newDevice(t, c)
	ref, err := c.PushBusybox(testCtx(t), 1, "Demo", "1.0.0", testimage.Options{Cmd: []string{"echo", "hi"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := c.RegistryHost() + "/apps/prod_" + release.Arch() + "_1_demo:1.0.0"; ref != want {
		t.Fatalf("ref %s, want %s", ref, want)
	}
	first, err := remote.Get(mustRef(t, ref))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	c2 := StartTest(t, Options{DataDir: dir})
	ref2 := c2.ProdImageRef(1, "demo", "1.0.0")
	again, err := remote.Get(mustRef(t, ref2))
	if err != nil {
		t.Fatalf("image lost across restart: %v", err)
	}
	if again.Digest != first.Digest {
		t.Fatalf("digest %s, was %s", again.Digest, first.Digest)
	}
	img, err := again.Image()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := img.RawConfigFile(); err != nil { // the config blob comes from disk
		t.Fatal(err)
	}
	joinDevice(t, c2.RouterURL(), f)
}

func mustRef(t *testing.T, ref string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
