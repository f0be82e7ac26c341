package agent

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	nx "github.com/gammazero/nexus/v3/wamp"

	"reagent/src/store"
)

// update 1.0.0 → 1.1.0: the new tag runs, the old tag is gone, updateStatus
// as the reference (pending_remote_confirmation on the PRESENT that ends
// the update, completed afterwards). The cloud then records the new version
// (devcloud as the real one), so a reconnect brings no changed request.
func TestAppsUpdate(t *testing.T) {
	e := appsStart(t, appsEnvOptions{})
	a := app{key: appKey(t), name: "upd", version: "1.0.0"}
	old := e.push(t, a, "1.0.0", cmdService)
	newer := e.push(t, a, "1.1.0", cmdService)
	e.request(t, a.requested("RUNNING"), nil)
	e.await(t, a.key, "RUNNING")
	n := len(e.reports(a.key))

	u := a.requested("RUNNING")
	u.NewestVersion, u.RequestUpdate, u.NewReleaseKey = "1.1.0", true, 2
	e.request(t, u, nil)
	e.awaitCond(t, "RUNNING 1.1.0", func() bool {
		rs := e.reports(a.key)
		cts := e.containers(t, a.key)
		return len(rs) > n+1 && rs[len(rs)-1].State == "RUNNING" && len(cts) == 1 && cts[0].Image == newer && cts[0].State.Running
	})
	var got []string
	for _, r := range e.reports(a.key)[n:] {
		got = append(got, r.State+"/"+r.UpdateStatus)
	}
	want := []string{"UPDATING/", "PRESENT/pending_remote_confirmation", "STARTING/completed", "RUNNING/completed"}
	if !slices.Equal(got, want) {
		t.Fatalf("reports %v, want %v", got, want)
	}
	last := e.reports(a.key)[len(e.reports(a.key))-1]
	if rk, _ := last.Payload["release_key"].(float64); rk != 2 {
		if rk2, ok := last.Payload["release_key"]; !ok || rk2 != uint64(2) && rk2 != int64(2) {
			t.Fatalf("release_key after the update: %v", last.Payload["release_key"])
		}
	}
	if e.imageExists(t, old) {
		t.Fatal("the old tag is still there")
	}

	rec := e.cloud.RequestedApps(e.serial)
	if len(rec) != 1 || rec[0].PresentVersion != "1.1.0" || rec[0].RequestUpdate || rec[0].ReleaseKey != 2 {
		t.Fatalf("the cloud's record after the update: %+v", rec)
	}
	row := e.requestedRow(t, a.key)
	reports := len(e.reports(a.key))
	e.reconnect(t)
	if again := e.requestedRow(t, a.key); again.Generation != row.Generation || again.RequestUpdate || targetOf(again) != "1.1.0" {
		t.Fatalf("after a reconnect the request is %+v (generation %d before)", again, row.Generation)
	}
	for _, r := range e.reports(a.key)[reports:] {
		if r.State != "RUNNING" {
			t.Fatalf("reports after the reconnect %v", e.states(a.key)[reports:])
		}
	}
}

// targetOf is the version a stored request asks for.
func targetOf(r store.Requested) string {
	if r.NewestVersion != "" {
		return r.NewestVersion
	}
	return r.PresentVersion
}

// A pull in flight is cancelled by a request that no longer wants it
// (cancel_transition): the step ends at once and the app is REMOVED while
// the gate still holds the download (the engine may finish a layer in the
// background — Docker 20.10 does not abort every blob — but never tags the
// image). An update in flight is cancelled the same way: updateStatus
// canceled, the old version kept and not updated again.
func TestAppsCancelInFlight(t *testing.T) {
	e := appsStart(t, appsEnvOptions{gate: true})
	proxy := e.gate
	a := app{key: appKey(t), name: "cancel", version: "1.0.0"}
	e.push(t, a, "1.0.0", cmdService)
	e.push(t, a, "1.1.0", cmdService)

	t.Run("pull", func(t *testing.T) {
		proxy.hold()
		e.request(t, a.requested("RUNNING"), nil)
		waitHeld(t, proxy)
		e.await(t, a.key, "DOWNLOADING")
		e.request(t, a.requested("REMOVED"), nx.Dict{"cancel_transition": true})
		e.await(t, a.key, "REMOVED")
		proxy.release()
		e.awaitCond(t, "the engine's background download", func() bool { return proxy.active.Load() == 0 })
		if got := e.states(a.key); slices.Contains(got, "FAILED") || slices.Contains(got, "RUNNING") {
			t.Fatalf("reported %v", got)
		}
		if e.imageExists(t, prodRef(proxy.host, a, "1.0.0")) {
			t.Fatal("the cancelled pull left the image")
		}
	})

	t.Run("update", func(t *testing.T) {
		e.request(t, a.requested("RUNNING"), nil)
		e.await(t, a.key, "RUNNING")
		proxy.hold()
		u := a.requested("RUNNING")
		u.NewestVersion, u.RequestUpdate = "1.1.0", true
		e.request(t, u, nil)
		waitHeld(t, proxy)
		e.await(t, a.key, "UPDATING")
		u.TargetState = "PRESENT"
		e.request(t, u, nx.Dict{"cancel_transition": true})
		e.awaitCond(t, "PRESENT after the cancel", func() bool {
			rs := e.reports(a.key)
			return rs[len(rs)-1].State == "PRESENT" && len(e.containers(t, a.key)) == 0
		})
		proxy.release()
		e.awaitCond(t, "the engine's background download", func() bool { return proxy.active.Load() == 0 })
		canceled := false
		for _, r := range e.reports(a.key) {
			canceled = canceled || r.UpdateStatus == "canceled"
		}
		if !canceled {
			t.Fatalf("no report with updateStatus canceled: %v", e.reports(a.key))
		}
		if !e.imageExists(t, prodRef(proxy.host, a, "1.0.0")) || e.imageExists(t, prodRef(proxy.host, a, "1.1.0")) {
			t.Fatal("images after the cancelled update")
		}
		st, err := store.Open(context.Background(), filepath.Join(e.agent.dir, "agent", "reagent.db"), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		k := store.Key{AppKey: a.key, Stage: "PROD"}
		act, err := st.GetActual(context.Background(), k)
		if err != nil || act.Version != "1.0.0" || act.UpdateStatus != "canceled" {
			t.Fatalf("actual %+v %v", act, err)
		}
		if row, err := st.GetRequested(context.Background(), k); err != nil || row.RequestUpdate {
			t.Fatalf("request_update still stored: %+v %v", row, err)
		}
	})
}

func waitHeld(t *testing.T, p *gateProxy) {
	t.Helper()
	select {
	case <-p.held:
	case <-time.After(time.Minute):
		t.Fatal("no blob download reached the registry")
	}
}
