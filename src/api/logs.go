package api

import (
	"context"
	"math"
	"time"

	"reagent/src/errdefs"
	"reagent/src/logs"
	"reagent/src/wamp"
)

// AppLogs is what the app log procedures need from the relay
// (*logs.Relay).
type AppLogs interface {
	History(ctx context.Context, name string, n int) ([]string, error)
	Query(ctx context.Context, name string, q logs.Query) (logs.QueryResult, error)
}

// LogDeps are the parts behind the log procedures.
type LogDeps struct {
	Relay AppLogs // nil → get_app_log_history and query_app_logs are not registered
	// Managed reports whether name is a container (or log) of an app the
	// agent manages; only those can be named (the reference served any
	// container on the host). nil → none can.
	Managed func(ctx context.Context, name string) bool
	// AgentLogFile is the agent's log (query_device_logs); "" →
	// Flags.LogFile. Neither Flags nor AgentLogFile → query_device_logs
	// is not registered.
	AgentLogFile string
}

// AppLogsResult is the answer of query_app_logs, `[AppLogsResult]`:
//
//	{"lines": ["2024-05-01T10:00:00.000000000Z hello"], "source": "history", "returned": 1,
//	 "truncated": false, "device_time": "2024-05-01T10:00:05Z", "oldest_available": "2024-05-01T09:00:00Z"}
type AppLogsResult struct {
	Lines           []string `json:"lines"`
	Source          string   `json:"source"`
	Returned        int      `json:"returned"`
	Truncated       bool     `json:"truncated"`
	DeviceTime      string   `json:"device_time"`
	OldestAvailable string   `json:"oldest_available,omitempty"`
}

// DeviceLogsResult is the answer of query_device_logs,
// `[DeviceLogsResult]`:
//
//	{"lines": ["2024-05-01T10:00:00Z INFO connected"], "returned": 1, "truncated": false,
//	 "files_scanned": 2, "device_time": "2024-05-01T10:00:05Z", "oldest_available": "2024-04-30T08:00:00Z"}
type DeviceLogsResult struct {
	Lines           []string `json:"lines"`
	Returned        int      `json:"returned"`
	Truncated       bool     `json:"truncated"`
	FilesScanned    int      `json:"files_scanned"`
	DeviceTime      string   `json:"device_time"`
	OldestAvailable string   `json:"oldest_available,omitempty"`
}

// queryTimeout bounds one log query: the agent log is read from disk in
// full, which on a slow SD card takes a while.
const queryTimeout = time.Minute

// registerLogs registers the app log procedures when there is a relay,
// and query_device_logs when the agent has a log (Flags or AgentLogFile).
func (h *handlers) registerLogs(r Registrar) {
	if h.d.Logs.Relay != nil {
		h.add(r, ProcGetAppLogHistory, h.getAppLogHistory)
		h.add(r, ProcQueryAppLogs, h.queryAppLogs)
	}
	if h.d.Flags != nil || h.d.Logs.AgentLogFile != "" {
		h.add(r, ProcQueryDeviceLogs, h.queryDeviceLogs)
	}
}

func (h *handlers) appLogs() (AppLogs, error) {
	if h.d.Logs.Relay == nil {
		return nil, errdefs.Unavailable("app logs are not available")
	}
	return h.d.Logs.Relay, nil
}

// checkManaged refuses names that are no app log of a managed app.
func (h *handlers) checkManaged(ctx context.Context, name string) error {
	if err := logs.ValidName(name); err != nil {
		return errdefs.InvalidArgument("invalid value for containerName: %v", err)
	}
	if h.d.Logs.Managed == nil || !h.d.Logs.Managed(ctx, name) {
		return errdefs.InvalidArgument("invalid value for containerName: %q is not a container of an app on this device", name)
	}
	return nil
}

