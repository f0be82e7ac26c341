package system

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

type recordingRunner struct {
	mu    sync.Mutex
	calls [][]string
	err   error
}

func (r *recordingRunner) Run(ctx context.Context, name string, args ...string) error {
	if _, ok := ctx.Deadline(); !ok {
		return errors.New("power command without a deadline")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, append([]string{name}, args...))
	return r.err
}

func (r *recordingRunner) Calls() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

func TestPowerSchedule(t *testing.T) {
	tests := []struct {
		goos      string
		op        PowerOp
		runnerErr error
		wantCmd   []string // nil → no command
		wantExit  bool
	}{
		{"linux", Reboot, nil, []string{"reboot"}, false},
		{"linux", Shutdown, nil, []string{"poweroff"}, false},
		{"linux", RestartAgent, nil, []string{"systemctl", "restart", "reagent"}, false},
		{"linux", RestartAgent, errors.New("no systemd"), []string{"systemctl", "restart", "reagent"}, true},
		{"linux", Reboot, errors.New("denied"), []string{"reboot"}, false},
		{"darwin", Reboot, nil, []string{"reboot"}, false},
		{"darwin", RestartAgent, nil, nil, true},
		{"windows", Reboot, nil, []string{"shutdown", "/r", "/t", "5"}, false},
		{"windows", Shutdown, nil, []string{"shutdown", "/s", "/t", "5"}, false},
		{"windows", RestartAgent, nil, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.goos+"/"+string(tc.op), func(t *testing.T) {
			r := &recordingRunner{err: tc.runnerErr}
			exited := 0
			p, err := NewPower(PowerOptions{Runner: r, Exit: func() { exited++ }, GOOS: tc.goos, Log: zerolog.Nop()})
			if err != nil {
				t.Fatal(err)
			}
			var delay time.Duration
			var action func()
			p.after = func(d time.Duration, f func()) { delay, action = d, f }
			if err := p.Schedule(tc.op); err != nil {
				t.Fatal(err)
			}
			// Nothing happens before the delay: the answer goes out first.
			if delay != PowerDelay || action == nil || len(r.Calls()) != 0 || exited != 0 {
				t.Fatalf("delay %v action %v calls %v exited %d", delay, action != nil, r.Calls(), exited)
			}
			action()
			var want [][]string
			if tc.wantCmd != nil {
				want = [][]string{tc.wantCmd}
			}
			if got := r.Calls(); !reflect.DeepEqual(got, want) {
				t.Errorf("commands %v, want %v", got, want)
			}
			if (exited == 1) != tc.wantExit || exited > 1 {
				t.Errorf("exited %d times, want exit %v", exited, tc.wantExit)
			}
		})
	}
}

func TestPowerRealTimer(t *testing.T) {
	r := &recordingRunner{}
	done := make(chan struct{})
	p, err := NewPower(PowerOptions{Runner: r, Delay: time.Millisecond, GOOS: "windows", Exit: func() { close(done) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Schedule(RestartAgent); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("restart never happened")
	}
}

func TestPowerErrors(t *testing.T) {
	if _, err := NewPower(PowerOptions{}); err == nil {
		t.Fatal("a Power without a Runner must be refused")
	}
	p, _ := NewPower(PowerOptions{Runner: &recordingRunner{}})
	if err := p.Schedule("format_disk"); err == nil {
		t.Fatal("unknown operation accepted")
	}
}

func TestExecRunner(t *testing.T) {
	ctx := context.Background()
	if err := (ExecRunner{}).Run(ctx, "true"); err != nil {
		t.Fatal(err)
	}
	err := (ExecRunner{}).Run(ctx, "sh", "-c", "echo boom >&2; exit 3")
	if err == nil || !strings.Contains(err.Error(), "boom") || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("err %v", err)
	}
}
