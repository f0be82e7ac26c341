package agent

// End-to-end tests of the app log relay (issue #8) through the real agent:
// the reconciler starts a busybox app that prints numbered lines, the relay
// follows it, and Studio queries and subscribes through devcloud.

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	nx "github.com/gammazero/nexus/v3/wamp"

	"reagent/src/devcloud"
	"reagent/src/docker"
)

// cmdPrinter prints "line <n>" 50 times a second, forever.
var cmdPrinter = []string{"sh", "-c", `i=0; while :; do i=$((i+1)); echo "line $i"; sleep 0.02; done`}

// appLogLines is query_app_logs (tail 5000, no timestamps) as system,
// only the app's own numbered lines, as numbers.
func appLogLines(t *testing.T, ctx context.Context, cloud *devcloud.Cloud, serial, container string) []int {
	t.Helper()
	res, err := cloud.CallDevice(ctx, devcloud.SystemAuthID, serial, "query_app_logs",
		nx.List{nx.Dict{"containerName": container, "tail": 5000, "timestamps": false}}, nil)
	if err != nil {
		t.Fatalf("query_app_logs: %v", err)
	}
	m, _ := res.Arguments[0].(map[string]any)
	if m["source"] != "history" {
		t.Fatalf("answer %v", m)
	}
	var out []int
	for _, v := range m["lines"].([]any) {
		if s, ok := strings.CutPrefix(v.(string), "line "); ok {
			n, err := strconv.Atoi(s)
			if err != nil {
				t.Fatalf("line %q", v)
			}
			out = append(out, n)
		}
	}
	return out
}

