package logs

import (
	"context"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"reagent/src/store/storetest"
)

const app = "prod_42_app"

var appTopic = Topic(testSerial, app)

func TestRelayPublishesOnlyWhileSubscribed(t *testing.T) {
	e := newRelayEnv(t, RelayOptions{FlushInterval: 10 * time.Millisecond}, false)
	ctx := context.Background()
	e.link.connect(t)
	e.engine.start("c1")
	if err := e.r.PostStart(ctx, app, "c1"); err != nil {
		t.Fatal(err)
	}
	e.engine.print("c1", "stdout", numbered("a", 1, 5)...)
	waitFor(t, 5*time.Second, "5 lines stored", func() bool { return len(stored(t, e.st, app)) == 5 })
	if p := e.link.publications(""); len(p) != 0 {
		t.Fatalf("published without a subscriber: %+v", p)
	}
	if !slices.Contains(e.link.matchLog, appTopic) {
		t.Fatalf("the router was not asked about %s: %q", appTopic, e.link.matchLog)
	}

	e.link.created(7, appTopic, "exact")
	e.engine.print("c1", "stderr", numbered("b", 1, 5)...)
	waitFor(t, 5*time.Second, "b1..b5 published", func() bool {
		return slices.Equal(publishedLines(e.link, appTopic), numbered("b", 1, 5))
	})

	e.link.deleted(7)
	e.engine.print("c1", "stdout", numbered("c", 1, 3)...)
	waitFor(t, 5*time.Second, "13 lines stored", func() bool { return len(stored(t, e.st, app)) == 13 })
	if got := publishedLines(e.link, appTopic); !slices.Equal(got, numbered("b", 1, 5)) {
		t.Fatalf("published after on_delete: %q", got)
	}
	want := append(append(numbered("a", 1, 5), numbered("b", 1, 5)...), numbered("c", 1, 3)...)
	if got := storedTexts(t, e.st, app); !slices.Equal(got, want) {
		t.Fatalf("stored %q", got)
	}
	for _, l := range stored(t, e.st, app)[5:10] {
		if l.Stream != "stderr" {
			t.Fatalf("stream of %q is %q", l.Text, l.Stream)
		}
	}
}

func TestRelayFlushTriggers(t *testing.T) {
	tests := []struct {
		name     string
		interval time.Duration
		bytes    int
		lines    int
		want     int // lines flushed; the rest waits for the interval
	}{
		{"by size", time.Hour, 1024, 30, 21}, // 21 lines of 50 bytes ≥ 1 KiB; no interval for an hour
		{"by interval", 20 * time.Millisecond, 1 << 20, 1, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newRelayEnv(t, RelayOptions{FlushInterval: tc.interval, FlushBytes: tc.bytes}, false)
			e.link.setMatch(appTopic, uint64(3))
			e.engine.start("c1")
			if err := e.r.PostStart(context.Background(), app, "c1"); err != nil {
				t.Fatal(err)
			}
			e.link.connect(t)                                                   // matches the log's topic before it returns
			lines := numbered(strings.Repeat("x", 45)+"-", 100, 100+tc.lines-1) // 49 bytes + newline
			e.engine.print("c1", "stdout", lines...)
			var got []string
			waitFor(t, 5*time.Second, "lines published", func() bool {
				got = publishedLines(e.link, appTopic)
				return len(got) >= tc.want
			})
			if !slices.Equal(got, lines[:len(got)]) {
				t.Fatalf("published %q", got)
			}
			// The store flushes by its own size (lines cost more there).
			waitFor(t, 5*time.Second, "lines stored", func() bool { return len(stored(t, e.st, app)) >= min(tc.want, 8) })
		})
	}
}

