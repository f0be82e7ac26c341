package agent

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"reagent/src/apps"
	"reagent/src/config"
	"reagent/src/docker"
	"reagent/src/errdefs"
	"reagent/src/store"
)

// A container named prod_<key>_foo without our labels survives every
// cleanup: start-up, on-connect, a request for app <key> "foo" (FAILED with
// the reason) and that app's teardown. A labelled orphan of the device is
// removed.
func TestAppsForeignContainerSurvives(t *testing.T) {
	e := newAppsEnv(t, 3*time.Minute)
	cloud := e.cloud
	// A fresh key: the name is global on the engine, which other runs share.
	foo := app{key: appKey(t), name: "foo", version: "1"}
	ref := e.push(t, foo, "1", cmdService)
	if err := e.dc.PullImage(e.ctx, ref, nil, nil); err != nil {
		t.Fatal(err)
	}
	foreignID, err := e.dc.CreateContainer(e.ctx, docker.ContainerSpec{Name: foo.container(), Image: ref,
		Labels: map[string]string{testLabel: t.Name()}})
	if err != nil {
		t.Fatalf("create the foreign container (left over from an earlier run?): %v", err)
	}
	t.Cleanup(func() {
		// The app's teardown untags the image the foreign container still
		// uses; once the container is gone, the image goes by its ID.
		ct, ierr := e.dc.InspectContainer(context.Background(), foreignID)
		if err := e.dc.RemoveContainer(context.Background(), foreignID, true); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("remove the foreign container: %v", err)
		}
		if ierr == nil && ct.ImageID != "" {
			if err := e.dc.RemoveImage(context.Background(), ct.ImageID, false); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
				t.Errorf("remove the foreign container's image: %v", err)
			}
		}
	})
	if err := e.dc.StartContainer(e.ctx, foreignID); err != nil {
		t.Fatal(err)
	}
	orphanKey := appKey(t)
	var orphanID string
	e.start(t, appsEnvOptions{setup: func(fl *config.Flock) {
		// A container of this device's agent for an app the store does not know.
		id, err := e.dc.CreateContainer(e.ctx, docker.ContainerSpec{Name: fmt.Sprintf("prod_%d_orphan", orphanKey), Image: ref,
			Labels: map[string]string{apps.LabelManaged: "true", apps.LabelAppKey: strconv.FormatUint(orphanKey, 10),
				apps.LabelStage: "PROD", apps.LabelDevice: fl.SerialNumber}})
		if err != nil {
			t.Fatal(err)
		}
		orphanID = id
	}})
	e.awaitCond(t, "the orphan removed", func() bool {
		_, err := e.dc.InspectContainer(e.ctx, orphanID)
		return errors.Is(err, errdefs.ErrNotFound)
	})
	foreignAlive := func(t *testing.T) {
		t.Helper()
		ct, err := e.dc.InspectContainer(e.ctx, foreignID)
		if err != nil || !ct.State.Running || ct.Name != foo.container() {
			t.Fatalf("the foreign container: %+v %v", ct.State, err)
		}
	}

	e.request(t, foo.requested("RUNNING"), nil)
	e.await(t, foo.key, "FAILED")
	foreignAlive(t)
	e.awaitCond(t, "the reason in the app log", func() bool {
		return containsLine(e.appLog(t, foo.container()), "a container named "+foo.container()+" exists that this agent did not create")
	})

	// The cloud forgets the app; the next connect tears it down and cleans up.
	if err := cloud.DeleteRequested(e.serial, foo.key, "PROD"); err != nil {
		t.Fatal(err)
	}
	if err := cloud.StopRouter(); err != nil {
		t.Fatal(err)
	}
	if err := cloud.StartRouter(); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), filepath.Join(e.agent.dir, "agent", "reagent.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	e.awaitCond(t, "the app forgotten", func() bool {
		_, err := st.GetRequested(context.Background(), store.Key{AppKey: foo.key, Stage: "PROD"})
		return errors.Is(err, errdefs.ErrNotFound)
	})
	foreignAlive(t)
}

// A crashing app is restarted with growing delays that show in its log; an
// app that exits 0 is reported PRESENT and left alone.
func TestAppsRestarts(t *testing.T) {
	var resyncs atomic.Int64
	const resync = 100 * time.Millisecond
	e := appsStart(t, appsEnvOptions{apps: func(o *apps.Options) {
		o.Resync = resync
		o.Clock = countingClock{every: resync, n: &resyncs}
	}})

	t.Run("crash", func(t *testing.T) {
		a := app{key: appKey(t), name: "crash", version: "1"}
		e.push(t, a, "1", cmdCrash)
		e.request(t, a.requested("RUNNING"), nil)
		var delays []time.Duration
		e.awaitCond(t, "three restarts in the log", func() bool {
			delays = delays[:0]
			for _, l := range e.appLog(t, a.container()) {
				_, rest, ok := strings.Cut(l, "restarting in ")
				if !ok || !strings.Contains(rest, "restart): exited with status code 1") {
					continue
				}
				d, err := time.ParseDuration(strings.Fields(rest)[0])
				if err != nil {
					t.Fatalf("log line %q: %v", l, err)
				}
				delays = append(delays, d)
			}
			return len(delays) >= 3
		})
		for i := 1; i < len(delays); i++ {
			if delays[i] <= delays[i-1] {
				t.Fatalf("restart delays %v do not grow", delays)
			}
		}
		lines := e.appLog(t, a.container())
		if !containsLine(lines, a.container()+" (PROD) exited with status code: 1") || !containsLine(lines, "(2nd restart)") {
			t.Fatalf("app log %v", lines)
		}
		if n := len(e.containers(t, a.key)); n > 1 {
			t.Fatalf("%d containers", n)
		}
		e.request(t, a.requested("REMOVED"), nil) // stop the loop
		e.await(t, a.key, "REMOVED")
	})

	t.Run("exit 0", func(t *testing.T) {
		a := app{key: appKey(t), name: "job", version: "1"}
		e.push(t, a, "1", cmdJob)
		e.request(t, a.requested("RUNNING"), nil)
		e.await(t, a.key, "PRESENT")
		e.awaitCond(t, "the exit recorded", func() bool {
			s := e.states(a.key)
			return len(s) >= 4 && s[len(s)-1] == "PRESENT"
		})
		cts := e.containers(t, a.key)
		if len(cts) != 1 || cts[0].State.Running || cts[0].State.ExitCode != 0 {
			t.Fatalf("containers %+v", cts)
		}
		started, reports := cts[0].State.StartedAt, len(e.states(a.key))
		from := resyncs.Load()
		e.awaitCond(t, "several resyncs", func() bool { return resyncs.Load() >= from+5 })
		cts = e.containers(t, a.key)
		if len(cts) != 1 || cts[0].State.Running || !cts[0].State.StartedAt.Equal(started) {
			t.Fatalf("the finished app was started again: %+v", cts)
		}
		if got := e.states(a.key); len(got) != reports || strings.Contains(strings.Join(got, " "), "FAILED") {
			t.Fatalf("reports %v", got)
		}
	})
}

// countingClock is the real clock, counting the timers of one duration
// (the resync's).
type countingClock struct {
	every time.Duration
	n     *atomic.Int64
}

func (c countingClock) Now() time.Time { return time.Now() }

func (c countingClock) After(d time.Duration) (<-chan time.Time, func() bool) {
	if d == c.every {
		c.n.Add(1)
	}
	t := time.NewTimer(d)
	return t.C, t.Stop
}
