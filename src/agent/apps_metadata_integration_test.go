package agent

import (
	"strings"
	"testing"
)

// The cloud renames the device (same swarm): after the reconnect that
// brings the new metadata, an app started gets the new DEVICE_NAME and
// DEVICE_URL; the app started before keeps what it was started with.
func TestAppsEnvAfterDeviceRename(t *testing.T) {
	e := appsStart(t, appsEnvOptions{})
	fl := e.agent.flock
	env := func(a app) map[string]string {
		t.Helper()
		cts := e.containers(t, a.key)
		if len(cts) != 1 {
			t.Fatalf("%d containers of %s", len(cts), a.name)
		}
		ct, err := e.dc.InspectContainer(e.ctx, cts[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, kv := range ct.Env {
			k, v, _ := strings.Cut(kv, "=")
			out[k] = v
		}
		return out
	}

	before := app{key: appKey(t), name: "Before", version: "1"}
	e.push(t, before, "1", cmdService)
	e.request(t, before.requested("RUNNING"), nil)
	e.await(t, before.key, "RUNNING")
	if got := env(before)["DEVICE_NAME"]; got != fl.Name {
		t.Fatalf("DEVICE_NAME %q, want the .flock's %q", got, fl.Name)
	}

	if err := e.cloud.SetDeviceMetadata(e.serial, "renamed-device", fl.SwarmName, fl.SwarmOwnerName, fl.SwarmKey); err != nil {
		t.Fatal(err)
	}
	e.reconnect(t)
	after := app{key: appKey(t), name: "After", version: "1"}
	e.push(t, after, "1", cmdService)
	e.request(t, after.requested("RUNNING"), nil)
	e.await(t, after.key, "RUNNING")
	got := env(after)
	if got["DEVICE_NAME"] != "renamed-device" || !strings.HasSuffix(got["DEVICE_URL"], "/settings/devices/renamed-device") {
		t.Fatalf("env after the rename: DEVICE_NAME %q, DEVICE_URL %q", got["DEVICE_NAME"], got["DEVICE_URL"])
	}
	if got := env(before)["DEVICE_NAME"]; got != fl.Name {
		t.Fatalf("the running app's DEVICE_NAME changed to %q", got)
	}
}
