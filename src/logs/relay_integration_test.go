package logs_test

// Integration tests of the relay with real parts: the Docker engine of
// this machine (busybox containers that print numbered lines, TTY and
// not), a devcloud router with a Studio subscriber, SQLite files.

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gammazero/nexus/v3/client"

	"reagent/src/logs"
)

var ttyCases = []struct {
	name string
	tty  bool
}{{"non-tty", false}, {"tty", true}}

// Lines of a running app reach a subscriber within a second of being
// printed; with no subscriber nothing is published at all.
func TestRelayLiveLines(t *testing.T) {
	for _, tc := range ttyCases {
		t.Run(tc.name, func(t *testing.T) {
			d := newDevice(t, deviceOptions{})
			key := randKey(t)
			name := fmt.Sprintf("prod_%d_live", key)
			topic := logs.Topic(d.serial, name)
			id := d.runContainer(name, `i=0; while :; do i=$((i+1)); echo "line $i"; sleep 0.05; done`, tc.tty)
			if err := d.currentRelay().PostStart(d.ctx(10*time.Second), name, id); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 30*time.Second, "20 lines stored", func() bool { return len(d.stored(name)) >= 20 })
			if n := d.cloud.PublishCount(topic); n != 0 {
				t.Fatalf("%d publications on %s without a subscriber", n, topic)
			}

			sub := d.subscribe(topic)
			var got []string
			var at []time.Time
			waitFor(t, 30*time.Second, "40 lines received", func() bool {
				got, at = sub.lines()
				return len(got) >= 40
			})
			// Every line received once, in order, numbered without gaps.
			first, err := lineNumber(got[0])
			if err != nil {
				t.Fatal(err)
			}
			for i, l := range got {
				if n, err := lineNumber(l); err != nil || n != first+i {
					t.Fatalf("line %d is %q, want line %d", i, l, first+i)
				}
			}
			// Latency: printed (the engine's timestamp, kept in the store)
			// to received.
			printed := map[string]time.Time{}
			for _, l := range d.stored(name) {
				printed[l.Text] = l.Time
			}
			var lat []time.Duration
			for i, l := range got {
				if p, ok := printed[l]; ok {
					lat = append(lat, at[i].Sub(p))
				}
			}
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			if len(lat) < 30 {
				t.Fatalf("only %d received lines found in the store", len(lat))
			}
			p50, p95, worst := lat[len(lat)/2], lat[len(lat)*95/100], lat[len(lat)-1]
			t.Logf("print → subscriber latency over %d lines: p50 %v, p95 %v, max %v", len(lat), p50, p95, worst)
			if p95 > time.Second {
				t.Fatalf("p95 latency %v, want within 1s", p95)
			}
			if n := d.cloud.PublishCount(topic); n == 0 || n > len(got) {
				t.Fatalf("%d publications for %d lines", n, len(got))
			}
		})
	}
}

func lineNumber(l string) (int, error) {
	s, ok := strings.CutPrefix(l, "line ")
	if !ok {
		return 0, errors.New("not a numbered line: " + l)
	}
	return strconv.Atoi(s)
}

