package system

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// procState is the state letter of pid in /proc ("" when it is gone).
func procState(pid int) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	// "pid (comm) S …": the comm may contain spaces, the state follows ") ".
	s := string(data)
	if i := strings.LastIndex(s, ") "); i >= 0 && i+2 < len(s) {
		return s[i+2 : i+3]
	}
	return "?"
}

// awaitGone waits until pid has left the process table (reaped), or, with
// zombieOK, at least died.
func awaitGone(t *testing.T, pid int, zombieOK bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := procState(pid)
		if st == "" || (zombieOK && st == "Z") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d still in state %q", pid, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func awaitDone(t *testing.T, done <-chan struct{}) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("background command never finished")
	}
}

// collector gathers background output lines.
type collector struct {
	mu    sync.Mutex
	pids  map[int]bool
	lines []string
}

func (c *collector) out(pid int, line string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pids == nil {
		c.pids = map[int]bool{}
	}
	c.pids[pid] = true
	c.lines = append(c.lines, line)
}

func (c *collector) get() ([]string, map[int]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.lines), c.pids
}

func TestBlocking(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		cmd     Command
		want    string
		wantErr []string // substrings of the error
	}{
		{name: "stdout", cmd: Command{Name: "sh", Args: []string{"-c", "echo out; echo err >&2"}}, want: "out\n"},
		{name: "args are not shell-expanded", cmd: Command{Name: "echo", Args: []string{"$HOME", "a b"}}, want: "$HOME a b\n"},
		{
			name:    "non-zero exit carries stderr",
			cmd:     Command{Name: "sh", Args: []string{"-c", "echo partial; echo 'disk on fire' >&2; exit 4"}},
			wantErr: []string{"command failed to run", "exit status 4", "disk on fire"},
		},
		{name: "missing program", cmd: Command{Name: "/nonexistent/prog"}, wantErr: []string{"command failed to run"}},
		{name: "empty name", cmd: Command{}, wantErr: []string{"command failed to run"}},
		{
			name:    "killed after its timeout, children too",
			cmd:     Command{Name: "sh", Args: []string{"-c", "sleep 30 & sleep 30; wait"}, Timeout: 200 * time.Millisecond},
			wantErr: []string{"killed after 200ms"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.cmd.Blocking = true
			res, err := ExecuteCommand(ctx, tc.cmd)
			if tc.wantErr == nil {
				if err != nil || res.Stdout != tc.want || res.Done != nil {
					t.Fatalf("got %+v %v", res, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("want error, got %+v", res)
			}
			for _, s := range tc.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
		})
	}
}

func TestBlockingStdoutIsBounded(t *testing.T) {
	res, err := ExecuteCommand(context.Background(), Command{Name: "sh", Args: []string{"-c", "head -c 5000000 /dev/zero"}, Blocking: true})
	if err != nil || len(res.Stdout) != maxStdout {
		t.Fatalf("len %d err %v", len(res.Stdout), err)
	}
}

func TestBlockingFollowsCallerContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := ExecuteCommand(ctx, Command{Name: "sleep", Args: []string{"30"}, Blocking: true})
		errc <- err
	}()
	cancel()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("cancelled command reported success")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("cancel did not stop the command")
	}
}

func TestBackgroundPublishesStdoutAndStderrAndReaps(t *testing.T) {
	var c collector
	res, err := ExecuteCommand(context.Background(), Command{
		Name:   "sh",
		Args:   []string{"-c", "echo one; echo two >&2; printf 'no newline'; exit 3"},
		Output: c.out, OutputDelay: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.PID <= 0 || res.Done == nil {
		t.Fatalf("result %+v", res)
	}
	awaitDone(t, res.Done)
	lines, pids := c.get()
	slices.Sort(lines)
	if want := []string{"no newline", "one", "two"}; !slices.Equal(lines, want) {
		t.Fatalf("lines %q, want %q", lines, want)
	}
	if len(pids) != 1 || !pids[res.PID] {
		t.Fatalf("output pids %v, want only %d", pids, res.PID)
	}
	// Done means reaped: no zombie left behind.
	if st := procState(res.PID); st != "" {
		t.Fatalf("process %d still in the table, state %q", res.PID, st)
	}
}

func TestBackgroundKilledAfterTimeoutWithItsChildren(t *testing.T) {
	var c collector
	res, err := ExecuteCommand(context.Background(), Command{
		Name:    "sh",
		Args:    []string{"-c", "sleep 30 & echo $!; wait"},
		Timeout: 300 * time.Millisecond,
		Output:  c.out,
	})
	if err != nil {
		t.Fatal(err)
	}
	awaitDone(t, res.Done)
	lines, _ := c.get()
	if len(lines) != 1 {
		t.Fatalf("lines %q", lines)
	}
	child, err := strconv.Atoi(lines[0])
	if err != nil {
		t.Fatal(err)
	}
	if st := procState(res.PID); st != "" {
		t.Fatalf("command %d not reaped, state %q", res.PID, st)
	}
	// The grandchild is not ours to reap (init does), but it must be dead.
	awaitGone(t, child, true)
}

func TestBackgroundIsNotTiedToTheCallersContext(t *testing.T) {
	flag := filepath.Join(t.TempDir(), "go")
	ctx, cancel := context.WithCancel(context.Background())
	var c collector
	res, err := ExecuteCommand(ctx, Command{
		Name:   "sh",
		Args:   []string{"-c", "while [ ! -e " + flag + " ]; do sleep 0.02; done; echo survived"},
		Output: c.out,
	})
	if err != nil {
		t.Fatal(err)
	}
	cancel() // the call was answered; the command goes on
	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	awaitDone(t, res.Done)
	if lines, _ := c.get(); !slices.Equal(lines, []string{"survived"}) {
		t.Fatalf("lines %q", lines)
	}
}

func TestBlockingTimeoutKillsChildren(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	_, err := ExecuteCommand(context.Background(), Command{
		Name: "sh", Args: []string{"-c", "sleep 30 & echo $! > " + pidFile + "; wait"},
		Blocking: true, Timeout: 300 * time.Millisecond,
	})
	if err == nil || !strings.Contains(err.Error(), "killed after") {
		t.Fatalf("err %v", err)
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	child, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	awaitGone(t, child, true)
}

func TestBackgroundLongLinesAreCut(t *testing.T) {
	var c collector
	res, err := ExecuteCommand(context.Background(), Command{
		Name: "sh", Args: []string{"-c", fmt.Sprintf("head -c %d /dev/zero | tr '\\0' a; echo", maxLine*2+10)}, Output: c.out,
	})
	if err != nil {
		t.Fatal(err)
	}
	awaitDone(t, res.Done)
	lines, _ := c.get()
	if len(lines) != 3 || len(lines[0]) != maxLine || len(lines[1]) != maxLine || len(lines[2]) != 10 {
		lens := []int{}
		for _, l := range lines {
			lens = append(lens, len(l))
		}
		t.Fatalf("line lengths %v", lens)
	}
}

func TestBackgroundStartFailure(t *testing.T) {
	if _, err := ExecuteCommand(context.Background(), Command{Name: "/nonexistent/prog"}); err == nil ||
		!strings.Contains(err.Error(), "command failed to run") {
		t.Fatalf("err %v", err)
	}
}

func TestTailBuffer(t *testing.T) {
	b := &tailBuffer{max: 4}
	for _, s := range []string{"ab", "cdef", "g"} {
		_, _ = b.Write([]byte(s))
	}
	if b.String() != "defg" {
		t.Fatalf("%q", b.String())
	}
}
