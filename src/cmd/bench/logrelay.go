package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/gammazero/nexus/v3/wamp"

	"reagent/src/devcloud"
)

// dropMarkerRE matches the agent's "… N log line(s) dropped (rate limit)".
var dropMarkerRE = regexp.MustCompile(`(\d+) log line\(s\) dropped`)

// windowMarkerRE matches the agent's "… log lines between A and B may be
// missing: …": lines the engine's log rotation may have deleted before
// the agent read them, which nobody can count.
var windowMarkerRE = regexp.MustCompile(`^… log lines between \S+ and \S+ may be missing`)

// lineCounter counts what a subscriber of an app's log topic receives.
// Each event carries a newline-joined batch of lines. The chatty app prints
// consecutive numbers, so a jump between two received numbers is lines
// lost somewhere; the agent must announce every line it drops with a
// marker line, and every window of lines the engine lost (its log file
// rotated before the agent read it) with a window marker right where the
// lines are missing.
type lineCounter struct {
	mu         sync.Mutex
	events     int64
	lines      int64 // numbers received
	other      int64 // other lines: the agent's own messages
	announced  int64 // sum of the drop markers
	windows    int64 // window markers received
	inWindows  int64 // numbers skipped where a window marker stands between the two numbers
	windowOpen bool  // a window marker came after the last number
	gaps       int64 // numbers skipped between consecutive received numbers
	gapRuns    int64 // how many jumps: a few large ones are lost log files, many small ones lost batches
	largestGap int64
	disordered int64  // numbers not greater than the one before
	last       uint64 // last number received
}

// counts is a snapshot of a lineCounter.
type counts struct {
	at                                                time.Time
	events, lines, other, announced, gaps, disordered int64
	windows, inWindows                                int64
	gapRuns, largestGap                               int64
	last                                              uint64
}

func (c *lineCounter) onEvent(ev *wamp.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events++
	for _, arg := range ev.Arguments {
		s, ok := arg.(string)
		if !ok {
			c.other++ // an agent message published as an object
			continue
		}
		for l := range strings.SplitSeq(s, "\n") {
			c.line(strings.TrimRight(l, "\r"))
		}
	}
}

func (c *lineCounter) line(l string) {
	n, err := strconv.ParseUint(l, 10, 64)
	if err != nil {
		if m := dropMarkerRE.FindStringSubmatch(l); m != nil {
			k, _ := strconv.ParseInt(m[1], 10, 64)
			c.announced += k
		} else if windowMarkerRE.MatchString(l) {
			c.windows++
			c.windowOpen = true
		} else {
			c.other++
		}
		return
	}
	c.lines++
	switch {
	case c.last == 0:
	case n <= c.last:
		c.disordered++
	case n > c.last+1:
		g := int64(n - c.last - 1)
		c.gaps += g
		c.gapRuns++
		c.largestGap = max(c.largestGap, g)
		if c.windowOpen {
			c.inWindows += g
		}
	}
	c.windowOpen = false
	if n > c.last {
		c.last = n
	}
}

func (c *lineCounter) snapshot() counts {
	c.mu.Lock()
	defer c.mu.Unlock()
	return counts{at: time.Now(), events: c.events, lines: c.lines, other: c.other, announced: c.announced,
		windows: c.windows, inWindows: c.inWindows, gaps: c.gaps, disordered: c.disordered, gapRuns: c.gapRuns, largestGap: c.largestGap, last: c.last}
}

func (b *bench) chattyApp() benchApp { return benchApp{key: b.keyBase + 60, name: "chatty"} }