// The router tells about subscriptions with meta events; only IDs
// matter for on_delete, and only this device's topics count.
func TestRelaySubscriptionMeta(t *testing.T) {
	e := newRelayEnv(t, RelayOptions{FlushInterval: 5 * time.Millisecond}, false)
	e.link.connect(t)
	const control = "prod_1_control"
	controlTopic := Topic(testSerial, control)
	e.link.created(1, controlTopic, "exact")
	rounds := 0
	// settled waits for two publisher rounds after everything so far, so a
	// publication of the log under test would have been seen.
	settled := func() {
		for range 2 {
			rounds++
			e.r.Write(control, "tick")
			waitFor(t, 5*time.Second, "control published", func() bool { return len(e.link.publications(controlTopic)) == rounds })
		}
	}
	tests := []struct {
		name   string
		uri    string
		policy string
		live   bool
	}{
		{"exact", appTopic, "exact", true},
		{"no policy is exact", appTopic, "", true},
		{"another container", Topic(testSerial, "prod_42_other"), "exact", false},
		{"another device", Topic("other-serial", app), "exact", false},
		{"prefix of the device", "reswarm.logs." + testSerial + ".", "prefix", true},
		{"prefix of all logs", "reswarm.logs.", "prefix", true},
		{"prefix of the app's names", "reswarm.logs." + testSerial + ".prod_42", "prefix", true},
		{"prefix of another device", "reswarm.logs.other.", "prefix", false},
		{"wildcard container", "reswarm.logs.." + app, "wildcard", true},
		{"wildcard device", "reswarm.logs." + testSerial + ".", "wildcard", true},
		{"wildcard too short", "reswarm.logs." + testSerial, "wildcard", false},
		{"wildcard another container", "reswarm.logs..prod_9_x", "wildcard", false},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := uint64(100 + i)
			e.link.created(id, tc.uri, tc.policy)
			before := len(e.link.publications(appTopic))
			e.r.Write(app, tc.name)
			settled()
			got := len(e.link.publications(appTopic)) - before
			if want := map[bool]int{true: 1, false: 0}[tc.live]; got != want {
				t.Fatalf("%d publications, want %d", got, want)
			}
			e.link.deleted(id)
			e.r.Write(app, "after delete")
			settled()
			if n := len(e.link.publications(appTopic)) - before; n != got {
				t.Fatalf("published after on_delete of %d", id)
			}
		})
	}
}

func TestRelayMatchAndReconnect(t *testing.T) {
	e := newRelayEnv(t, RelayOptions{FlushInterval: 5 * time.Millisecond}, false)
	ctx := context.Background()
	e.engine.start("c1")
	if err := e.r.PostStart(ctx, app, "c1"); err != nil {
		t.Fatal(err)
	}
	// A subscription that existed before the device connected.
	e.link.setMatch(appTopic, float64(5)) // JSON numbers decode as float64
	e.link.connect(t)
	e.engine.print("c1", "stdout", "one")
	waitFor(t, 5*time.Second, "one published", func() bool { return slices.Equal(publishedLines(e.link, appTopic), []string{"one"}) })

	// The router goes away. Lines queue for the subscriber we had.
	e.link.setConnected(false)
	e.engine.print("c1", "stdout", numbered("outage", 1, 4)...)
	waitFor(t, 5*time.Second, "outage stored", func() bool { return len(stored(t, e.st, app)) == 5 })

	// It comes back, the subscriber has not yet: the queue is lost, and the
	// next subscriber hears about the gap first.
	e.link.setMatch(appTopic)
	e.link.connect(t)
	e.engine.print("c1", "stdout", "unheard")
	waitFor(t, 5*time.Second, "unheard stored", func() bool { return len(stored(t, e.st, app)) == 6 })
	e.link.created(9, appTopic, "exact")
	e.engine.print("c1", "stdout", "two")
	want := []string{"one", dropMarker(4), "two"}
	waitFor(t, 5*time.Second, "the gap announced", func() bool { return slices.Equal(publishedLines(e.link, appTopic), want) })

	// The subscriber stays across the next outage: queued lines arrive.
	e.link.setConnected(false)
	e.engine.print("c1", "stdout", "three")
	waitFor(t, 5*time.Second, "three stored", func() bool { return len(stored(t, e.st, app)) == 8 })
	e.link.setMatch(appTopic, uint64(11))
	e.link.connect(t)
	want = append(want, "three")
	waitFor(t, 5*time.Second, "queued line published", func() bool { return slices.Equal(publishedLines(e.link, appTopic), want) })

	// on_delete overtakes the answer of match: the late answer does not
	// bring the subscription back.
	e.link.setConnected(false)
	e.link.setMatch(appTopic, uint64(12))
	e.link.mu.Lock()
	e.link.beforeAnswer = func() { e.link.deleted(12) }
	e.link.mu.Unlock()
	e.link.connect(t)
	e.engine.print("c1", "stdout", "four")
	waitFor(t, 5*time.Second, "four stored", func() bool { return len(stored(t, e.st, app)) == 9 })
	if got := publishedLines(e.link, appTopic); !slices.Equal(got, want) {
		t.Fatalf("published for a deleted subscription: %q", got)
	}
}

