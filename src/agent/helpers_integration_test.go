package agent

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
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

// testAgent is an agent running in-process against a devcloud.
type testAgent struct {
	flock   *config.Flock
	path    string // the .flock
	dir     string
	logFile string
	sess    *wamp.Session
	stop    func() error // cancels Run and waits for it (bounded)
}

func startCloud(t *testing.T) *devcloud.Cloud {
	t.Helper()
	return devcloud.StartTest(t, devcloud.Options{Log: zerolog.Nop()})
}

// startAgent creates a device in cloud and runs agent.Run for it until the
// test ends. register runs on the session before it starts.
func startAgent(t *testing.T, cloud *devcloud.Cloud, register func(*wamp.Session), extraFlags ...string) *testAgent {
	t.Helper()
	return startAgentWith(t, cloud, nil, register, extraFlags...)
}

// startAgentWith is startAgent with a setup step between creating the
// device in the cloud and starting the agent.
func startAgentWith(t *testing.T, cloud *devcloud.Cloud, setup func(*config.Flock), register func(*wamp.Session), extraFlags ...string) *testAgent {
	t.Helper()
	return startAgentOpts(t, cloud, agentTestOptions{setup: setup, register: register, flags: extraFlags})
}

// agentTestOptions shape an in-process test agent.
type agentTestOptions struct {
	setup    func(*config.Flock) // between creating the device and starting the agent
	register func(*wamp.Session) // on the session before it runs
	apps     func(*apps.Options) // the reconciler's knobs
	flags    []string            // extra command-line flags
	dir      string              // "" → a new t.TempDir()
	flock    *config.Flock       // with dir: an existing device (agent restart)
	flockAt  string              // its .flock path
}

// startAgentOpts runs agent.Run for a device of cloud until the test ends.
func startAgentOpts(t *testing.T, cloud *devcloud.Cloud, o agentTestOptions) *testAgent {
	t.Helper()
	dir, fl, path := o.dir, o.flock, o.flockAt
	if dir == "" {
		dir = t.TempDir()
	}
	if fl == nil {
		var err error
		if fl, path, err = cloud.NewDevice(dir); err != nil {
			t.Fatal(err)
		}
	}
	if o.setup != nil {
		o.setup(fl)
	}
	register, extraFlags := o.register, o.flags
	a := &testAgent{flock: fl, path: path, dir: dir, logFile: filepath.Join(dir, "reagent.log")}
	args := append([]string{"-config", path, "-agentDir", filepath.Join(dir, "agent"), "-logFile", a.logFile,
		"-update=false", "-env", "local"}, extraFlags...)
	flags, err := config.ParseFlags(args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	built := make(chan struct{})
	go func() {
		done <- Run(ctx, Options{Flags: flags, Flock: fl, Stdout: io.Discard, runner: &noRunner{}, appsOptions: o.apps,
			withSession: func(s *wamp.Session) {
				a.sess = s
				if register != nil {
					register(s)
				}
				close(built)
			}})
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

func callOK(t *testing.T, ctx context.Context, cloud *devcloud.Cloud, authid, serial, proc string, args nx.List, kwargs nx.Dict) *nx.Result {
	t.Helper()
	res, err := cloud.CallDevice(ctx, authid, serial, proc, args, kwargs)
	if err != nil {
		t.Fatalf("%s as %s: %v", proc, authid, err)
	}
	return res
}

// noRunner stands in for reboot, poweroff and systemctl: in-process agents
// must never act on the test machine.
type noRunner struct {
	mu   sync.Mutex
	runs []string
}

func (r *noRunner) Run(_ context.Context, name string, args ...string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.runs = append(r.runs, strings.Join(append([]string{name}, args...), " "))
	return nil
}

func readFileErr(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}
