package devcloud

import (
	"strings"
	"testing"

	"github.com/gammazero/nexus/v3/wamp"
)

// The report that ends a successful update (updateStatus
// pending_remote_confirmation) makes the cloud record what the real one
// does: the new version is present, the new release current, no update
// requested — so the next sync hands the device an unchanged record. Any
// other report only moves the current state.
func TestUpdateReportRecordsNewVersion(t *testing.T) {
	c := StartTest(t, Options{})
	cases := []struct {
		name    string
		reports []string // state/updateStatus
		update  bool     // the record requests the update
		want    Requested
	}{
		{"finished update", []string{"UPDATING/", "PRESENT/pending_remote_confirmation", "STARTING/completed", "RUNNING/completed"}, true,
			Requested{CurrentState: "RUNNING", PresentVersion: "1.1.0", ReleaseKey: 4, RequestUpdate: false}},
		{"cancelled update", []string{"UPDATING/", "PRESENT/canceled"}, true,
			Requested{CurrentState: "PRESENT", PresentVersion: "1.0.0", ReleaseKey: 3, RequestUpdate: true}},
		{"plain run", []string{"STARTING/", "RUNNING/"}, true,
			Requested{CurrentState: "RUNNING", PresentVersion: "1.0.0", ReleaseKey: 3, RequestUpdate: true}},
		{"confirmation without an update requested", []string{"PRESENT/pending_remote_confirmation"}, false,
			Requested{CurrentState: "PRESENT", PresentVersion: "1.0.0", ReleaseKey: 3, RequestUpdate: false}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newDevice(t, c)
			dev := joinDevice(t, c.RouterURL(), f)
			serial, dkey := f.SerialNumber, uint64(f.DeviceKey)
			req := Requested{AppKey: 7, AppName: "Demo", Stage: "PROD", TargetState: "RUNNING", CurrentState: "RUNNING",
				PresentVersion: "1.0.0", NewestVersion: "1.1.0", RequestUpdate: tc.update, ReleaseKey: 3, NewReleaseKey: 4,
				RequestorAccountKey: 100}
			if err := c.SetRequested(serial, req); err != nil {
				t.Fatal(err)
			}
			for _, rep := range tc.reports {
				state, status, _ := strings.Cut(rep, "/")
				callBackend(t, dev, ProcUpdateAppOnDevice, wamp.Dict{
					"app_key": uint64(7), "device_key": dkey, "swarm_key": uint64(f.SwarmKey), "serial_number": serial,
					"stage": "PROD", "state": state, "device_to_app_key": uint64(0), "requestor_account_key": uint64(100),
					"release_key": uint64(4), "request_update": tc.update, "release_build": false, "updateStatus": status,
				})
			}
			got := c.RequestedApps(serial)
			if len(got) != 1 {
				t.Fatalf("records %+v", got)
			}
			g := got[0]
			if g.CurrentState != tc.want.CurrentState || g.PresentVersion != tc.want.PresentVersion ||
				g.ReleaseKey != tc.want.ReleaseKey || g.RequestUpdate != tc.want.RequestUpdate {
				t.Fatalf("record %+v, want current %s present %s release %d request_update %v", g,
					tc.want.CurrentState, tc.want.PresentVersion, tc.want.ReleaseKey, tc.want.RequestUpdate)
			}
			if g.NewestVersion != "1.1.0" || g.NewReleaseKey != 4 || g.TargetState != "RUNNING" {
				t.Fatalf("record %+v: the rest of the request changed", g)
			}
			// What the device gets on its next sync.
			recs := callBackend(t, dev, ProcGetRequestedAppStates, wamp.Dict{"device_key": dkey})[0].([]any)
			rec := recs[0].(map[string]any)
			if rec["present_version"] != tc.want.PresentVersion || rec["request_update"] != tc.want.RequestUpdate ||
				rec["release_key"] != tc.want.ReleaseKey {
				t.Fatalf("sync record %v", rec)
			}
		})
	}
}

// Reports arriving while the test sets or deletes the record neither undo
// the new record nor bring back the deleted one.
func TestReportsDoNotUndoRecordChanges(t *testing.T) {
	c := StartTest(t, Options{})
	f := newDevice(t, c)
	dev := joinDevice(t, c.RouterURL(), f)
	serial, dkey := f.SerialNumber, uint64(f.DeviceKey)
	report := func(key uint64) error {
		_, err := dev.Call(testCtx(t), ProcUpdateAppOnDevice, nil, wamp.List{wamp.Dict{
			"app_key": key, "device_key": dkey, "swarm_key": uint64(f.SwarmKey), "serial_number": serial,
			"stage": "PROD", "state": "RUNNING", "updateStatus": "",
		}}, nil, nil)
		return err
	}
	for i := range 100 {
		key := uint64(1000 + i)
		old := Requested{AppKey: key, AppName: "a", Stage: "PROD", TargetState: "RUNNING", NewestVersion: "1"}
		if err := c.SetRequested(serial, old); err != nil {
			t.Fatal(err)
		}
		errs := make(chan error, 1)
		go func() { errs <- report(key) }()
		newer := old
		newer.NewestVersion = "2"
		if err := c.SetRequested(serial, newer); err != nil {
			t.Fatal(err)
		}
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		if rs := c.RequestedApps(serial); len(rs) != 1 || rs[0].NewestVersion != "2" {
			t.Fatalf("round %d: records %+v, want the newer one", i, rs)
		}
		go func() { errs <- report(key) }()
		if err := c.DeleteRequested(serial, key, "PROD"); err != nil {
			t.Fatal(err)
		}
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		for _, r := range c.RequestedApps(serial) {
			t.Fatalf("round %d: record %+v is back after its deletion", i, r)
		}
	}
}