// A stalled link never stalls storing; what the queue cannot hold is
// counted and announced once the link moves again.
func TestRelayStalledLink(t *testing.T) {
	e := newRelayEnv(t, RelayOptions{FlushInterval: 5 * time.Millisecond, FlushBytes: 512, MaxPending: 2048}, false)
	e.link.setMatch(appTopic, uint64(1))
	e.engine.start("c1")
	if err := e.r.PostStart(context.Background(), app, "c1"); err != nil {
		t.Fatal(err)
	}
	e.link.connect(t)
	gate := make(chan struct{})
	e.link.mu.Lock()
	e.link.gate = gate
	e.link.mu.Unlock()
	e.engine.print("c1", "stdout", "first")
	select {
	case <-e.link.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the publisher did not publish")
	}
	lines := numbered(strings.Repeat("l", 35)+"-", 1000, 1199) // 200 lines of 40 bytes
	e.engine.print("c1", "stdout", lines...)
	waitFor(t, 5*time.Second, "every line stored while the link is stuck", func() bool { return len(stored(t, e.st, app)) == 201 })

	e.link.mu.Lock()
	e.link.gate = nil
	e.link.mu.Unlock()
	close(gate)
	var got []string
	waitFor(t, 5*time.Second, "the drop announced", func() bool {
		got = publishedLines(e.link, appTopic)
		return len(got) > 0 && strings.HasPrefix(got[len(got)-1], "… ")
	})
	if got[0] != "first" {
		t.Fatalf("first publication %q", got[0])
	}
	queued := got[1 : len(got)-1]
	if len(queued) == 0 || len(queued)*41 > 2048 || !slices.Equal(queued, lines[:len(queued)]) {
		t.Fatalf("queued lines %d (%q…)", len(queued), queued)
	}
	if want := dropMarker(200 - len(queued)); got[len(got)-1] != want {
		t.Fatalf("marker %q, want %q", got[len(got)-1], want)
	}
}

func TestRelayAgentMessages(t *testing.T) {
	e := newRelayEnv(t, RelayOptions{FlushInterval: 5 * time.Millisecond}, false)
	e.link.connect(t)
	const dev = "dev_42_app"
	devTopic := Topic(testSerial, dev)

	// Nobody listens: stored, not published.
	e.r.Write(dev, "quiet")
	e.r.TransferProgress(dev, "app.tgz", 1)
	e.r.Clear(dev)
	waitFor(t, 5*time.Second, "quiet stored", func() bool { return slices.Equal(storedTexts(t, e.st, dev), []string{"quiet"}) })

	e.link.created(4, devTopic, "exact")
	e.r.Write(dev, "Starting image build...")
	e.r.Progress(dev, []byte(`{"status":"Step 1/2"}`+"\r\n"))
	e.r.TransferProgress(dev, "app.tgz", 12.34567)
	e.r.Clear(dev)
	want := [][]any{
		{map[string]any{"type": "build", "chunk": "Starting image build..."}},
		{`{"status":"Step 1/2"}`},
		{map[string]any{"id": "app.tgz", "status": "Transfer Progress:", "progress": "12.346%"}},
		{map[string]any{"type": "build", "chunk": "LOGGER_CLEAR"}},
	}
	waitFor(t, 5*time.Second, "four publications", func() bool { return len(e.link.publications(devTopic)) == 4 })
	var got [][]any
	for _, p := range e.link.publications(devTopic) {
		got = append(got, p.args)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("publications\n got  %#v\n want %#v", got, want)
	}
	waitFor(t, 5*time.Second, "agent lines stored", func() bool { return len(stored(t, e.st, dev)) == 3 })
	for i, l := range stored(t, e.st, dev) {
		w := []string{"quiet", "Starting image build...", `{"status":"Step 1/2"}`}[i]
		if l.Text != w || l.Stream != "agent" || l.Time.IsZero() {
			t.Fatalf("stored line %d: %+v, want agent %q", i, l, w)
		}
	}
	// Invalid names are ignored, not stored under a bogus name.
	e.r.Write("not a log", "x")
	e.r.Progress("../x", []byte("x"))
}

