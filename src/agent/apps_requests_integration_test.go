package agent

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"reagent/src/store"
)

// RUNNING then PRESENT back to back ends PRESENT; a burst of 50
// alternating requests ends in the last one; every request was stored.
func TestAppsRequestBurst(t *testing.T) {
	e := appsStart(t, appsEnvOptions{})
	a := app{key: appKey(t), name: "burst", version: "1"}
	e.push(t, a, "1", cmdService)

	settled := func(t *testing.T, want string) {
		t.Helper()
		e.awaitCond(t, want+" with the engine matching", func() bool {
			s := e.states(a.key)
			if len(s) == 0 || s[len(s)-1] != want {
				return false
			}
			cts := e.containers(t, a.key)
			if want == "RUNNING" {
				return len(cts) == 1 && cts[0].State.Running
			}
			return len(cts) == 0
		})
	}

	t.Run("RUNNING then PRESENT", func(t *testing.T) {
		e.request(t, a.requested("RUNNING"), nil)
		e.request(t, a.requested("PRESENT"), nil)
		settled(t, "PRESENT")
	})
	t.Run("50 alternating", func(t *testing.T) {
		last := ""
		for i := 0; i < 50; i++ {
			last = "RUNNING"
			if i%2 == 1 {
				last = "PRESENT"
			}
			e.request(t, a.requested(last), nil)
		}
		settled(t, last)
		// And back the other way, so the end state is not the start state.
		e.request(t, a.requested("RUNNING"), nil)
		settled(t, "RUNNING")
	})

	st, err := store.Open(context.Background(), filepath.Join(e.agent.dir, "agent", "reagent.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	row, err := st.GetRequested(context.Background(), store.Key{AppKey: a.key, Stage: "PROD"})
	if err != nil || row.Generation != 53 || row.TargetState != "RUNNING" {
		t.Fatalf("stored request %+v %v: want generation 53 (every request stored)", row, err)
	}
	if cts := e.containers(t, a.key); len(cts) != 1 {
		t.Fatalf("%d containers", len(cts))
	}
}

// Router down during a transition: the transition completes offline and
// every report arrives after reconnect, in order.
func TestAppsRouterDownDuringTransition(t *testing.T) {
	e := appsStart(t, appsEnvOptions{gate: true})
	cloud, proxy := e.cloud, e.gate
	a := app{key: appKey(t), name: "outage", version: "1"}
	e.push(t, a, "1", cmdService)

	proxy.hold()
	e.request(t, a.requested("RUNNING"), nil)
	waitHeld(t, proxy)
	e.await(t, a.key, "DOWNLOADING")
	if err := cloud.StopRouter(); err != nil {
		t.Fatal(err)
	}
	proxy.release()
	e.awaitCond(t, "the app running while the router is down", func() bool {
		cts := e.containers(t, a.key)
		return len(cts) == 1 && cts[0].State.Running
	})
	st, err := store.Open(context.Background(), filepath.Join(e.agent.dir, "agent", "reagent.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	e.awaitCond(t, "RUNNING recorded locally", func() bool {
		act, err := st.GetActual(context.Background(), store.Key{AppKey: a.key, Stage: "PROD"})
		return err == nil && act.State == "RUNNING"
	})
	if got := e.states(a.key); !slices.Equal(got, []string{"DOWNLOADING"}) {
		t.Fatalf("reports while the router was down: %v", got)
	}
	if n, _ := st.OutboxLen(context.Background()); n < 3 {
		t.Fatalf("outbox holds %d reports, want the 3 made offline", n)
	}
	if err := cloud.StartRouter(); err != nil {
		t.Fatal(err)
	}
	e.awaitCond(t, "every report", func() bool {
		n, _ := st.OutboxLen(context.Background())
		s := e.states(a.key)
		return n == 0 && len(s) >= 4 && s[len(s)-1] == "RUNNING"
	})
	got := e.states(a.key)
	if !slices.Equal(got[:4], []string{"DOWNLOADING", "PRESENT", "STARTING", "RUNNING"}) {
		t.Fatalf("reports %v", got)
	}
	for _, s := range got[4:] { // the on-connect report of every app's state
		if s != "RUNNING" {
			t.Fatalf("reports %v", got)
		}
	}
}