// measureLogRelay runs the chatty app with a Studio subscriber on its log
// topic, lets lines flow for plan.logWarmup, then counts the lines that
// arrive over plan.logWindow. It reads the agent's RSS at the end, while
// the app still prints, then stops the app.
func (b *bench) measureLogRelay(ctx context.Context) error {
	if err := b.ensureAgent(ctx); err != nil {
		return err
	}
	a := b.chattyApp()
	if err := b.push(ctx, a, cmdChatty); err != nil {
		return err
	}
	sess, err := b.cloud.Session(ctx, devcloud.SystemAuthID)
	if err != nil {
		return fmt.Errorf("studio session: %w", err)
	}
	defer sess.Close()
	topic := devcloud.LogTopic(b.serial, a.container())
	c := &lineCounter{}
	if err := sess.Subscribe(topic, c.onEvent, nil); err != nil {
		return fmt.Errorf("subscribe %s: %w", topic, err)
	}
	if err := b.request(ctx, a, "RUNNING"); err != nil {
		return err
	}
	stopped := false
	defer func() {
		if !stopped {
			// The flood must end even when the measurement failed.
			sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_ = b.stopApp(sctx, a)
		}
	}()
	if err := b.awaitState(ctx, a, "RUNNING"); err != nil {
		return err
	}
	if err := b.awaitLines(ctx, c); err != nil {
		return err
	}
	if err := sleep(ctx, b.plan.logWarmup); err != nil {
		return err
	}
	cpu0 := b.cpuNow()
	mc0, mcErr := readMachineCPU()
	s0 := c.snapshot()
	profiled := b.cpuProfile("log-relay", b.plan.logWindow)
	if err := sleep(ctx, b.plan.logWindow); err != nil {
		return err
	}
	s1 := c.snapshot()
	cpu1 := b.cpuNow()
	mc1, mcErr1 := readMachineCPU()
	profiled()
	m, err := b.readAgentMem("log-relay")
	if err != nil {
		return err
	}
	printed, perr := b.lastPrinted(ctx, a)
	s2 := c.snapshot()
	if err := b.stopApp(ctx, a); err != nil {
		return err
	}
	stopped = true
	_ = sess.Unsubscribe(topic)

	secs := s1.at.Sub(s0.at).Seconds()
	rate := float64(s1.lines-s0.lines) / secs
	f := b.rep.set(figLogRate, rate, formatCount(rate)+" lines/s")
	f.Details = map[string]any{
		"lines": s1.lines - s0.lines, "window_seconds": secs, "events": s1.events - s0.events,
		"numbers_advanced_per_s": float64(s1.last-s0.last) / secs,
	}
	for who, ticks := range cpu1.since(cpu0) {
		f.Details[who+"_cpu_percent"] = 100 * float64(ticks) / float64(cpu1.hz) / cpu1.at.Sub(cpu0.at).Seconds()
	}
	if mcErr == nil && mcErr1 == nil {
		f.Details["machine_idle_percent"] = mc1.idlePercent(mc0)
	}
	if perr == nil {
		f.Details["app_printed_at_end"] = printed
		f.Details["received_last_at_end"] = s2.last
		f.Details["lag_lines_at_end"] = int64(printed) - int64(s2.last)
	}
	b.logf("log relay: %s lines/s over %.1f s (%d events); announced drops %d, gaps %d",
		formatCount(rate), secs, s1.events-s0.events, s1.announced-s0.announced, s2.gaps)

	drops := s1.announced - s0.announced
	f = b.rep.set(figLogDrops, float64(drops), formatCount(float64(drops)))
	f.Details = map[string]any{"announced_total": s2.announced, "gaps_total": s2.gaps, "gap_runs": s2.gapRuns,
		"largest_gap": s2.largestGap, "disordered_total": s2.disordered, "other_lines_total": s2.other,
		"window_markers_total": s2.windows, "gaps_in_windows_total": s2.inWindows}
	// Within when every line missing from the stream was announced: counted
	// by a drop marker, or inside a window the agent marked where it is.
	unannounced := s2.gaps - s2.announced - s2.inWindows
	switch {
	case unannounced > 0:
		f.Verdict = verdictOver
		f.Note = fmt.Sprintf("%s lines missing without a marker", formatCount(float64(unannounced)))
	case s2.inWindows > 0:
		f.Verdict = verdictWithin
		f.Note = fmt.Sprintf("%s missing over the whole test: %s counted, %s in %d window(s) lost to the engine's log rotation, marked",
			formatCount(float64(s2.gaps)), formatCount(float64(s2.announced)), formatCount(float64(s2.inWindows)), s2.windows)
	default:
		f.Verdict = verdictWithin
		f.Note = fmt.Sprintf("%s missing over the whole test, all announced", formatCount(float64(s2.gaps)))
	}

	f = b.rep.set(figLogRSS, float64(m.RSS), formatMiB(m.RSS))
	f.Details = memDetails(m)
	f.Verdict = verdictNone
	f.Note = "peak " + formatMiB(m.HWM)
	return nil
}

// awaitLines waits until the subscriber has received the first lines.
func (b *bench) awaitLines(ctx context.Context, c *lineCounter) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for c.snapshot().lines == 0 {
		select {
		case <-ctx.Done():
			return b.agentFailure(fmt.Errorf("no log line reached the subscriber: %w", ctx.Err()))
		case <-b.agent.done:
			return b.agentFailure(b.agent.exitErr())
		case <-tick.C:
		}
	}
	return nil
}

// lastPrinted is the newest number the app has printed, from the engine:
// how far behind the subscriber is.
func (b *bench) lastPrinted(ctx context.Context, a benchApp) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rc, err := b.dc.ContainerLogs(ctx, a.container(), container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: "1"})
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	// A TTY app's log is not multiplexed: the last line is the number.
	sc := bufio.NewScanner(rc)
	var last uint64
	for sc.Scan() {
		if n, err := strconv.ParseUint(strings.TrimSpace(sc.Text()), 10, 64); err == nil {
			last = n
		}
	}
	return last, sc.Err()
}

// cpuReading is the CPU time the agent and the engine have used so far, to
// tell during the log test which of them is busy. dockerd is found through
// its pid file; without it only the agent is read.
type cpuReading struct {
	at    time.Time
	hz    int
	ticks map[string]uint64 // "agent", "dockerd"
}

func (b *bench) cpuNow() cpuReading {
	hz, _ := clockTicks()
	r := cpuReading{at: time.Now(), hz: hz, ticks: map[string]uint64{}}
	if n, err := readCPUTicks(b.agent.pid()); err == nil {
		r.ticks["agent"] = n
	}
	if pid, err := dockerdPID(); err == nil {
		if n, err := readCPUTicks(pid); err == nil {
			r.ticks["dockerd"] = n
		}
	}
	return r
}

// since is the ticks used between r0 and r by each process read both times.
func (r cpuReading) since(r0 cpuReading) map[string]uint64 {
	out := map[string]uint64{}
	for who, n := range r.ticks {
		if n0, ok := r0.ticks[who]; ok && n >= n0 {
			out[who] = n - n0
		}
	}
	return out
}

func dockerdPID() (int, error) {
	b, err := os.ReadFile("/var/run/docker.pid")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}