// A follower resumes right after the newest stored container line: after
// a restart of the relay (agent) and after Stop/PostStart, no line is
// lost or stored twice, even with agent lines stamped later in between.
func TestRelayResume(t *testing.T) {
	st := storetest.Open(t)
	engine := newFakeEngine()
	engine.start("c1")
	ctx := context.Background()
	// The container's lines carry the engine's clock, long behind the
	// agent's: resuming after an agent line would skip some.
	old := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)

	e1 := newRelayEnv(t, RelayOptions{Store: st, Engine: engine, FlushInterval: 5 * time.Millisecond}, true)
	if err := e1.r.PostStart(ctx, app, "c1"); err != nil {
		t.Fatal(err)
	}
	engine.printAt("c1", "stdout", old, numbered("l", 1, 50)...)
	waitFor(t, 5*time.Second, "50 lines stored", func() bool { return len(stored(t, st, app)) == 50 })
	e1.r.Write(app, "agent note") // stamped now, long after the engine's clock
	e1.stop()

	engine.printAt("c1", "stdout", old, numbered("l", 51, 80)...) // while no agent runs
	e2 := newRelayEnv(t, RelayOptions{Store: st, Engine: engine, FlushInterval: 5 * time.Millisecond}, true)
	if err := e2.r.PostStart(ctx, app, "c1"); err != nil {
		t.Fatal(err)
	}
	engine.printAt("c1", "stdout", old, numbered("l", 81, 90)...)
	want := append(append(numbered("l", 1, 50), "agent note"), numbered("l", 51, 90)...)
	waitFor(t, 5*time.Second, "91 lines stored", func() bool { return len(stored(t, st, app)) >= 91 })

	if err := e2.r.Stop(ctx, app); err != nil {
		t.Fatal(err)
	}
	engine.printAt("c1", "stdout", old, numbered("l", 91, 95)...)
	if err := e2.r.PostStart(ctx, app, "c1"); err != nil {
		t.Fatal(err)
	}
	want = append(want, numbered("l", 91, 95)...)
	waitFor(t, 5*time.Second, "96 lines stored", func() bool { return len(stored(t, st, app)) >= 96 })
	lines := stored(t, st, app)
	var texts []string
	for i, l := range lines {
		texts = append(texts, l.Text)
		if i > 0 && l.Seq != lines[i-1].Seq+1 {
			t.Fatalf("seq gap at %d: %d after %d", i, l.Seq, lines[i-1].Seq)
		}
	}
	if !slices.Equal(texts, want) {
		t.Fatalf("stored\n got  %q\n want %q", texts, want)
	}
	calls := engine.logCalls()
	l50 := lines[49].Time
	if len(calls) < 2 || !calls[0].Since.IsZero() || !calls[1].Since.Equal(l50.Add(time.Nanosecond)) {
		t.Fatalf("Logs calls %+v; want the second to start 1ns after %v", calls, l50)
	}
}

