package logs

import (
	"context"
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
// catches up with loses nothing.
func TestStoreStallYoungLineWaits(t *testing.T) {
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
		done <- r.acceptLine(ctx, s, docker.LogEntry{Time: time.Now(), Stream: "stdout", Text: text + "waited"})
	}()
	select {
	case err := <-done:
		t.Fatalf("a young line did not wait for room: %v", err)
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
}

// A follower reading a backlog (lines stamped long before they are read)
// that jumps ahead by more than skipThreshold may have had an engine log
// file rotated away under it: the window is announced before the line
// after it, in the history and in the live stream.
func TestBacklogSkipIsAnnounced(t *testing.T) {
	st := storetest.Open(t)
	clk := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	r, err := NewRelay(RelayOptions{Store: st, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s := r.streamFor(app)
	base := clk.now().Add(-time.Minute) // a minute behind
	lines := []struct {
		at   time.Duration
		text string
	}{
		{0, "a"}, {time.Millisecond, "b"},
		{30 * time.Second, "c"}, // 30 s later: a rotated file may be gone
		{30*time.Second + time.Millisecond, "d"},
	}
	for _, l := range lines {
		if err := r.acceptLine(ctx, s, docker.LogEntry{Time: base.Add(l.at), Stream: "stdout", Text: l.text}); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.storeStream(ctx, s, true); err != nil {
		t.Fatal(err)
	}
	marker := skipMarker(base.Add(time.Millisecond), base.Add(30*time.Second), time.Minute)
	want := []string{"a", "b", marker, "c", "d"}
	if got := storedTexts(t, st, app); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("history = %q, want %q", got, want)
	}

	// Docker's follower may also continue at the live end: the line
	// after the window is not late, the one before it was.
	s3 := r.streamFor("prod_44_app")
	for i, text := range []string{"a", "b", "live"} {
		at := base.Add(time.Duration(i) * time.Millisecond)
		if text == "live" {
			at = clk.now()
		}
		if err := r.acceptLine(ctx, s3, docker.LogEntry{Time: at, Stream: "stdout", Text: text}); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.storeStream(ctx, s3, true); err != nil {
		t.Fatal(err)
	}
	marker = skipMarker(base.Add(time.Millisecond), clk.now(), time.Minute)
	if got := storedTexts(t, st, "prod_44_app"); strings.Join(got, "\n") != strings.Join([]string{"a", "b", marker, "live"}, "\n") {
		t.Fatalf("history = %q, want a window before the live line", got)
	}

	// The same gap in an app read as it prints is a pause, not a loss.
	s2 := r.streamFor("prod_43_app")
	for _, l := range lines {
		clk.set(base.Add(l.at))
		if err := r.acceptLine(ctx, s2, docker.LogEntry{Time: base.Add(l.at), Stream: "stdout", Text: l.text}); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.storeStream(ctx, s2, true); err != nil {
		t.Fatal(err)
	}
	if got := storedTexts(t, st, "prod_43_app"); strings.Join(got, ",") != "a,b,c,d" {
		t.Fatalf("history of a live app = %q, want a,b,c,d", got)
	}
}

// The watchdog ends a read whose last line was late and after which
// nothing came for stallTimeout; a live line disarms it.
func TestStallWatchdog(t *testing.T) {
	clk := &clock{t: time.Now()}
	w := newStallWatchdog(context.Background(), clk.now)
	w.saw(clk.now().Add(-time.Minute)) // late: armed
	w.saw(clk.now())                   // live: disarmed
	time.Sleep(stallTimeout + 200*time.Millisecond)
	if w.ctx.Err() != nil || w.stop() {
		t.Fatal("a live follower was stopped")
	}

	w = newStallWatchdog(context.Background(), clk.now)
	w.saw(clk.now().Add(-time.Minute))
	select {
	case <-w.ctx.Done():
	case <-time.After(stallTimeout + 5*time.Second):
		t.Fatal("a stalled follower was not stopped")
	}
	if !w.stop() {
		t.Fatal("stop does not report the stall")
	}
}
