package agent

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gammazero/nexus/v3/client"
	nx "github.com/gammazero/nexus/v3/wamp"
	"github.com/rs/zerolog"

	"reagent/src/apps"
	"reagent/src/config"
	"reagent/src/devcloud"
	"reagent/src/wamp"
)

// testLabel marks what a test makes on the shared engine, with a value of
// its own; a build's intermediate containers and images inherit it from
// the base image.
const testLabel = "io.ironflock.test"

// testAgent is an agent running in-process against a devcloud.
type testAgent struct {
	flock   *config.Flock
	path    string // the .flock
	dir     string
	logFile string
	sess    *wamp.Session
	stop    func() error // cancels Run and waits for it (bounded)
	// label is the value of the pprof label agentLabel that every
	// goroutine Run started carries (see agentGoroutines).
	label string
}

func startCloud(t *testing.T) *devcloud.Cloud {
	t.Helper()
	return devcloud.StartTest(t, devcloud.Options{Log: zerolog.Nop()})
}

// agentOptions shape an in-process test agent; the zero value is a plain
// agent for a new device.
type agentOptions struct {
	setup    func(*config.Flock) // between creating the device and starting the agent
	register func(*wamp.Session) // on the session before it runs
	apps     func(*apps.Options) // the reconciler's knobs
	runner   *recRunner          // takes the power commands; nil → one nobody reads
}

// startAgent creates a device in cloud and runs agent.Run for it until the
// test ends.
func startAgent(t *testing.T, cloud *devcloud.Cloud, o agentOptions) *testAgent {
	t.Helper()
	dir := t.TempDir()
	fl, path, err := cloud.NewDevice(dir)
	if err != nil {
		t.Fatal(err)
	}
	if o.setup != nil {
		o.setup(fl)
	}
	runner := o.runner
	if runner == nil {
		runner = &recRunner{}
	}
	a := &testAgent{flock: fl, path: path, dir: dir, logFile: filepath.Join(dir, "reagent.log"), label: dir}
	flags, err := config.ParseFlags([]string{"-config", path, "-agentDir", filepath.Join(dir, "agent"),
		"-logFile", a.logFile, "-update=false", "-env", "local"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	built := make(chan struct{})
	go func() {
		// Every goroutine Run starts, and every one those start, inherits
		// the label: the leak check finds what is left of this agent.
		pprof.Do(ctx, pprof.Labels(agentLabel, a.label), func(ctx context.Context) {
			done <- Run(ctx, Options{Flags: flags, Flock: fl, Stdout: io.Discard, runner: runner, appsOptions: o.apps,
				withSession: func(s *wamp.Session) {
					a.sess = s
					if o.register != nil {
						o.register(s)
					}
					close(built)
				}})
		})
	}()
	select { // a.sess is set from here on
	case <-built:
	case err := <-done:
		cancel()
		t.Fatalf("agent.Run: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("the agent did not build its session")
	}
	var once sync.Once
	var stopErr error
	a.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case stopErr = <-done:
			case <-time.After(ShutdownTimeout + 5*time.Second):
				stopErr = errors.New("agent.Run did not return")
			}
		})
		return stopErr
	}
	t.Cleanup(func() {
		if err := a.stop(); err != nil {
			t.Errorf("agent: %v", err)
		}
		if t.Failed() {
			dumpLog(t, a.logFile)
		}
	})
	return a
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// dumpLog shows the agent's log of a failed test.
func dumpLog(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > 80 {
		lines = lines[len(lines)-80:]
	}
	t.Logf("agent log %s (last %d lines):\n%s", path, len(lines), strings.Join(lines, "\n"))
}

func deadline(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// await polls cond until it holds or ctx ends.
func await(ctx context.Context, cond func() bool) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// rpcErr returns the ERROR URI and text of a failed device call.
func rpcErr(t *testing.T, err error) (uri, text string) {
	t.Helper()
	var rpc client.RPCError
	if !errors.As(err, &rpc) {
		t.Fatalf("want a WAMP ERROR, got %v", err)
	}
	if len(rpc.Err.Arguments) != 1 {
		t.Fatalf("error args = %v, want [{error: text}]", rpc.Err.Arguments)
	}
	d, ok := rpc.Err.Arguments[0].(map[string]any)
	if !ok {
		t.Fatalf("error args = %#v, want [{error: text}]", rpc.Err.Arguments)
	}
	text, _ = d["error"].(string)
	if text == "" || len(rpc.Err.ArgumentsKw) != 0 {
		t.Fatalf("error = %#v %#v, want [{error: text}] and no kwargs", rpc.Err.Arguments, rpc.Err.ArgumentsKw)
	}
	return string(rpc.Err.Error), text
}

// malformedCall is bad input for a device procedure.
type malformedCall struct {
	name   string
	args   nx.List
	kwargs nx.Dict
}

// malformedCalls are the bad inputs every procedure meets — no arguments,
// null, a string where a dict belongs, a string of 5 MB (big) — and the
// test's own wrongly typed fields.
func malformedCalls(big string, specific ...malformedCall) []malformedCall {
	return append([]malformedCall{
		{"no args", nil, nil},
		{"null", nx.List{nil}, nil},
		{"string", nx.List{"x"}, nil},
		{"5 MB string", nx.List{big}, nil},
	}, specific...)
}

// callMalformed calls each of procs with each input as system. A procedure
// may answer (most ignore what they do not use); one that fails must do so
// in the reference's error shape with invalid_argument, or canceled for a
// recovered panic.
func callMalformed(t *testing.T, ctx context.Context, cloud *devcloud.Cloud, serial string, procs []string, inputs []malformedCall) {
	t.Helper()
	for _, proc := range procs {
		for _, in := range inputs {
			t.Run(proc+"/"+in.name, func(t *testing.T) {
				_, err := cloud.CallDevice(ctx, "system", serial, proc, in.args, in.kwargs)
				if err == nil {
					return
				}
				if uri, _ := rpcErr(t, err); uri != "wamp.error.invalid_argument" && uri != "wamp.error.canceled" {
					t.Fatalf("uri = %s", uri)
				}
			})
		}
	}
}

func callOK(t *testing.T, ctx context.Context, cloud *devcloud.Cloud, authid, serial, proc string, args nx.List, kwargs nx.Dict) *nx.Result {
	t.Helper()
	res, err := cloud.CallDevice(ctx, authid, serial, proc, args, kwargs)
	if err != nil {
		t.Fatalf("%s as %s: %v", proc, authid, err)
	}
	return res
}

// recRunner stands in for reboot, poweroff and systemctl: in-process
// agents must never act on the test machine. It records the commands.
type recRunner struct {
	mu   sync.Mutex
	runs []string
}

func (r *recRunner) Run(_ context.Context, name string, args ...string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.runs = append(r.runs, strings.Join(append([]string{name}, args...), " "))
	return nil
}

// get is the commands run so far.
func (r *recRunner) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.runs)
}

func readFileErr(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}
