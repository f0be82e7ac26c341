package system

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// Runner runs one command to completion. Reboot, shutdown and the agent
// restart go through it so tests can replace it (they must never reboot
// the machine they run on).
type Runner interface {
	Run(ctx context.Context, name string, args ...string) error
}

// ExecRunner runs commands on the host.
type ExecRunner struct{}

// Run runs name with args; a failure carries the command's output.
func (ExecRunner) Run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(bytes.ToValidUTF8(out, nil)))
		if len(msg) > 512 {
			msg = msg[:512] + "…"
		}
		if msg != "" {
			return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, msg)
		}
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}

// PowerOp is one of the delayed system operations.
type PowerOp string

// The operations of system_reboot, system_shutdown, system_restart_agent.
const (
	Reboot       PowerOp = "reboot"
	Shutdown     PowerOp = "shutdown"
	RestartAgent PowerOp = "restart_agent"
)

// PowerDelay is how long after answering the operation starts, so the
// RESULT reaches the caller before the link goes down.
const PowerDelay = 2 * time.Second

// powerCommandTimeout bounds one reboot/poweroff/systemctl command.
const powerCommandTimeout = time.Minute

// PowerOptions configure Power.
type PowerOptions struct {
	Runner Runner // required
	// Exit ends the agent cleanly so its supervisor (systemd, the Windows
	// service manager, launchd) starts it again. Used for restart_agent
	// where there is no systemctl, and when systemctl fails.
	Exit  func()
	Log   zerolog.Logger
	Delay time.Duration // 0 → PowerDelay
	GOOS  string        // "" → runtime.GOOS
}

// Power runs the delayed system operations.
type Power struct {
	opts  PowerOptions
	after func(time.Duration, func()) // time.AfterFunc; tests run the action themselves
}

// NewPower checks the options. No I/O.
func NewPower(opts PowerOptions) (*Power, error) {
	if opts.Runner == nil {
		return nil, fmt.Errorf("system.NewPower: Runner is required")
	}
	if opts.Delay == 0 {
		opts.Delay = PowerDelay
	}
	if opts.GOOS == "" {
		opts.GOOS = runtime.GOOS
	}
	return &Power{opts: opts, after: func(d time.Duration, f func()) { time.AfterFunc(d, f) }}, nil
}

// Schedule starts op after the delay and returns at once. The operation
// is not tied to the caller's context: the call has been answered by then.
func (p *Power) Schedule(op PowerOp) error {
	name, args, ok := powerCommand(p.opts.GOOS, op)
	if !ok && op != RestartAgent {
		return fmt.Errorf("unknown system operation %q", op)
	}
	log := p.opts.Log.With().Str("operation", string(op)).Logger()
	log.Info().Dur("delay", p.opts.Delay).Msg("system operation scheduled")
	p.after(p.opts.Delay, func() {
		if ok {
			ctx, cancel := context.WithTimeout(context.Background(), powerCommandTimeout)
			err := p.opts.Runner.Run(ctx, name, args...)
			cancel()
			if err == nil {
				return
			}
			if op != RestartAgent || p.opts.Exit == nil {
				log.Error().Err(err).Msg("system operation failed")
				return
			}
			log.Warn().Err(err).Msg("systemctl restart failed; exiting for the supervisor to restart the agent")
		}
		if p.opts.Exit == nil {
			log.Error().Msg("cannot restart the agent: no exit hook")
			return
		}
		p.opts.Exit()
	})
	return nil
}

// powerCommand is the host command of op (platform.md §6). ok is false for
// the agent restart where the OS has no systemctl: the agent then exits
// for its supervisor.
func powerCommand(goos string, op PowerOp) (name string, args []string, ok bool) {
	switch {
	case goos == "windows" && op == Reboot:
		return "shutdown", []string{"/r", "/t", "5"}, true
	case goos == "windows" && op == Shutdown:
		return "shutdown", []string{"/s", "/t", "5"}, true
	case op == Reboot:
		return "reboot", nil, true
	case op == Shutdown:
		return "poweroff", nil, true
	case op == RestartAgent && goos == "linux":
		return "systemctl", []string{"restart", "reagent"}, true
	}
	return "", nil, false
}
