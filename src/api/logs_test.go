package api

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gammazero/nexus/v3/transport/serialize"

	"reagent/src/config"
	"reagent/src/errdefs"
	"reagent/src/logs"
	"reagent/src/wamp"
)

// fakeAppLogs answers from fixed data and records the queries.
type fakeAppLogs struct {
	mu      sync.Mutex
	history []string
	result  logs.QueryResult
	err     error
	queries []logs.Query
	names   []string
}

func (f *fakeAppLogs) History(_ context.Context, name string, n int) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.names = append(f.names, name)
	if n != logs.HistoryLines {
		return nil, errors.New("history asked for the wrong number of lines")
	}
	return f.history, f.err
}

func (f *fakeAppLogs) Query(_ context.Context, name string, q logs.Query) (logs.QueryResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.names = append(f.names, name)
	f.queries = append(f.queries, q)
	return f.result, f.err
}

var _ AppLogs = (*logs.Relay)(nil)

// managedOnly is a Managed that knows one app log.
func managedOnly(names ...string) func(context.Context, string) bool {
	return func(_ context.Context, n string) bool {
		for _, m := range names {
			if m == n {
				return true
			}
		}
		return false
	}
}

var testNow = time.Date(2024, 5, 1, 10, 0, 5, 0, time.UTC)

