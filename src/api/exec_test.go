package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gammazero/nexus/v3/transport/serialize"
	"github.com/rs/zerolog"

	"reagent/src/errdefs"
	"reagent/src/system"
	"reagent/src/wamp"
)

func TestDecodeExecuteCmd(t *testing.T) {
	dict := func(kv ...any) []any {
		m := map[string]any{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return []any{m}
	}
	tests := []struct {
		name    string
		args    []any
		want    system.Command
		wantErr string
	}{
		{name: "no args", args: nil, wantErr: "args array should not be empty"},
		{name: "empty list", args: []any{}, wantErr: "args array should not be empty"},
		{name: "null", args: []any{nil}, wantErr: "first param should be a dict"},
		{name: "string", args: []any{"x"}, wantErr: "first param should be a dict"},
		{name: "no cmd", args: dict("blocking", true), wantErr: "cmd param should be a string"},
		{name: "cmd not a string", args: dict("cmd", 5, "blocking", true), wantErr: "cmd param should be a string"},
		{name: "empty cmd", args: dict("cmd", "", "blocking", true), wantErr: "cmd param should not be empty"},
		{name: "huge cmd", args: dict("cmd", strings.Repeat("a", 5<<20), "blocking", true), wantErr: "cmd param is longer than 4096 bytes"},
		{name: "no blocking", args: dict("cmd", "ls"), wantErr: "blocking param should be a boolean"},
		{name: "blocking not a bool", args: dict("cmd", "ls", "blocking", "yes"), wantErr: "blocking param should be a boolean"},
		{name: "args not a list", args: dict("cmd", "ls", "blocking", true, "args", "-l"), wantErr: "args param should be an array of primitive values"},
		{name: "args with a dict", args: dict("cmd", "ls", "blocking", true, "args", []any{map[string]any{}}), wantErr: "args param should be an array of primitive values"},
		{name: "args with null", args: dict("cmd", "ls", "blocking", true, "args", []any{nil}), wantErr: "args param should be an array of primitive values"},
		{name: "negative timeout", args: dict("cmd", "ls", "blocking", true, "timeout", int64(-1)), wantErr: "the timeout param should be an uint64"},
		{name: "fractional timeout", args: dict("cmd", "ls", "blocking", true, "timeout", 1.5), wantErr: "the timeout param should be an uint64"},
		{name: "string timeout", args: dict("cmd", "ls", "blocking", true, "timeout", "100"), wantErr: "the timeout param should be an uint64"},
		{name: "timeout too large", args: dict("cmd", "ls", "blocking", true, "timeout", uint64(1)<<62), wantErr: "the timeout param should be at most 86400000 (ms)"},
		{
			name: "everything",
			args: dict("cmd", "ls", "blocking", false, "timeout", float64(1500),
				"args", []any{uint64(1), 2.5, true, "s p", int64(-3), json.Number("9")}),
			want: system.Command{Name: "ls", Args: []string{"1", "2.5", "true", "s p", "-3", "9"}, Timeout: 1500 * time.Millisecond},
		},
		{name: "null args and timeout", args: dict("cmd", "ls", "blocking", true, "args", nil, "timeout", nil),
			want: system.Command{Name: "ls", Blocking: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeExecuteCmd(&wamp.Call{Args: tc.args})
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr || !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Fatalf("err %v, want invalid argument %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v %v, want %+v", got, err, tc.want)
			}
		})
	}
}

func TestExecuteCmdRefusesBadInputWithoutRunning(t *testing.T) {
	h, reg := newTest(t, Deps{})
	ran := false
	h.execute = func(context.Context, system.Command) (system.CommandResult, error) {
		ran = true
		return system.CommandResult{}, nil
	}
	r := reg()
	for _, a := range [][]any{nil, {nil}, {"x"}, {map[string]any{"cmd": 1}}} {
		if _, err := r.call(t, ProcExecuteCmd, a, nil); err == nil {
			t.Errorf("%v accepted", a)
		}
	}
	if ran {
		t.Fatal("a command ran on bad input")
	}
}

