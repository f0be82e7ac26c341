package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"testing"
	"time"

	"reagent/src/backend"
	"reagent/src/devcloud"
)

// agentLabel is the pprof label startAgent runs agent.Run under.
const agentLabel = "reagent-test-agent"

// parkedForever are goroutines of libraries that have no way to stop them
// and that do nothing once the agent stopped writing: lumberjack starts its
// mill goroutine on the first write and never ends it (it waits on a
// channel only Write and rotation send on).
var parkedForever = []string{"lumberjack.v2.(*Logger).millRun"}

// agentGoroutines returns the goroutine stacks (pprof debug=1 groups)
// carrying the label value of one test agent, except parkedForever.
func agentGoroutines(label string) []string {
	var buf bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
	want := fmt.Sprintf("%q:%q", agentLabel, label)
	var out []string
	for _, g := range strings.Split(buf.String(), "\n\n") {
		if !strings.Contains(g, "# labels: ") || !strings.Contains(g, want) {
			continue
		}
		parked := false
		for _, p := range parkedForever {
			// Symbol names escape the dots of a module path's last element.
			parked = parked || strings.Contains(strings.ReplaceAll(g, "%2e", "."), p)
		}
		if !parked {
			out = append(out, g)
		}
	}
	return out
}

// requireNoAgentGoroutines fails when goroutines of the agent are still
// there once Run returned. A goroutine that has called wg.Done may still be
// on its way out, so the check gives them a moment (a deadline, not a
// measurement).
func requireNoAgentGoroutines(t *testing.T, label string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var left []string
	_ = await(ctx, func() bool {
		left = agentGoroutines(label)
		return len(left) == 0
	})
	if len(left) > 0 {
		t.Fatalf("%d goroutine groups of the agent still run after agent.Run returned:\n%s",
			len(left), strings.Join(left, "\n\n"))
	}
}

// stopWithin cancels the agent and requires agent.Run to return within d.
func (a *testAgent) stopWithin(t *testing.T, d time.Duration) {
	t.Helper()
	res := make(chan error, 1)
	go func() { res <- a.stop() }()
	select {
	case err := <-res:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(d):
		t.Fatalf("agent.Run did not return within %v", d)
	}
}

// An agent stopped while one of its calls to the cloud hangs ends that
// call: agent.Run returns within ShutdownTimeout, nothing it started is
// left running, and nothing writes into its directories afterwards (they
// are deleted right away, as the tests' temp dirs are).
func TestShutdownWithCallInFlight(t *testing.T) {
	cases := []struct {
		name  string
		proc  string // the backend procedure that hangs
		user  bool   // a Studio user calls a device procedure, whose privilege check hangs
		await string // the device status to reach first; "" = none
	}{
		{name: "status in the on-connect sequence", proc: backend.ProcUpdateDeviceStatus},
		{name: "requested app states (on-connect hook)", proc: backend.ProcGetRequestedAppStates},
		{name: "metadata", proc: backend.ProcReadDeviceMetadata},
		{name: "privilege check of a Studio call", proc: backend.ProcCheckPrivilege, user: true, await: "CONNECTED"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cloud := startCloud(t)
			const user = "4711"
			cloud.AddUser(devcloud.User{AuthID: user, Secret: "user-secret", Privileges: []string{"READ"}})
			// A hang far longer than any timeout of the agent.
			cloud.SetFault(tc.proc, devcloud.Fault{Delay: 10 * time.Minute})
			a := startAgent(t, cloud, agentOptions{})
			ctx := deadline(t, 30*time.Second)
			if tc.await != "" {
				if err := cloud.AwaitDeviceStatus(ctx, a.flock.SerialNumber, tc.await); err != nil {
					t.Fatal(err)
				}
			}
			if tc.user {
				callCtx, cancelCall := context.WithCancel(ctx)
				called := make(chan struct{})
				go func() {
					defer close(called)
					_, _ = cloud.CallDevice(callCtx, user, a.flock.SerialNumber, "get_agent_metadata", nil, nil)
				}()
				t.Cleanup(func() { cancelCall(); <-called })
			}
			if err := await(ctx, func() bool { return len(cloud.Calls(tc.proc)) > 0 }); err != nil {
				t.Fatalf("%s never called: %v", tc.proc, err)
			}

			a.stopWithin(t, ShutdownTimeout)
			if err := os.RemoveAll(a.dir); err != nil {
				t.Fatal(err)
			}
			requireNoAgentGoroutines(t, a.label)
			if _, err := os.Stat(a.dir); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("%s exists again after the agent stopped: %v", a.dir, err)
			}
		})
	}
}

// SIGTERM while a call to the cloud hangs: the process exits 0 within 5 s.
func TestBinarySigtermWithCallInFlight(t *testing.T) {
	cloud := startCloud(t)
	cloud.SetFault(backend.ProcUpdateDeviceStatus, devcloud.Fault{Delay: 10 * time.Minute})
	dir := t.TempDir()
	_, path, err := cloud.NewDevice(dir)
	if err != nil {
		t.Fatal(err)
	}
	agentDir := filepath.Join(dir, "agent")
	p := startBinary(t, path, agentDir)
	ctx := deadline(t, 30*time.Second)
	if err := await(ctx, func() bool { return len(cloud.Calls(backend.ProcUpdateDeviceStatus)) > 0 }); err != nil {
		t.Fatalf("update_device_status never called: %v", err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t, 5*time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d; stderr: %s", code, p.stderrText())
	}
	if lines := logLines(t, filepath.Join(agentDir, "reagent.log"), "still running"); len(lines) > 0 {
		t.Fatalf("the agent left parts running: %v", lines)
	}
}

// logLines are the lines of the agent log at path that contain substr.
func logLines(t *testing.T, path, substr string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), substr) {
			out = append(out, sc.Text())
		}
	}
	return out
}
