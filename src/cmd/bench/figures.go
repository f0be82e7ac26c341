package main

import (
	"fmt"
	"sort"
	"time"
)

// plan is how much of each measurement a run does.
type plan struct {
	starts    int           // agent starts for start → CONNECTED
	settle    time.Duration // connected (and apps running) this long before RSS is read
	apps      int           // idle PROD apps for RSS and CPU
	cpuWindow time.Duration // CPU time is counted over this window
	rounds    int           // request → RUNNING rounds, each next to an SDK create+start
	logWarmup time.Duration // lines flowing this long before counting starts
	logWindow time.Duration // lines are counted over this window
}

// planFor is the plan, or a much shorter one for a smoke run.
func planFor(short bool) plan {
	if short {
		return plan{starts: 2, settle: 2 * time.Second, apps: 2, cpuWindow: 3 * time.Second, rounds: 2,
			logWarmup: time.Second, logWindow: 2 * time.Second}
	}
	return plan{starts: 5, settle: 20 * time.Second, apps: 10, cpuWindow: 60 * time.Second, rounds: 10,
		logWarmup: 2 * time.Second, logWindow: 10 * time.Second}
}

// Figure IDs, the keys of build/bench.json.
const (
	figBinary      = "binary_size"
	figConnect     = "start_to_connected"
	figRSSIdle     = "rss_idle_0_apps"
	figRSSApps     = "rss_idle_apps"
	figCPUApps     = "cpu_idle_apps"
	figReqAgent    = "request_to_running_agent"
	figReqSDK      = "request_to_running_sdk"
	figReqRatio    = "request_to_running_ratio"
	figLogRate     = "log_relay_lines_per_s"
	figLogDrops    = "log_relay_dropped"
	figLogRSS      = "log_relay_rss"
	notReachedText = "not reached: an earlier step failed"
)

// Budgets of DESIGN.md §6.
const (
	budgetBinaryBytes = 25e6
	budgetRSSIdle     = 16 << 20
	budgetRSSApps     = 20 << 20
	budgetCPUPercent  = 0.2
	budgetConnect     = 60 * time.Millisecond
	budgetRatio       = 1.08
	budgetLinesPerSec = 20000
)

// newFigures lists every figure of the table in order, each "not reached"
// until its step measures it.
func newFigures(p plan) []Figure {
	f := []Figure{
		{ID: figBinary, Label: "binary size, stripped linux/amd64", Unit: "bytes",
			Budget: "≤ 25 MB, frp linked in", Limit: budgetBinaryBytes, Note: "frp is not linked in yet"},
		{ID: figConnect, Label: fmt.Sprintf("start → CONNECTED, median of %d", p.starts), Unit: "ms",
			Budget: "≤ 60 ms", Limit: msOf(budgetConnect)},
		{ID: figRSSIdle, Label: fmt.Sprintf("RSS, %v connected, 0 apps", p.settle), Unit: "bytes",
			Budget: "≤ 16 MiB", Limit: budgetRSSIdle},
		{ID: figRSSApps, Label: fmt.Sprintf("RSS, %v after %d PROD apps RUNNING", p.settle, p.apps), Unit: "bytes",
			Budget: "≤ 20 MiB", Limit: budgetRSSApps},
		{ID: figCPUApps, Label: fmt.Sprintf("CPU over %v idle, %d apps running", p.cpuWindow, p.apps), Unit: "% of one core",
			Budget: "≤ 0.2 % of one core", Limit: budgetCPUPercent},
		{ID: figReqAgent, Label: fmt.Sprintf("request_app_state → RUNNING reported, median of %d", p.rounds), Unit: "ms"},
		{ID: figReqSDK, Label: fmt.Sprintf("same create+start with the Docker SDK, median of %d", p.rounds), Unit: "ms"},
		{ID: figReqRatio, Label: "request → RUNNING / SDK create+start", Unit: "×", Budget: "≤ 1.08×", Limit: budgetRatio},
		{ID: figLogRate, Label: fmt.Sprintf("log relay, one app printing flat out, over %v", p.logWindow), Unit: "lines/s",
			Budget: "≥ 20 000 lines/s", Limit: budgetLinesPerSec},
		{ID: figLogDrops, Label: "log lines dropped (announced by the agent)", Unit: "lines",
			Budget: "counted and reported"},
		{ID: figLogRSS, Label: "RSS at the end of the log relay test", Unit: "bytes", Budget: "bounded"},
	}
	for i := range f {
		f[i].Error = notReachedText
	}
	return f
}

// bounds says how each figure is judged; the others have no budget of
// their own (the parts of the ratio) or are judged by their step (drops).
var bounds = map[string]bound{
	figBinary:   atMost,
	figConnect:  atMost,
	figRSSIdle:  atMost,
	figRSSApps:  atMost,
	figCPUApps:  atMost,
	figReqRatio: atMost,
	figLogRate:  atLeast,
}

// judgeAll sets every verdict a step has not set itself.
func (r *Report) judgeAll() {
	for i := range r.Figures {
		f := &r.Figures[i]
		if f.Verdict != "" && f.Error == "" {
			continue
		}
		f.judge(bounds[f.ID])
	}
}

// set records a measured value: its printed text, its number, no error.
func (r *Report) set(id string, value float64, text string) *Figure {
	f := r.figure(id)
	f.Value, f.Text, f.Error = value, text, ""
	return f
}

// fail marks the figures with ids that are still unmeasured as not
// measured because of err.
func (r *Report) fail(err error, ids ...string) {
	for _, id := range ids {
		if f := r.figure(id); f != nil && f.Error == notReachedText {
			f.Error = err.Error()
		}
	}
}

// medianDuration is the median of ds (the mean of the middle two for an
// even count).
func medianDuration(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