func TestExecuteCmdBlocking(t *testing.T) {
	var logs bytes.Buffer
	_, reg := newTest(t, Deps{Log: zerolog.New(&logs)})
	r := reg()
	res, err := r.call(t, ProcExecuteCmd, []any{map[string]any{
		"cmd": "echo", "args": []any{"hello", "world"}, "blocking": true}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	assertWire(t, res, "execute_cmd_blocking.json")
	if !strings.Contains(logs.String(), `"cmd":"echo"`) || strings.Contains(logs.String(), "hello") {
		t.Errorf("audit log must name the command but not its arguments: %s", logs.String())
	}

	_, err = r.call(t, ProcExecuteCmd, []any{map[string]any{
		"cmd": "sh", "args": []any{"-c", "echo bad thing >&2; exit 3"}, "blocking": true}}, nil)
	if err == nil || !strings.Contains(err.Error(), "bad thing") || errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("err %v", err)
	}
}

type published struct {
	topic string
	args  []any
}

func TestExecuteCmdBackground(t *testing.T) {
	events := make(chan published, 16)
	publish := func(topic string, args []any) error {
		events <- published{topic, args}
		return nil
	}
	_, reg := newTest(t, Deps{Publish: publish, ExecOutputDelay: time.Millisecond})
	res, err := reg().call(t, ProcExecuteCmd, []any{map[string]any{
		"cmd": "sh", "args": []any{"-c", "echo out; echo err >&2"}, "blocking": false, "timeout": uint64(60000)}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pid := res.Args[0].(ExecPID).PID
	if pid <= 0 {
		t.Fatalf("pid %d", pid)
	}
	assertSameShape(t, wire(t, res.Args), normalize(t, loadFixture(t, "execute_cmd_background.json").Args))
	var lines []string
	for len(lines) < 2 {
		select {
		case e := <-events:
			if want := fmt.Sprintf("re.mgmt.%s.cmd_output_%d", testSerial, pid); e.topic != want {
				t.Fatalf("topic %q, want %q", e.topic, want)
			}
			assertSameShape(t, wire(t, e.args), normalize(t, loadFixture(t, "cmd_output_event.json").Args))
			lines = append(lines, e.args[0].(string))
		case <-time.After(20 * time.Second):
			t.Fatalf("output lines so far %q", lines)
		}
	}
	sort.Strings(lines)
	if lines[0] != "err" || lines[1] != "out" {
		t.Fatalf("lines %q", lines)
	}
}

func TestExecuteCmdPublishFailureDoesNotStall(t *testing.T) {
	done := make(chan struct{})
	h, reg := newTest(t, Deps{
		Publish:         func(string, []any) error { return errdefs.Unavailable("not connected") },
		ExecOutputDelay: time.Millisecond,
	})
	h.execute = func(ctx context.Context, c system.Command) (system.CommandResult, error) {
		res, err := system.ExecuteCommand(ctx, c)
		go func() { <-res.Done; close(done) }()
		return res, err
	}
	if _, err := reg().call(t, ProcExecuteCmd, []any{map[string]any{
		"cmd": "seq", "args": []any{1, 5000}, "blocking": false}}, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("a command whose output cannot be published never finished")
	}
}

// FuzzDecodeExecuteCmd feeds arbitrary JSON, decoded by the wire codec, as
// the first argument.
func FuzzDecodeExecuteCmd(f *testing.F) {
	for _, s := range []string{`null`, `"x"`, `{}`, `{"cmd":"ls","blocking":true}`,
		`{"cmd":"ls","blocking":false,"args":[1,-2,2.5,true,"x"],"timeout":1000}`,
		`{"cmd":"ls","blocking":true,"timeout":-1}`, `{"cmd":"ls","blocking":true,"timeout":1e300}`,
		`{"cmd":"ls","blocking":true,"args":[[1]]}`, `[1,2]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var v any
		if err := (&serialize.JSONSerializer{}).DeserializeDataItem(data, &v); err != nil {
			return
		}
		c, err := decodeExecuteCmd(&wamp.Call{Args: []any{v}})
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("error of the wrong class: %v", err)
			}
			return
		}
		if c.Name == "" || len(c.Name) > maxCmdLen || c.Timeout < 0 || c.Timeout > system.MaxCommandTimeout {
			t.Fatalf("accepted %+v", c)
		}
	})
}

// FuzzDecodePruneImages: any argument list decodes or is refused as
// invalid, never panics.
func FuzzDecodePruneImages(f *testing.F) {
	for _, s := range []string{`[]`, `[null]`, `["x"]`, `[{}]`, `[{"all":true}]`, `[{"all":"yes"}]`, `[1,{"all":true}]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var v []any
		if err := (&serialize.JSONSerializer{}).DeserializeDataItem(data, &v); err != nil {
			return
		}
		if _, err := decodePruneImages(&wamp.Call{Args: v}); err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Fatalf("error of the wrong class: %v", err)
		}
	})
}