// A new relay over the same database (an agent restart) resumes the
// container's log after the last stored line: every line is stored once,
// in order, on both streams.
func TestRelayResumeAfterRestart(t *testing.T) {
	for _, tc := range ttyCases {
		t.Run(tc.name, func(t *testing.T) {
			d := newDevice(t, deviceOptions{})
			key := randKey(t)
			name := fmt.Sprintf("prod_%d_resume", key)
			const n = 300
			script := fmt.Sprintf(`sleep 0.5; i=0; while [ $i -lt %d ]; do i=$((i+1)); echo "line $i"; [ $((i %% 10)) = 0 ] && echo "err $i" >&2; sleep 0.01; done`, n)
			id := d.runContainer(name, script, tc.tty)
			if err := d.currentRelay().PostStart(d.ctx(10*time.Second), name, id); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 30*time.Second, "some lines stored", func() bool { return len(d.stored(name)) >= 50 })
			d.restart(deviceOptions{})
			if err := d.currentRelay().PostStart(d.ctx(10*time.Second), name, id); err != nil {
				t.Fatal(err)
			}
			waitFor(t, time.Minute, "every line stored", func() bool { return len(d.stored(name)) >= n+n/10 })

			lines := d.stored(name)
			var outs, errs []string
			for i, l := range lines {
				if i > 0 && l.Seq != lines[i-1].Seq+1 {
					t.Fatalf("seq %d after %d", l.Seq, lines[i-1].Seq)
				}
				switch {
				case strings.HasPrefix(l.Text, "line "):
					outs = append(outs, l.Text)
				case strings.HasPrefix(l.Text, "err "):
					errs = append(errs, l.Text)
					if want := map[bool]string{false: "stderr", true: "stdout"}[tc.tty]; l.Stream != want {
						t.Fatalf("%q stored as %s, want %s", l.Text, l.Stream, want)
					}
				default:
					t.Fatalf("unexpected line %q", l.Text)
				}
			}
			wantOut, wantErr := make([]string, n), []string{}
			for i := range n {
				wantOut[i] = fmt.Sprintf("line %d", i+1)
				if (i+1)%10 == 0 {
					wantErr = append(wantErr, fmt.Sprintf("err %d", i+1))
				}
			}
			if !slices.Equal(outs, wantOut) || !slices.Equal(errs, wantErr) {
				t.Fatalf("stored %d stdout lines, %d stderr lines; a gap or a duplicate:\n%q\n%q", len(outs), len(errs), outs, errs)
			}
		})
	}
}

