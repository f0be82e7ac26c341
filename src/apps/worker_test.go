package apps

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"reagent/src/backend"
	"reagent/src/errdefs"
)

const waitLong = 10 * time.Second

// A burst of requests collapses into the newest: 50 alternating
// RUNNING/PRESENT requests end at the last one, each request was stored
// (none dropped), and the worker did not run one step per request.
func TestWorkerBurstEndsAtLast(t *testing.T) {
	for _, n := range []int{2, 50, 51} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			h := newHarness(t, nil)
			k := Key{AppKey: 1, Stage: StageProd}
			h.eng.registry[h.ref(k, "demo", "1")] = true
			h.run(t)
			last := ""
			for i := 0; i < n; i++ {
				last = StateRunning
				if i%2 == 1 {
					last = StatePresent
				}
				h.request(t, prodApp(1, "demo", last, "1"))
			}
			await(t, waitLong, "the last target", func() bool {
				a, ok := h.m.Actual(context.Background(), k)
				if !ok || a.State != last {
					return false
				}
				ct, exists := h.eng.container("prod_1_demo")
				return (last == StateRunning) == (exists && ct.State.Running)
			})
			row, err := h.st.GetRequested(context.Background(), k)
			if err != nil || row.Generation != uint64(n) || row.TargetState != last {
				t.Fatalf("stored %+v %v: a request was lost", row, err)
			}
			await(t, waitLong, "the last report", func() bool {
				s := h.cloud.states(1)
				return len(s) > 0 && s[len(s)-1] == last
			})
			if starts := countPrefix(h.eng.Mutations(), "start "); starts > n/2+1 {
				t.Fatalf("%d starts for %d requests", starts, n)
			}
		})
	}
}

func countPrefix(list []string, prefix string) int {
	n := 0
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			n++
		}
	}
	return n
}

func TestWorkerCancellation(t *testing.T) {
	k := Key{AppKey: 1, Stage: StageProd}
	t.Run("a pull that still serves is not cancelled", func(t *testing.T) {
		h := newHarness(t, nil)
		h.eng.registry[h.ref(k, "demo", "1")] = true
		gate := make(chan struct{})
		h.eng.pullGate, h.eng.pullStarted = gate, make(chan string, 4)
		h.run(t)
		h.request(t, prodApp(1, "demo", StateRunning, "1"))
		<-h.eng.pullStarted
		h.request(t, prodApp(1, "demo", StatePresent, "1"))
		close(gate)
		await(t, waitLong, "PRESENT", func() bool { a, ok := h.m.Actual(context.Background(), k); return ok && a.State == StatePresent })
		if n := countPrefix(h.eng.Mutations(), "pull "); n != 1 {
			t.Fatalf("%d pulls: the pull serving PRESENT was cancelled", n)
		}
	})
	t.Run("cancel_transition cancels even a serving pull", func(t *testing.T) {
		h := newHarness(t, nil)
		h.eng.registry[h.ref(k, "demo", "1")] = true
		gate := make(chan struct{})
		h.eng.pullGate, h.eng.pullStarted = gate, make(chan string, 4)
		h.run(t)
		h.request(t, prodApp(1, "demo", StatePresent, "1"))
		<-h.eng.pullStarted
		r := prodApp(1, "demo", StateRemoved, "1")
		r.CancelTransition = true
		h.request(t, r)
		await(t, waitLong, "REMOVED", func() bool { a, ok := h.m.Actual(context.Background(), k); return ok && a.State == StateRemoved })
		close(gate)
		if h.eng.hasImage(h.ref(k, "demo", "1")) {
			t.Fatal("the cancelled pull left an image")
		}
		await(t, waitLong, "REMOVED reported", func() bool {
			s := h.cloud.states(1)
			return len(s) > 0 && s[len(s)-1] == StateRemoved
		})
		if got := h.cloud.states(1); !slices.Contains(got, StateDownloading) || slices.Contains(got, StateFailed) {
			t.Fatalf("reported %v: a cancel is not a failure", got)
		}
	})
	t.Run("a start that no longer serves is cancelled", func(t *testing.T) {
		h := newHarness(t, nil)
		h.eng.registry[h.ref(k, "demo", "1")] = true
		h.eng.startGate = make(chan struct{})
		h.run(t)
		h.request(t, prodApp(1, "demo", StateRunning, "1"))
		await(t, waitLong, "create", func() bool { return countPrefix(h.eng.Mutations(), "create ") == 1 })
		h.request(t, prodApp(1, "demo", StatePresent, "1"))
		await(t, waitLong, "PRESENT without a container", func() bool {
			a, ok := h.m.Actual(context.Background(), k)
			_, exists := h.eng.container("prod_1_demo")
			return ok && a.State == StatePresent && !exists
		})
		if countPrefix(h.eng.Mutations(), "start ") != 0 {
			t.Fatal("the cancelled start went on")
		}
		if a, _ := h.m.Actual(context.Background(), k); a.LastError != "" {
			t.Fatalf("a cancel was recorded as an error: %q", a.LastError)
		}
	})
}