func TestGetAppLogHistory(t *testing.T) {
	f := &fakeAppLogs{history: []string{"Starting image build...", `{"status":"Step 1/2 : FROM busybox"}`, "line 1", "line 2"}}
	_, reg := newTest(t, Deps{Logs: LogDeps{Relay: f, Managed: managedOnly("prod_42_app")}})
	res, err := reg().call(t, ProcGetAppLogHistory, []any{map[string]any{"containerName": "prod_42_app"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	assertWire(t, res, "get_app_log_history.json")

	f.history = nil
	res, err = reg().call(t, ProcGetAppLogHistory, []any{map[string]any{"containerName": "prod_42_app"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	assertWire(t, res, "get_app_log_history_empty.json")
}

func TestQueryAppLogs(t *testing.T) {
	f := &fakeAppLogs{result: logs.QueryResult{
		Lines:  []string{"2024-05-01T10:00:00.000000000Z line 1", "2024-05-01T10:00:01.500000000Z line 2"},
		Source: "history", DeviceTime: testNow, Oldest: time.Date(2024, 5, 1, 11, 0, 0, 0, time.FixedZone("CEST", 7200)),
	}}
	h, reg := newTest(t, Deps{Logs: LogDeps{Relay: f, Managed: managedOnly("prod_42_app")}})
	h.now = func() time.Time { return testNow }
	res, err := reg().call(t, ProcQueryAppLogs, []any{map[string]any{"containerName": "prod_42_app"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	assertWire(t, res, "query_app_logs.json")

	f.result = logs.QueryResult{Source: "history", DeviceTime: testNow}
	res, err = reg().call(t, ProcQueryAppLogs, []any{map[string]any{"containerName": "prod_42_app"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	assertWire(t, res, "query_app_logs_none.json")
}

func TestDecodeQueryAppLogs(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		name string
		args []any
		want logs.Query
		err  string
	}{
		{"defaults", []any{map[string]any{"containerName": "prod_42_app"}}, logs.Query{Timestamps: true}, ""},
		{"everything", []any{map[string]any{"containerName": "prod_42_app", "tail": float64(10), "offset": uint64(5),
			"since": "2024-05-01T09:00:00Z", "until": "1714557600", "timestamps": false}},
			logs.Query{Tail: 10, Offset: 5, Since: at("2024-05-01T09:00:00Z"), Until: at("2024-05-01T10:00:00Z")}, ""},
		{"lenient tail", []any{map[string]any{"containerName": "prod_42_app", "tail": "7"}}, logs.Query{Tail: 7, Timestamps: true}, ""},
		{"a duration ago", []any{map[string]any{"containerName": "prod_42_app", "since": "30m", "until": "-5s"}},
			logs.Query{Since: testNow.Add(-30 * time.Minute), Until: testNow.Add(-5 * time.Second), Timestamps: true}, ""},
		{"huge tail", []any{map[string]any{"containerName": "prod_42_app", "tail": float64(1e18)}}, logs.Query{Tail: 1<<31 - 1, Timestamps: true}, ""},
		{"no args", nil, logs.Query{}, "arguments are missing"},
		{"not a dict", []any{"prod_42_app"}, logs.Query{}, "first param should be a dict"},
		{"name not a string", []any{map[string]any{"containerName": 42}}, logs.Query{}, "invalid value for containerName"},
		{"name missing", []any{map[string]any{}}, logs.Query{}, "container name is empty"},
		{"name empty", []any{map[string]any{"containerName": ""}}, logs.Query{}, "container name is empty"},
		{"negative tail", []any{map[string]any{"containerName": "x", "tail": float64(-1)}}, logs.Query{}, "the tail param should be a non-negative whole number"},
		{"fraction tail", []any{map[string]any{"containerName": "x", "tail": 1.5}}, logs.Query{}, "the tail param should be a non-negative whole number"},
		{"bad offset", []any{map[string]any{"containerName": "x", "offset": "many"}}, logs.Query{}, "the offset param should be a non-negative whole number"},
		{"since not a string", []any{map[string]any{"containerName": "x", "since": float64(1700000000)}}, logs.Query{}, "the since param should be a string"},
		{"bad since", []any{map[string]any{"containerName": "x", "since": "x"}}, logs.Query{},
			`invalid since: "x" is not an RFC3339 time, a Unix timestamp, or a duration`},
		{"bad until", []any{map[string]any{"containerName": "x", "until": "tomorrow"}}, logs.Query{},
			`invalid until: "tomorrow" is not an RFC3339 time, a Unix timestamp, or a duration`},
		{"timestamps not a bool", []any{map[string]any{"containerName": "x", "timestamps": "true"}}, logs.Query{}, "the timestamps param should be a boolean"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeQueryAppLogs(&wamp.Call{Args: tc.args}, testNow)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err || !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Fatalf("got %+v, %v; want invalid argument %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got.name != "prod_42_app" || !reflect.DeepEqual(got.q, tc.want) {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

// Only logs of managed apps can be named, with valid names; without a
// relay the app log procedures are unavailable.
func TestAppLogsRefused(t *testing.T) {
	f := &fakeAppLogs{}
	_, reg := newTest(t, Deps{Logs: LogDeps{Relay: f, Managed: managedOnly("prod_42_app")}})
	r := reg()
	for _, proc := range []string{ProcGetAppLogHistory, ProcQueryAppLogs} {
		for _, name := range []string{"prod_43_app", "portainer", "prod_42_App", "prod_42_app.x", "../prod_42_app"} {
			_, err := r.call(t, proc, []any{map[string]any{"containerName": name}}, nil)
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("%s %q: %v, want invalid argument", proc, name, err)
			}
		}
	}
	if len(f.names) != 0 {
		t.Fatalf("the relay was asked about %q", f.names)
	}
	for _, c := range []struct {
		args []any
		text string
	}{
		{nil, "arguments are missing"},
		{[]any{"x"}, "first param should be a dict"},
		{[]any{map[string]any{"containerName": 1}}, "invalid value for containerName"},
	} {
		if _, err := r.call(t, ProcGetAppLogHistory, c.args, nil); err == nil || err.Error() != c.text {
			t.Fatalf("get_app_log_history %v: %v, want %q", c.args, err, c.text)
		}
	}

	// No Managed: nothing can be named (deny by default).
	_, reg = newTest(t, Deps{Logs: LogDeps{Relay: f}})
	if _, err := reg().call(t, ProcQueryAppLogs, []any{map[string]any{"containerName": "prod_42_app"}}, nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("without Managed: %v", err)
	}
	// No relay, no log file: not registered.
	_, reg = newTest(t, Deps{Logs: LogDeps{Managed: managedOnly("prod_42_app")}})
	for _, p := range []string{ProcGetAppLogHistory, ProcQueryAppLogs, ProcQueryDeviceLogs} {
		if _, ok := reg().procs[p]; ok {
			t.Fatalf("%s registered without what it serves", p)
		}
	}
}

func TestQueryDeviceLogs(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "reagent.log")
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("reagent-2024-05-01T08-30-00.000.log", `{"level":"info","time":"2024-05-01T08:00:00Z","message":"starting"}`+"\n")
	write("reagent.log", `{"level":"debug","time":"2024-05-01T08:30:00Z","message":"detail"}`+"\n"+
		`{"level":"error","time":"2024-05-01T09:00:00Z","message":"boom","error":"disk full"}`+"\n")

	h, reg := newTest(t, Deps{Flags: &config.Flags{LogFile: file}})
	h.now = func() time.Time { return testNow }
	res, err := reg().call(t, ProcQueryDeviceLogs, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	// device_time is the real clock of the query; the rest is the fixture.
	m := wire(t, res.Args).([]any)[0].(map[string]any)
	if _, err := time.Parse(time.RFC3339, m["device_time"].(string)); err != nil {
		t.Fatalf("device_time %v", m["device_time"])
	}
	m["device_time"] = "2024-05-01T10:00:05Z"
	if want := normalize(t, loadFixture(t, "query_device_logs.json").Args); !reflect.DeepEqual([]any{m}, want) {
		t.Fatalf("got  %s\nwant %s", mustJSON([]any{m}), mustJSON(want))
	}

	// Arguments: a level, a window, a tail; LogDeps.AgentLogFile wins.
	_, reg = newTest(t, Deps{Flags: &config.Flags{LogFile: "/nonexistent"}, Logs: LogDeps{AgentLogFile: file}})
	res, err = reg().call(t, ProcQueryDeviceLogs, []any{map[string]any{"level": "debug", "tail": 2, "since": "2024-05-01T08:00:00Z"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := res.Args[0].(DeviceLogsResult)
	want := []string{"2024-05-01T08:30:00Z DEBUG detail", "2024-05-01T09:00:00Z ERROR boom: disk full"}
	if !reflect.DeepEqual(got.Lines, want) || got.Returned != 2 {
		t.Fatalf("got %+v", got)
	}

	for _, c := range []struct {
		deps Deps
		args []any
		text string
	}{
		{Deps{Flags: &config.Flags{}}, nil, "no agent log path configured"},
		{Deps{Flags: &config.Flags{LogFile: file}}, []any{"x"}, "first param should be a dict"},
		{Deps{Flags: &config.Flags{LogFile: file}}, []any{map[string]any{"level": 3}}, "the level param should be a string"},
		{Deps{Flags: &config.Flags{LogFile: file}}, []any{map[string]any{"tail": -3}}, "the tail param should be a non-negative whole number"},
		{Deps{Flags: &config.Flags{LogFile: file}}, []any{map[string]any{"since": "later"}},
			`invalid since: "later" is not an RFC3339 time, a Unix timestamp, or a duration`},
	} {
		_, reg := newTest(t, c.deps)
		if _, err := reg().call(t, ProcQueryDeviceLogs, c.args, nil); err == nil || err.Error() != c.text {
			t.Fatalf("%v: %v, want %q", c.args, err, c.text)
		}
	}
}

func TestLogWireStructsRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		fixture string
		into    func() any
	}{
		{"query_app_logs.json", func() any { return new(AppLogsResult) }},
		{"query_app_logs_none.json", func() any { return new(AppLogsResult) }},
		{"query_device_logs.json", func() any { return new(DeviceLogsResult) }},
		{"get_app_log_history.json", func() any { return new([]string) }},
	} {
		t.Run(tc.fixture, func(t *testing.T) {
			want := loadFixture(t, tc.fixture).Args[0]
			v := tc.into()
			dec := json.NewDecoder(strings.NewReader(mustJSON(want)))
			dec.DisallowUnknownFields()
			if err := dec.Decode(v); err != nil {
				t.Fatal(err)
			}
			if got, w := wire(t, reflect.ValueOf(v).Elem().Interface()), normalize(t, want); !reflect.DeepEqual(got, w) {
				t.Fatalf("round trip of %T:\n got  %s\n want %s", v, mustJSON(got), mustJSON(w))
			}
		})
	}
}

// FuzzDecodeQueryAppLogs: any first argument decodes or is refused as
// invalid, never panics; what decodes stays within the limits.
func FuzzDecodeQueryAppLogs(f *testing.F) {
	for _, s := range []string{`null`, `"x"`, `{}`, `{"containerName":"prod_1_a"}`,
		`{"containerName":"prod_1_a","tail":5000,"offset":1,"since":"30m","until":"1700000000.5","timestamps":false}`,
		`{"containerName":"prod_1_a","tail":-1}`, `{"containerName":"prod_1_a","tail":1e300}`, `{"containerName":"prod_1_a","since":5}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var v any
		if err := (&serialize.JSONSerializer{}).DeserializeDataItem(data, &v); err != nil {
			return
		}
		q, err := decodeQueryAppLogs(&wamp.Call{Args: []any{v}}, testNow)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("error of the wrong class: %v", err)
			}
			return
		}
		if q.name == "" || q.q.Tail < 0 || q.q.Offset < 0 {
			t.Fatalf("accepted %+v", q)
		}
	})
}

// FuzzDecodeQueryDeviceLogs: the optional dict decodes or is refused as
// invalid, never panics.
func FuzzDecodeQueryDeviceLogs(f *testing.F) {
	for _, s := range []string{`[]`, `[null]`, `["x"]`, `[{}]`, `[{"tail":3,"level":"warn","since":"1h"}]`, `[{"level":1}]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var v []any
		if err := (&serialize.JSONSerializer{}).DeserializeDataItem(data, &v); err != nil {
			return
		}
		q, err := decodeQueryDeviceLogs(&wamp.Call{Args: v}, testNow)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("error of the wrong class: %v", err)
			}
			return
		}
		if q.Tail < 0 {
			t.Fatalf("accepted %+v", q)
		}
	})
}
