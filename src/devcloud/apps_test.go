package devcloud

import (
	"maps"
	"slices"
	"testing"
)

// The two wire forms of a requested state carry exactly the reference's
// keys: the sync record every key (unset maps and ports as null) plus the
// device's, the request kwargs the version and only the maps that are set.
func TestRequestedWireKeys(t *testing.T) {
	common := []string{"app_key", "app_name", "stage", "target_state", "current_state", "requestor_account_key",
		"device_owner_account_key", "release_key", "new_release_key", "request_update", "present_version",
		"newest_version", "app_cred_epoch"}
	r := Requested{AppKey: 7, AppName: "Demo", Stage: "PROD", TargetState: "RUNNING", CurrentState: "PRESENT",
		RequestorAccountKey: 100, DeviceOwnerAccountKey: 101, ReleaseKey: 3, NewReleaseKey: 4, RequestUpdate: true,
		PresentVersion: "1.0.0", NewestVersion: "1.1.0", AppCredEpoch: 2,
		Environment: map[string]any{"A": map[string]any{"value": "x"}}}
	d := device{Serial: "serial-1", DeviceKey: 11, SwarmKey: 12}

	cases := []struct {
		name string
		got  map[string]any
		want []string
	}{
		{"sync record", r.syncRecord(d), append(slices.Clone(common), "environment", "environment_template",
			"docker_compose", "new_docker_compose", "ports", "device_key", "swarm_key", "serial_number")},
		{"request kwargs", RequestKwargs(r), append(slices.Clone(common), "version", "environment")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := slices.Sorted(maps.Keys(c.got))
			slices.Sort(c.want)
			if !slices.Equal(got, c.want) {
				t.Fatalf("keys %v, want %v", got, c.want)
			}
			if c.got["app_key"] != uint64(7) || c.got["newest_version"] != "1.1.0" || c.got["present_version"] != "1.0.0" ||
				c.got["request_update"] != true || c.got["new_release_key"] != uint64(4) {
				t.Fatalf("values %v", c.got)
			}
		})
	}
	if kw := RequestKwargs(r); kw["version"] != "1.1.0" {
		t.Fatalf("version %v, want the newest", kw["version"])
	}
	if rec := r.syncRecord(d); rec["docker_compose"] != nil || rec["ports"] != nil || rec["serial_number"] != "serial-1" || rec["device_key"] != uint64(11) {
		t.Fatalf("sync record %v", rec)
	}
}