func TestCrashRestartsWithGrowingDelays(t *testing.T) {
	h := newHarness(t, nil)
	k := Key{AppKey: 1, Stage: StageProd}
	h.eng.registry[h.ref(k, "crash", "1")] = true
	h.eng.exitCode["prod_1_crash"] = 1
	h.run(t)
	h.request(t, prodApp(1, "crash", StateRunning, "1"))
	await(t, waitLong, "four restarts", func() bool { return h.log.count("restarting in") >= 4 })
	var delays []string
	for _, l := range h.log.all() {
		if _, rest, ok := strings.Cut(l, "restarting in "); ok {
			d, _, _ := strings.Cut(rest, " ")
			delays = append(delays, d)
		}
	}
	if !slices.Equal(delays[:4], []string{"10ms", "20ms", "40ms", "80ms"}) {
		t.Fatalf("delays %v, want doubling up to the cap", delays)
	}
	if starts := countPrefix(h.eng.Mutations(), "start prod_1_crash"); starts < 4 {
		t.Fatalf("%d starts", starts)
	}
}

func TestUpdate(t *testing.T) {
	k := Key{AppKey: 1, Stage: StageProd}
	setup := func(t *testing.T) *harness {
		h := newHarness(t, nil)
		h.eng.registry[h.ref(k, "demo", "1.0.0")] = true
		h.eng.registry[h.ref(k, "demo", "1.1.0")] = true
		h.run(t)
		r := prodApp(1, "demo", StateRunning, "1.0.0")
		r.ReleaseKey = 10
		h.request(t, r)
		await(t, waitLong, "RUNNING 1.0.0", func() bool {
			s := h.cloud.states(1)
			return len(s) > 0 && s[len(s)-1] == StateRunning
		})
		return h
	}
	update := func() Request {
		r := prodApp(1, "demo", StateRunning, "1.1.0")
		r.PresentVersion, r.Version, r.RequestUpdate, r.ReleaseKey, r.NewReleaseKey = "1.0.0", "1.1.0", true, 10, 11
		return r
	}
	t.Run("1.0.0 → 1.1.0", func(t *testing.T) {
		h := setup(t)
		before := len(h.cloud.allReports())
		h.request(t, update())
		// The reports go out through the outbox, after the engine work:
		// wait for the update's own RUNNING, not the one before it.
		await(t, waitLong, "RUNNING 1.1.0", func() bool {
			ct, ok := h.eng.container("prod_1_demo")
			reps := h.cloud.allReports()[before:]
			return ok && ct.State.Running && ct.Image == h.ref(k, "demo", "1.1.0") && len(reps) > 0 &&
				reps[len(reps)-1].State == StateRunning && reps[len(reps)-1].UpdateStatus == UpdateCompleted
		})
		var got []string
		for _, r := range h.cloud.allReports()[before:] {
			got = append(got, r.State+"/"+r.UpdateStatus)
		}
		want := []string{"UPDATING/", "PRESENT/" + UpdatePending, "STARTING/" + UpdateCompleted, "RUNNING/" + UpdateCompleted}
		if !slices.Equal(got, want) {
			t.Fatalf("reports %v, want %v", got, want)
		}
		if last := h.cloud.allReports()[len(h.cloud.allReports())-1]; last.ReleaseKey != 11 || last.RequestUpdate {
			t.Fatalf("last report %+v", last)
		}
		if h.eng.hasImage(h.ref(k, "demo", "1.0.0")) {
			t.Fatal("the old tag is still there")
		}
		await(t, waitLong, "update confirmed in the store", func() bool {
			a, _ := h.m.Actual(context.Background(), k)
			return a.UpdateStatus == UpdateCompleted && a.Version == "1.1.0" && a.ReleaseKey == 11
		})
		row, _ := h.st.GetRequested(context.Background(), k)
		if row.PresentVersion != "1.1.0" || row.NewestVersion != "1.1.0" || row.RequestUpdate {
			t.Fatalf("stored request not rewritten: %+v", row)
		}
		// The old container kept running while the new tag was pulled.
		muts := h.eng.Mutations()
		if slices.Index(muts, "pull "+h.ref(k, "demo", "1.1.0")) > slices.Index(muts, "stop prod_1_demo") {
			t.Fatalf("stopped before pulling: %v", muts)
		}
	})
	t.Run("cancel keeps the old version", func(t *testing.T) {
		h := setup(t)
		gate := make(chan struct{})
		defer close(gate)
		h.eng.mu.Lock()
		h.eng.pullGate, h.eng.pullStarted = gate, make(chan string, 4)
		h.eng.mu.Unlock()
		h.request(t, update())
		<-h.eng.pullStarted
		c := update()
		c.TargetState, c.CancelTransition = StatePresent, true
		h.request(t, c)
		await(t, waitLong, "PRESENT with the old version", func() bool {
			a, _ := h.m.Actual(context.Background(), k)
			_, exists := h.eng.container("prod_1_demo")
			return a.State == StatePresent && a.Version == "1.0.0" && !exists
		})
		a := h.actual(t, k)
		if a.UpdateStatus != UpdateCanceled {
			t.Fatalf("update status %q", a.UpdateStatus)
		}
		row, _ := h.st.GetRequested(context.Background(), k)
		if row.RequestUpdate {
			t.Fatal("request_update still set: the update would run again")
		}
		if !h.eng.hasImage(h.ref(k, "demo", "1.0.0")) || h.eng.hasImage(h.ref(k, "demo", "1.1.0")) {
			t.Fatal("images after a cancelled update")
		}
		await(t, waitLong, "the canceled status reported", func() bool {
			for _, r := range h.cloud.allReports() {
				if r.UpdateStatus == UpdateCanceled {
					return true
				}
			}
			return false
		})
	})
}

