package logs

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"reagent/src/docker"
	"reagent/src/store/storetest"
)

// clock is a settable Now for the relay.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time)     { c.mu.Lock(); c.t = t; c.mu.Unlock() }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// A follower whose store buffer is full waits for the store only while its
// line is younger than waitLag; older lines are dropped, counted, and the
// count is stored after the lines kept, as the reference's marker. Nothing
// is lost without a trace, and the follower never falls behind far enough
// for the engine's log rotation to delete what it has not read.
func TestStoreStallDropsAreAnnounced(t *testing.T) {
	st := storetest.Open(t)
	clk := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	r, err := NewRelay(RelayOptions{Store: st, FlushBytes: 1024, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s := r.streamFor(app)
	text := strings.Repeat("x", 100) // 164 bytes with lineOverhead: 4 KiB buffer holds 24
	var kept []string
	i := 0
	for ; ; i++ {
		line := text + numbered("#", i, i)[0]
		if s.pendCost+len(line)+lineOverhead > r.storeCap {
			break
		}
		if err := r.acceptLine(ctx, s, docker.LogEntry{Time: clk.now(), Stream: "stdout", Text: line}); err != nil {
			t.Fatal(err)
		}
		kept = append(kept, line)
	}
	// The buffer is full and the store does not take it: a line stamped
	// waitLag ago is dropped at once, without waiting.
	clk.add(waitLag)
	old := clk.now().Add(-waitLag)
	start := time.Now()
	for j := range 7 {
		le := docker.LogEntry{Time: old.Add(-time.Duration(j)), Stream: "stdout", Text: text}
		if err := r.acceptLine(ctx, s, le); err != nil {
			t.Fatal(err)
		}
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Fatalf("dropping 7 lines took %v: the follower waited for the store", waited)
	}
	if s.dropped != 7 {
		t.Fatalf("dropped = %d, want 7", s.dropped)
	}
	if err := r.storeStream(ctx, s, true); err != nil {
		t.Fatal(err)
	}
	got := storedTexts(t, st, app)
	want := append(kept, dropMarker(7))
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("history ends %q, want the %d kept lines then %q", got[max(0, len(got)-2):], len(kept), dropMarker(7))
	}
	// Room again: the next line is kept, after the marker.
	if err := r.acceptLine(ctx, s, docker.LogEntry{Time: clk.now(), Stream: "stdout", Text: "after"}); err != nil {
		t.Fatal(err)
	}
	if err := r.storeStream(ctx, s, true); err != nil {
		t.Fatal(err)
	}
	if got := storedTexts(t, st, app); got[len(got)-1] != "after" || s.dropped != 0 {
		t.Fatalf("history ends %q, dropped %d", got[len(got)-1], s.dropped)
	}
}

// A young line waits for room rather than being dropped: a burst the store
// catches up with loses nothing. So does a line fillWindow read back from
// the engine's files, however old it is.
func TestStoreStallLineWaits(t *testing.T) {
	for _, tc := range []struct {
		name      string
		at        time.Time
		recovered bool
	}{
		{"young line", time.Now(), false},
		{"recovered old line", time.Now().Add(-time.Hour), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := storetest.Open(t)
			r, err := NewRelay(RelayOptions{Store: st, FlushBytes: 1024})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			s := r.streamFor(app)
			text := strings.Repeat("y", 100)
			n := 0
			for s.pendCost+len(text)+lineOverhead <= r.storeCap {
				if err := r.acceptLine(ctx, s, docker.LogEntry{Time: time.Now(), Stream: "stdout", Text: text}); err != nil {
					t.Fatal(err)
				}
				n++
			}
			done := make(chan error, 1)
			go func() {
				done <- r.accept(ctx, s, docker.LogEntry{Time: tc.at, Stream: "stdout", Text: text + "waited"}, tc.recovered)
			}()
			select {
			case err := <-done:
				t.Fatalf("the line did not wait for room: %v", err)
			case <-time.After(50 * time.Millisecond):
			}
			if err := r.storeStream(ctx, s, true); err != nil { // the store takes the buffer
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if err := r.storeStream(ctx, s, true); err != nil {
				t.Fatal(err)
			}
			got := storedTexts(t, st, app)
			if len(got) != n+1 || got[n] != text+"waited" || s.dropped != 0 {
				t.Fatalf("stored %d lines ending %q, dropped %d; want %d ending in \"waited\", none dropped",
					len(got), got[len(got)-1], s.dropped, n+1)
			}
		})
	}
}

// Docker's follower may jump over lines when the file it reads rotates
// (20.10 and older). A follower that was behind and jumps reads the window
// from the engine's files: lines still there are recovered in order;
// lines already deleted are marked as a window that may be missing; a gap
// that was only a pause of the app is left alone.
func TestFollowerJump(t *testing.T) {
	base := time.Now().Add(-time.Minute) // the follower reads a minute late
	at := func(d time.Duration) time.Time { return base.Add(d) }
	ctx := context.Background()

	t.Run("skipped lines still held are recovered", func(t *testing.T) {
		e := newRelayEnv(t, RelayOptions{FlushInterval: 5 * time.Millisecond}, true)
		e.engine.start("c1")
		e.engine.printAt("c1", "stdout", at(0), "a", "b")
		e.engine.printAt("c1", "stdout", at(10*time.Second), "x1", "x2", "x3")
		e.engine.printAt("c1", "stdout", at(30*time.Second), "c", "d")
		e.engine.skipWhenFollowing("x1", "x2", "x3")
		if err := e.r.PostStart(ctx, app, "c1"); err != nil {
			t.Fatal(err)
		}
		want := "a,b,x1,x2,x3,c,d"
		waitFor(t, 5*time.Second, want, func() bool { return strings.Join(storedTexts(t, e.st, app), ",") == want })
	})

	t.Run("rotated lines are marked", func(t *testing.T) {
		e := newRelayEnv(t, RelayOptions{FlushInterval: 5 * time.Millisecond}, true)
		e.engine.start("c1")
		e.engine.printAt("c1", "stdout", at(0), "a", "b")
		if err := e.r.PostStart(ctx, app, "c1"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, "a, b stored", func() bool { return len(stored(t, e.st, app)) == 2 })
		bTime := stored(t, e.st, app)[1].Time
		e.engine.skipWhenFollowing("x1", "x2", "x3")
		e.engine.rotate("c1", at(20*time.Second)) // x1's file is gone
		e.engine.printAt("c1", "stdout", at(10*time.Second), "x1")
		e.engine.printAt("c1", "stdout", at(20*time.Second), "x2", "x3")
		e.engine.printAt("c1", "stdout", at(30*time.Second), "c", "d")
		waitFor(t, 5*time.Second, "7 lines stored", func() bool { return len(stored(t, e.st, app)) >= 7 })
		got := storedTexts(t, e.st, app)
		x2Time := stored(t, e.st, app)[3].Time
		prefix := fmt.Sprintf("… log lines between %s and %s may be missing",
			bTime.UTC().Format(time.RFC3339Nano), x2Time.UTC().Format(time.RFC3339Nano))
		if len(got) != 7 || !strings.HasPrefix(got[2], prefix) ||
			strings.Join(append(got[:2:2], got[3:]...), ",") != "a,b,x2,x3,c,d" {
			t.Fatalf("history = %q, want a, b, a marker starting %q, x2, x3, c, d", got, prefix)
		}
	})

	t.Run("a pause of the app is no loss", func(t *testing.T) {
		e := newRelayEnv(t, RelayOptions{FlushInterval: 5 * time.Millisecond}, true)
		e.engine.start("c1")
		e.engine.printAt("c1", "stdout", at(0), "a", "b")
		e.engine.printAt("c1", "stdout", at(30*time.Second), "c", "d")
		if err := e.r.PostStart(ctx, app, "c1"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, "4 lines stored", func() bool { return len(stored(t, e.st, app)) >= 4 })
		time.Sleep(50 * time.Millisecond)
		if got := strings.Join(storedTexts(t, e.st, app), ","); got != "a,b,c,d" {
			t.Fatalf("history = %q, want a,b,c,d", got)
		}
	})
}

// The watchdog ends a read whose last line was late and after which
// nothing came for stallTimeout; a live line disarms it.
func TestStallWatchdog(t *testing.T) {
	now := time.Now()
	w := newStallWatchdog(context.Background())
	w.saw(now.Add(-time.Minute), now) // late: armed
	w.saw(now, now)                   // live: disarmed
	time.Sleep(stallTimeout + 200*time.Millisecond)
	if w.ctx.Err() != nil || w.stop() {
		t.Fatal("a live follower was stopped")
	}

	w = newStallWatchdog(context.Background())
	w.saw(now.Add(-time.Minute), now)
	select {
	case <-w.ctx.Done():
	case <-time.After(stallTimeout + 5*time.Second):
		t.Fatal("a stalled follower was not stopped")
	}
	if !w.stop() {
		t.Fatal("stop does not report the stall")
	}
}