func TestRelayFollowerLifecycle(t *testing.T) {
	e := newRelayEnv(t, RelayOptions{FlushInterval: 5 * time.Millisecond}, true)
	ctx := context.Background()
	e.engine.start("c1")
	for range 3 {
		if err := e.r.PostStart(ctx, app, "c1"); err != nil {
			t.Fatal(err)
		}
	}
	e.engine.print("c1", "stdout", "from c1")
	waitFor(t, 5*time.Second, "c1 line stored", func() bool { return len(stored(t, e.st, app)) == 1 })
	if n := len(e.engine.logCalls()); n != 1 {
		t.Fatalf("%d followers for one container", n)
	}

	// The app was recreated: the name now belongs to c2.
	e.engine.start("c2")
	e.engine.print("c2", "stdout", "from c2")
	if err := e.r.PostStart(ctx, app, "c2"); err != nil {
		t.Fatal(err)
	}
	e.engine.print("c1", "stdout", "c1 after the switch") // nobody follows c1 any more
	waitFor(t, 5*time.Second, "c2 line stored", func() bool { return len(stored(t, e.st, app)) == 2 })

	// The container stops: the follower ends; a restart is followed again.
	e.engine.stop("c2")
	e.engine.start("c2")
	e.engine.print("c2", "stdout", "c2 restarted")
	if err := e.r.PostStart(ctx, app, "c2"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "restart line stored", func() bool { return len(stored(t, e.st, app)) == 3 })
	if got := storedTexts(t, e.st, app); !slices.Equal(got, []string{"from c1", "from c2", "c2 restarted"}) {
		t.Fatalf("stored %q", got)
	}
	for range 2 {
		if err := e.r.Stop(ctx, app); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.r.Stop(ctx, "prod_1_never"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct{ name, id string }{{"bad name", "c1"}, {app, ""}} {
		if err := e.r.PostStart(ctx, bad.name, bad.id); err == nil {
			t.Fatalf("PostStart(%q, %q) accepted", bad.name, bad.id)
		}
	}
}

func TestRelayForget(t *testing.T) {
	e := newRelayEnv(t, RelayOptions{FlushInterval: 5 * time.Millisecond}, true)
	ctx := context.Background()
	e.engine.start("c1")
	if err := e.r.PostStart(ctx, app, "c1"); err != nil {
		t.Fatal(err)
	}
	e.engine.print("c1", "stdout", "before")
	waitFor(t, 5*time.Second, "stored", func() bool { return len(stored(t, e.st, app)) == 1 })
	if err := e.r.Forget(ctx, app); err != nil {
		t.Fatal(err)
	}
	if got := stored(t, e.st, app); len(got) != 0 {
		t.Fatalf("history kept: %+v", got)
	}
	// Reinstalled: the new container's log is read from its start.
	e.engine.start("c9")
	e.engine.print("c9", "stdout", "new app")
	if err := e.r.PostStart(ctx, app, "c9"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "new line stored", func() bool { return slices.Equal(storedTexts(t, e.st, app), []string{"new app"}) })
	if err := e.r.Forget(ctx, "bad"); err == nil {
		t.Fatal("Forget of an invalid name accepted")
	}
}

func TestRelayRunTwice(t *testing.T) {
	r, err := NewRelay(RelayOptions{Store: storetest.Open(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Run(ctx); err == nil {
		t.Fatal("second Run accepted")
	}
}

func TestNewRelayOptions(t *testing.T) {
	if _, err := NewRelay(RelayOptions{}); err == nil {
		t.Fatal("no store accepted")
	}
	if _, err := NewRelay(RelayOptions{Store: storetest.Open(t), Link: newFakeLink()}); err == nil {
		t.Fatal("a link without a serial accepted")
	}
}

// The reconciler stops the follower as soon as the container exited; the
// last lines the engine still sends are read before it goes.
func TestRelayStopDrains(t *testing.T) {
	e := newRelayEnv(t, RelayOptions{FlushInterval: 5 * time.Millisecond}, true)
	ctx := context.Background()
	e.engine.start("c1")
	if err := e.r.PostStart(ctx, app, "c1"); err != nil {
		t.Fatal(err)
	}
	e.engine.print("c1", "stdout", "running")
	waitFor(t, 5*time.Second, "the follower running", func() bool { return len(stored(t, e.st, app)) == 1 })
	e.engine.mu.Lock()
	gate := make(chan struct{})
	e.engine.slow = gate // the engine holds the stream back
	e.engine.mu.Unlock()
	e.engine.print("c1", "stderr", "panic: last words")
	e.engine.stop("c1")
	stopped := make(chan error, 1)
	go func() { stopped <- e.r.Stop(ctx, app) }()
	close(gate)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the last line stored", func() bool {
		return slices.Equal(storedTexts(t, e.st, app), []string{"running", "panic: last words"})
	})
}