// Reports made offline wait in the outbox and arrive in order once the
// link is up; failed calls are retried without loss or reordering.
func TestReportsOutbox(t *testing.T) {
	h := newHarness(t, nil)
	h.link.set(false)
	h.cloud.failN = 3
	k := Key{AppKey: 1, Stage: StageProd}
	h.eng.registry[h.ref(k, "demo", "1")] = true
	h.run(t)
	h.request(t, prodApp(1, "demo", StateRunning, "1"))
	await(t, waitLong, "RUNNING locally", func() bool { a, ok := h.m.Actual(context.Background(), k); return ok && a.State == StateRunning })
	h.request(t, prodApp(1, "demo", StatePresent, "1"))
	await(t, waitLong, "PRESENT locally", func() bool { a, _ := h.m.Actual(context.Background(), k); return a.State == StatePresent })
	if len(h.cloud.allReports()) != 0 {
		t.Fatal("reported while offline")
	}
	await(t, waitLong, "the PRESENT report queued", func() bool {
		s := h.outboxStates(t)
		return len(s) > 0 && s[len(s)-1] == StatePresent
	})
	want := h.outboxStates(t)
	h.link.set(true)
	await(t, waitLong, "every report", func() bool { return len(h.cloud.states(1)) == len(want) && h.outboxLen(t) == 0 })
	if got := h.cloud.states(1); !slices.Equal(got, want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
	r := h.cloud.allReports()[0]
	if r.DeviceKey != 2 || r.SwarmKey != 1 || r.SerialNumber != "serial-1" || r.RequestorAccountKey != 7 || r.Stage != StageProd {
		t.Fatalf("payload %+v", r)
	}
}

func TestSyncWithCloud(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, nil)
	p1, p2 := Key{AppKey: 1, Stage: StageProd}, Key{AppKey: 2, Stage: StageProd}
	d3 := Key{AppKey: 3, Stage: StageDev}
	for _, k := range []Key{p1, p2} {
		h.eng.registry[h.ref(k, "app", "1")] = true
	}
	h.eng.images[ImageRepo(h.flock.DockerRegistryURL, h.flock.DockerMainRepository, d3, "amd64", "dev")] = true
	h.request(t, prodApp(1, "app", StateRunning, "1"))
	h.request(t, prodApp(2, "app", StateRunning, "1"))
	h.request(t, Request{Key: d3, AppName: "dev", TargetState: StateRunning})
	for _, k := range []Key{p1, p2, d3} {
		h.settle(t, k)
	}

	h.cloud.syncErr = errdefs.Unavailable("backend down")
	if err := h.m.SyncWithCloud(ctx); err == nil {
		t.Fatal("a failed sync reported success")
	}
	if rows, _ := h.st.ListRequested(ctx); len(rows) != 3 {
		t.Fatal("a failed sync changed the requested states")
	}

	h.cloud.syncErr = nil
	h.cloud.records = []backend.SyncRecord{
		{AppKey: 1, AppName: "app", Stage: StageProd, TargetState: StatePresent, PresentVersion: "1", NewestVersion: "1", RequestorAccountKey: 7},
		{AppKey: 3, AppName: "dev", Stage: StageDev, TargetState: StateRemoved},
	}
	before := h.outboxLen(t)
	if err := h.m.SyncWithCloud(ctx); err != nil {
		t.Fatal(err)
	}
	row1, _ := h.st.GetRequested(ctx, p1)
	if row1.TargetState != StatePresent || row1.Generation != 2 {
		t.Fatalf("PROD record not applied: %+v", row1)
	}
	row3, _ := h.st.GetRequested(ctx, d3)
	if row3.TargetState != StateRunning {
		t.Fatal("a DEV row was overwritten from the cloud")
	}
	// Every listed app's state was reported (p1 and d3), p2 was not.
	if got := h.outboxStates(t)[before:]; len(got) != 2 {
		t.Fatalf("reports on sync %v", got)
	}
	// p2 is torn down, without reports, then forgotten.
	n := h.outboxLen(t)
	h.settle(t, p2)
	if _, ok := h.eng.container("prod_2_app"); ok || h.eng.hasImage(h.ref(p2, "app", "1")) {
		t.Fatal("the unlisted app was not removed")
	}
	if _, err := h.st.GetRequested(ctx, p2); !errdefsIsNotFound(err) {
		t.Fatalf("requested row of the unlisted app: %v", err)
	}
	if _, ok := h.m.Actual(ctx, p2); ok {
		t.Fatal("actual row of the unlisted app kept")
	}
	if h.outboxLen(t) != n {
		t.Fatalf("the teardown reported: %v", h.outboxStates(t)[n:])
	}
	// The same records again change nothing: no new generation.
	if err := h.m.SyncWithCloud(ctx); err != nil {
		t.Fatal(err)
	}
	if row, _ := h.st.GetRequested(ctx, p1); row.Generation != 2 {
		t.Fatalf("an unchanged record bumped the generation to %d", row.Generation)
	}
}

func errdefsIsNotFound(err error) bool { return errors.Is(err, errdefs.ErrNotFound) }