// get_app_log_history `[{containerName}]` → `[[line, …]]`: the newest
// stored lines as a flat list of strings (Studio depends on this shape).
func (h *handlers) getAppLogHistory(ctx context.Context, c *wamp.Call) (wamp.Result, error) {
	d, err := c.Dict(0)
	if err != nil {
		return wamp.Result{}, err
	}
	name, ok := d["containerName"].(string)
	if !ok {
		return wamp.Result{}, errdefs.InvalidArgument("invalid value for containerName")
	}
	if err := h.checkManaged(ctx, name); err != nil {
		return wamp.Result{}, err
	}
	rl, err := h.appLogs()
	if err != nil {
		return wamp.Result{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	lines, err := rl.History(ctx, name, logs.HistoryLines)
	if err != nil {
		return wamp.Result{}, err
	}
	if lines == nil {
		lines = []string{}
	}
	return args(lines), nil
}

// appLogsQuery is query_app_logs' decoded argument.
type appLogsQuery struct {
	name string
	q    logs.Query
}

// decodeQueryAppLogs reads `{containerName, tail?, offset?, since?,
// until?, timestamps?}` with the reference's texts.
func decodeQueryAppLogs(c *wamp.Call, now time.Time) (appLogsQuery, error) {
	d, err := c.Dict(0)
	if err != nil {
		return appLogsQuery{}, err
	}
	v, present := d["containerName"]
	name, ok := v.(string)
	if present && v != nil && !ok {
		return appLogsQuery{}, errdefs.InvalidArgument("invalid value for containerName")
	}
	if name == "" {
		return appLogsQuery{}, errdefs.InvalidArgument("container name is empty")
	}
	tail, err := wamp.Uint64(d, "tail", false, true)
	if err != nil {
		return appLogsQuery{}, err
	}
	offset, err := wamp.Uint64(d, "offset", false, true)
	if err != nil {
		return appLogsQuery{}, err
	}
	since, until, err := decodeWindow(d, now)
	if err != nil {
		return appLogsQuery{}, err
	}
	ts, err := wamp.BoolDefault(d, "timestamps", true)
	if err != nil {
		return appLogsQuery{}, err
	}
	return appLogsQuery{name: name, q: logs.Query{
		Tail: clampInt(tail), Offset: clampInt(offset), Since: since, Until: until, Timestamps: ts,
	}}, nil
}

// decodeWindow reads since and until: strings, as RFC3339, Unix seconds
// or a duration ago.
func decodeWindow(d map[string]any, now time.Time) (since, until time.Time, err error) {
	s, err := wamp.String(d, "since", false)
	if err != nil {
		return since, until, err
	}
	if since, err = logs.ParseTime("since", s, now); err != nil {
		return since, until, err
	}
	u, err := wamp.String(d, "until", false)
	if err != nil {
		return since, until, err
	}
	until, err = logs.ParseTime("until", u, now)
	return since, until, err
}

func clampInt(u uint64) int { return int(min(u, math.MaxInt32)) }

// query_app_logs → `[AppLogsResult]`, served from the stored history.
func (h *handlers) queryAppLogs(ctx context.Context, c *wamp.Call) (wamp.Result, error) {
	aq, err := decodeQueryAppLogs(c, h.now())
	if err != nil {
		return wamp.Result{}, err
	}
	if err := h.checkManaged(ctx, aq.name); err != nil {
		return wamp.Result{}, err
	}
	rl, err := h.appLogs()
	if err != nil {
		return wamp.Result{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	res, err := rl.Query(ctx, aq.name, aq.q)
	if err != nil {
		return wamp.Result{}, err
	}
	out := AppLogsResult{
		Lines: res.Lines, Source: res.Source, Returned: len(res.Lines), Truncated: res.Truncated,
		DeviceTime: rfc3339(res.DeviceTime), OldestAvailable: rfc3339(res.Oldest),
	}
	if out.Lines == nil {
		out.Lines = []string{}
	}
	return args(out), nil
}

// decodeQueryDeviceLogs reads the optional `{tail?, since?, until?,
// level?}`.
func decodeQueryDeviceLogs(c *wamp.Call, now time.Time) (logs.DeviceQuery, error) {
	d, err := c.OptDict(0)
	if err != nil {
		return logs.DeviceQuery{}, err
	}
	tail, err := wamp.Uint64(d, "tail", false, true)
	if err != nil {
		return logs.DeviceQuery{}, err
	}
	since, until, err := decodeWindow(d, now)
	if err != nil {
		return logs.DeviceQuery{}, err
	}
	level, err := wamp.String(d, "level", false)
	if err != nil {
		return logs.DeviceQuery{}, err
	}
	return logs.DeviceQuery{Tail: clampInt(tail), Since: since, Until: until, Level: level}, nil
}

// query_device_logs → `[DeviceLogsResult]`: the agent's own log and its
// rotations, rendered as text.
func (h *handlers) queryDeviceLogs(ctx context.Context, c *wamp.Call) (wamp.Result, error) {
	q, err := decodeQueryDeviceLogs(c, h.now())
	if err != nil {
		return wamp.Result{}, err
	}
	file := h.d.Logs.AgentLogFile
	if file == "" && h.d.Flags != nil {
		file = h.d.Flags.LogFile
	}
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	res, err := logs.QueryDeviceLogs(ctx, file, q)
	if err != nil {
		return wamp.Result{}, err
	}
	return args(DeviceLogsResult{
		Lines: res.Lines, Returned: len(res.Lines), Truncated: res.Truncated, FilesScanned: res.FilesScanned,
		DeviceTime: rfc3339(res.DeviceTime), OldestAvailable: rfc3339(res.Oldest),
	}), nil
}

// rfc3339 formats t in UTC; "" for the zero time (omitted on the wire).
func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