// The log procedures over the router: windows, limits, the byte cap, and
// names that are no managed app refused.
func TestRelayQueryProcedures(t *testing.T) {
	d := newDevice(t, deviceOptions{})
	key := randKey(t)
	name := fmt.Sprintf("prod_%d_query", key)
	d.manage(key, "Query")
	// 60 lines of 100 KiB, then 300 numbered ones.
	script := `awk 'BEGIN { s = "x"; while (length(s) < 102400) s = s s; s = substr(s, 1, 102400); for (i = 1; i <= 60; i++) print "big" i " " s }'; ` +
		`i=0; while [ $i -lt 300 ]; do i=$((i+1)); echo "line $i"; done; sleep 3600`
	id := d.runContainer(name, script, false)
	if err := d.currentRelay().PostStart(d.ctx(10*time.Second), name, id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "360 lines stored", func() bool { return len(d.stored(name)) == 360 })
	all := d.stored(name)
	ctx := d.ctx(2 * time.Minute)
	query := func(args map[string]any) map[string]any {
		t.Helper()
		args["containerName"] = name
		res, err := d.call(ctx, "query_app_logs", args)
		if err != nil {
			t.Fatalf("query_app_logs %v: %v", args, err)
		}
		m, ok := res.Arguments[0].(map[string]any)
		if len(res.Arguments) != 1 || !ok {
			t.Fatalf("answer %#v", res.Arguments)
		}
		return m
	}
	texts := func(m map[string]any) []string {
		var out []string
		for _, l := range m["lines"].([]any) {
			out = append(out, l.(string))
		}
		return out
	}
	at := func(i int) string { return all[i].Time.Format(time.RFC3339Nano) }
	unix := func(i int) string {
		return fmt.Sprintf("%d.%09d", all[i].Time.Unix(), all[i].Time.Nanosecond())
	}
	tests := []struct {
		name string
		args map[string]any
		want []string
	}{
		{"tail", map[string]any{"tail": 3, "timestamps": false}, []string{"line 298", "line 299", "line 300"}},
		{"tail and offset", map[string]any{"tail": 2, "offset": 5, "timestamps": false}, []string{"line 294", "line 295"}},
		{"lenient numbers", map[string]any{"tail": "2", "timestamps": false}, []string{"line 299", "line 300"}},
		{"since RFC3339", map[string]any{"since": at(357), "timestamps": false}, []string{"line 298", "line 299", "line 300"}},
		{"since Unix seconds, until RFC3339", map[string]any{"since": unix(100), "until": at(102), "timestamps": false}, []string{"line 41", "line 42"}},
		{"since as a duration", map[string]any{"since": "1h", "tail": 1, "timestamps": false}, []string{"line 300"}},
		{"until long ago", map[string]any{"until": "1000h", "timestamps": false}, nil},
		{"timestamps by default", map[string]any{"tail": 1}, []string{all[359].Time.UTC().Format("2006-01-02T15:04:05.000000000Z07:00") + " line 300"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := query(tc.args)
			if got := texts(m); !slices.Equal(got, tc.want) {
				t.Fatalf("lines %q, want %q", got, tc.want)
			}
			if m["source"] != "history" || m["truncated"] != false || fmt.Sprint(m["returned"]) != strconv.Itoa(len(tc.want)) ||
				m["oldest_available"] != all[0].Time.UTC().Format(time.RFC3339) || m["device_time"] == "" {
				t.Fatalf("answer %v", m)
			}
		})
	}

	t.Run("4 MiB cap", func(t *testing.T) {
		m := query(map[string]any{"tail": 5000})
		got := texts(m)
		size := 0
		for _, l := range got {
			size += len(l) + 1
		}
		if m["truncated"] != true || size > logs.MaxQueryBytes || !strings.HasSuffix(got[len(got)-1], " line 300") ||
			fmt.Sprint(m["returned"]) != strconv.Itoa(len(got)) || len(got) >= 360 || len(got) < 300+35 {
			t.Fatalf("%d lines, %d bytes, truncated %v", len(got), size, m["truncated"])
		}
		t.Logf("tail 5000: %d lines, %d bytes", len(got), size)
	})

	t.Run("history", func(t *testing.T) {
		res, err := d.call(ctx, "get_app_log_history", map[string]any{"containerName": name})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, l := range res.Arguments[0].([]any) {
			got = append(got, l.(string))
		}
		if len(res.Arguments) != 1 || len(got) != logs.HistoryLines || got[99] != "line 300" || got[0] != "line 201" {
			t.Fatalf("history %d lines: %.60q … %.60q", len(got), first(got), last(got))
		}
	})

	t.Run("refused", func(t *testing.T) {
		d.runContainer(fmt.Sprintf("prod_%d_foreign", key+1), "echo secret; sleep 3600", false)
		for _, c := range []struct {
			proc string
			args any
			text string
		}{
			{"get_app_log_history", map[string]any{"containerName": fmt.Sprintf("prod_%d_foreign", key+1)}, "invalid value for containerName: "},
			{"get_app_log_history", map[string]any{"containerName": "portainer"}, "invalid value for containerName: "},
			{"get_app_log_history", map[string]any{"containerName": 5}, "invalid value for containerName"},
			{"get_app_log_history", "x", "first param should be a dict"},
			{"query_app_logs", map[string]any{"containerName": fmt.Sprintf("prod_%d_foreign", key+1)}, "invalid value for containerName: "},
			{"query_app_logs", map[string]any{"containerName": ""}, "container name is empty"},
			{"query_app_logs", map[string]any{"containerName": name, "since": "soon"}, `invalid since: "soon" is not an RFC3339 time, a Unix timestamp, or a duration`},
			{"query_app_logs", map[string]any{"containerName": name, "until": 5}, "the until param should be a string"},
			{"query_app_logs", map[string]any{"containerName": name, "tail": -1}, "the tail param should be a non-negative whole number"},
			{"query_app_logs", map[string]any{"containerName": name, "timestamps": "yes"}, "the timestamps param should be a boolean"},
		} {
			_, err := d.call(ctx, c.proc, c.args)
			var rpc client.RPCError
			if !errors.As(err, &rpc) || rpc.Err == nil || string(rpc.Err.Error) != "wamp.error.invalid_argument" {
				t.Fatalf("%s %v: %v, want wamp.error.invalid_argument", c.proc, c.args, err)
			}
			m, _ := rpc.Err.Arguments[0].(map[string]any)
			if text, _ := m["error"].(string); !strings.HasPrefix(text, c.text) {
				t.Fatalf("%s %v: error %q, want %q", c.proc, c.args, text, c.text)
			}
		}
	})
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func last(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[len(s)-1]
}