// appCounter is the newest number the app printed, read from the engine.
func appCounter(t *testing.T, ctx context.Context, dc *docker.Client, container string) int {
	t.Helper()
	n := 0
	err := dc.Logs(ctx, container, docker.LogsOptions{Tail: 1}, func(le docker.LogEntry) error {
		n, _ = strconv.Atoi(strings.TrimPrefix(le.Text, "line "))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// checkConsecutive fails unless got is from, from+1, … without a gap or a
// duplicate.
func checkConsecutive(t *testing.T, got []int, from int) {
	t.Helper()
	for i, n := range got {
		if n != from+i {
			lo, hi := max(0, i-3), min(len(got), i+4)
			t.Fatalf("line %d of %d is %d, want %d (around it: %v)", i, len(got), n, from+i, got[lo:hi])
		}
	}
}

// The agent is killed with SIGKILL while its app prints; the app goes on.
// After the restart query_app_logs holds every line from before, during
// and after the outage exactly once.
func TestLogsSurviveAgentKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the agent binary against the engine")
	}
	e := newAppsEnv(t, 4*time.Minute)
	flockPath, agentDir := e.newDevice(t)
	cloud, dc, ctx, serial := e.cloud, e.dc, e.ctx, e.serial
	a := app{key: appKey(t), name: "Printer", version: "1.0.0"}
	e.push(t, a, a.version, cmdPrinter)
	p := startBinary(t, flockPath, agentDir)
	if err := cloud.AwaitDeviceStatus(ctx, serial, "CONNECTED"); err != nil {
		t.Fatal(err)
	}
	if err := cloud.RequestApp(ctx, serial, a.requested("RUNNING"), nil); err != nil {
		t.Fatal(err)
	}
	if err := cloud.AwaitAppState(ctx, serial, a.key, "PROD", "RUNNING"); err != nil {
		t.Fatal(err)
	}
	var before []int
	if err := await(ctx, func() bool { before = appLogLines(t, ctx, cloud, serial, a.container()); return len(before) >= 100 }); err != nil {
		t.Fatalf("lines before the kill: %v (%d)", err, len(before))
	}

	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.wait(t, 10*time.Second)
	atKill := appCounter(t, ctx, dc, a.container())
	// The app keeps printing while no agent runs.
	if err := await(ctx, func() bool { return appCounter(t, ctx, dc, a.container()) >= atKill+150 }); err != nil {
		t.Fatal(err)
	}
	atRestart := appCounter(t, ctx, dc, a.container())

	startBinary(t, flockPath, agentDir)
	var after []int
	if err := await(ctx, func() bool {
		res, err := cloud.CallDevice(ctx, devcloud.SystemAuthID, serial, "query_app_logs",
			nx.List{nx.Dict{"containerName": a.container(), "tail": 1, "timestamps": false}}, nil)
		if err != nil {
			return false // not connected again yet
		}
		lines, _ := res.Arguments[0].(map[string]any)["lines"].([]any)
		n := 0
		if len(lines) == 1 {
			n, _ = strconv.Atoi(strings.TrimPrefix(lines[0].(string), "line "))
		}
		return n >= atRestart+100
	}); err != nil {
		t.Fatal(err)
	}
	after = appLogLines(t, ctx, cloud, serial, a.container())
	t.Logf("%d lines before the kill, app at %d when killed and %d when restarted; %d lines after, last %d",
		len(before), atKill, atRestart, len(after), after[len(after)-1])
	if after[0] != 1 {
		t.Fatalf("history starts at line %d", after[0])
	}
	checkConsecutive(t, after, 1)
}

// With the in-process agent: no subscriber, no publication; a subscriber
// gets the app's lines within a second; the log procedures refuse names
// that are no app of the device.
func TestLogsLiveThroughAgent(t *testing.T) {
	e := appsStart(t, appsEnvOptions{})
	a := app{key: appKey(t), name: "Live", version: "1.0.0"}
	e.push(t, a, a.version, cmdPrinter)
	e.request(t, a.requested("RUNNING"), nil)
	e.await(t, a.key, "RUNNING")
	topic := devcloud.LogTopic(e.serial, a.container())

	e.awaitCond(t, "50 lines stored", func() bool { return len(appLogLines(t, e.ctx, e.cloud, e.serial, a.container())) >= 50 })
	if n := e.cloud.PublishCount(topic); n != 0 {
		t.Fatalf("%d publications on %s without a subscriber", n, topic)
	}

	cl, err := e.cloud.Session(e.ctx, devcloud.SystemAuthID)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	arrived := map[int]time.Time{}
	err = cl.Subscribe(topic, func(ev *nx.Event) {
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		for _, v := range ev.Arguments {
			s, _ := v.(string)
			for l := range strings.SplitSeq(s, "\n") {
				if n, err := strconv.Atoi(strings.TrimPrefix(l, "line ")); err == nil {
					arrived[n] = now
				}
			}
		}
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.awaitCond(t, "60 lines received", func() bool { mu.Lock(); defer mu.Unlock(); return len(arrived) >= 60 })

	// Latency: the engine's timestamp of each line (query_app_logs with
	// timestamps) to its arrival at the subscriber.
	res, err := e.cloud.CallDevice(e.ctx, devcloud.SystemAuthID, e.serial, "query_app_logs",
		nx.List{nx.Dict{"containerName": a.container(), "tail": 5000}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var lat []time.Duration
	mu.Lock()
	for _, v := range res.Arguments[0].(map[string]any)["lines"].([]any) {
		ts, text, _ := strings.Cut(v.(string), " ")
		n, err := strconv.Atoi(strings.TrimPrefix(text, "line "))
		at, ok := arrived[n]
		printed, perr := time.Parse(time.RFC3339Nano, ts)
		if err == nil && ok && perr == nil {
			lat = append(lat, at.Sub(printed))
		}
	}
	mu.Unlock()
	if len(lat) < 40 {
		t.Fatalf("only %d received lines found in the history", len(lat))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p95 := lat[len(lat)*95/100]
	t.Logf("print → subscriber through the agent over %d lines: p50 %v, p95 %v, max %v", len(lat), lat[len(lat)/2], p95, lat[len(lat)-1])
	if p95 > time.Second {
		t.Fatalf("p95 latency %v, want within 1s", p95)
	}

	for _, name := range []string{fmt.Sprintf("prod_%d_other", a.key), fmt.Sprintf("dev_%d_live", a.key), "portainer", "prod_1_x.y"} {
		for _, proc := range []string{"get_app_log_history", "query_app_logs"} {
			_, err := e.cloud.CallDevice(e.ctx, devcloud.SystemAuthID, e.serial, proc, nx.List{nx.Dict{"containerName": name}}, nil)
			if uri, text := rpcErr(t, err); uri != "wamp.error.invalid_argument" || !strings.HasPrefix(text, "invalid value for containerName") {
				t.Fatalf("%s %s: %s %q", proc, name, uri, text)
			}
		}
	}
	if h := e.appLog(t, a.container()); len(h) != 100 || !containsLine(h, "line ") {
		t.Fatalf("history of a managed app: %d lines", len(h))
	}
}

// cmdFlood prints its counter as fast as the shell can.
var cmdFlood = []string{"sh", "-c", `i=0; while :; do i=$((i+1)); echo "$i abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz"; done`}

// The agent binary follows an app printing as fast as it can while the
// router is gone for 30 s: its RSS stays flat, and the subscriber that
// comes back is told how many lines it missed.
func TestLogsAgentFloodWithRouterGone(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the agent binary against the engine")
	}
	e := newAppsEnv(t, 4*time.Minute)
	flockPath, agentDir := e.newDevice(t)
	cloud, ctx, serial := e.cloud, e.ctx, e.serial
	a := app{key: appKey(t), name: "Flood", version: "1.0.0"}
	e.push(t, a, a.version, cmdFlood)
	p := startBinary(t, flockPath, agentDir)
	if err := cloud.AwaitDeviceStatus(ctx, serial, "CONNECTED"); err != nil {
		t.Fatal(err)
	}
	topic := devcloud.LogTopic(serial, a.container())
	sub := tapLog(t, ctx, cloud, topic)
	if err := cloud.RequestApp(ctx, serial, a.requested("RUNNING"), nil); err != nil {
		t.Fatal(err)
	}
	if err := await(ctx, func() bool { return sub.Lines() > 10000 }); err != nil {
		t.Fatalf("flood not received: %v", err)
	}
	rssUp := procRSS(t, p.cmd.Process.Pid)

	if err := cloud.StopRouter(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var samples []uint64
	for time.Since(start) < 30*time.Second {
		samples = append(samples, procRSS(t, p.cmd.Process.Pid))
		tick := time.Now()
		if err := await(ctx, func() bool { return time.Since(tick) >= time.Second }); err != nil {
			t.Fatal(err)
		}
	}
	if err := cloud.StartRouter(); err != nil {
		t.Fatal(err)
	}
	if err := await(ctx, func() bool {
		_, err := cloud.CallDevice(ctx, devcloud.SystemAuthID, serial, "device_handshake", nil, nil)
		return err == nil
	}); err != nil {
		t.Fatalf("the agent did not reconnect: %v", err)
	}
	sub2 := tapLog(t, ctx, cloud, topic)
	if err := await(ctx, func() bool { return sub2.FirstMarker() != "" }); err != nil {
		t.Fatalf("no drop announcement after the router returned: %v", err)
	}
	peak := uint64(0)
	for _, s := range samples {
		peak = max(peak, s)
	}
	t.Logf("agent RSS: %.1f MiB with the router up; with it gone %.1f MiB after 5 s, %.1f MiB after 30 s, peak %.1f MiB",
		mibs(rssUp), mibs(samples[min(5, len(samples)-1)]), mibs(samples[len(samples)-1]), mibs(peak))
	t.Logf("announced after the router returned: %q", sub2.FirstMarker())
	if last, at5 := samples[len(samples)-1], samples[min(5, len(samples)-1)]; last > at5+16<<20 {
		t.Fatalf("agent RSS grew from %.1f to %.1f MiB while the router was gone", mibs(at5), mibs(last))
	}
}

func mibs(b uint64) float64 { return float64(b) / (1 << 20) }

// procRSS reads VmRSS of a process.
func procRSS(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS for pid %d", pid)
	return 0
}

// tapLog subscribes to a log topic for the rest of the test.
func tapLog(t *testing.T, ctx context.Context, cloud *devcloud.Cloud, topic string) *devcloud.LogTap {
	t.Helper()
	tap, err := cloud.TapLog(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tap.Close)
	return tap
}
