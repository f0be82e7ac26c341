package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// agentProc is one run of the agent binary as a child process.
type agentProc struct {
	cmd     *exec.Cmd
	started time.Time // just before the process was started
	out     *os.File  // its stdout and stderr
	done    chan struct{}
	err     error // Wait's result, valid once done is closed
}

// agentArgs is the agent's command line: the device of this run, its own
// directories, no self-update and no NetworkManager (a bench must not touch
// the machine's network), info-level logs like a device in the field.
func (b *bench) agentArgs() []string {
	args := []string{
		"-config", b.flockPath,
		"-agentDir", filepath.Join(b.tmp, "agent"),
		"-logFile", filepath.Join(b.tmp, "reagent.log"),
		"-update=false", "-nmw=false", "-debug=false",
	}
	if b.pprofPort != 0 {
		args = append(args, "-profiling", "-profilingPort", strconv.Itoa(b.pprofPort))
	}
	return append(args, b.cfg.agentArg...)
}

// startAgent starts the agent binary. It gets its own process group, so a
// Ctrl-C in the terminal reaches only the bench, which stops the agent in
// order; and it is killed if the bench dies without cleaning up.
func (b *bench) startAgent() (*agentProc, error) {
	out, err := os.OpenFile(filepath.Join(b.tmp, "agent.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("start agent: %w", err)
	}
	cmd := exec.Command(b.cfg.agent, b.agentArgs()...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), b.cfg.agentEnv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &agentProc{cmd: cmd, out: out, done: make(chan struct{})}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("start agent %s: %w", b.cfg.agent, err)
	}
	go func() {
		p.err = cmd.Wait()
		out.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *agentProc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *agentProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitErr describes how the process ended, for error messages.
func (p *agentProc) exitErr() error {
	if p.err == nil {
		return fmt.Errorf("agent (pid %d) exited with status 0", p.pid())
	}
	return fmt.Errorf("agent (pid %d) ended: %w", p.pid(), p.err)
}

// stop sends SIGTERM and waits for the exit; after grace it kills. A
// graceful exit (status 0) is the only one without an error.
func (p *agentProc) stop(grace time.Duration) error {
	if p.exited() {
		return nil
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop agent (pid %d): %w", p.pid(), err)
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		if p.err != nil {
			return fmt.Errorf("agent (pid %d) after SIGTERM: %w", p.pid(), p.err)
		}
		return nil
	case <-t.C:
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("agent (pid %d) still running %v after SIGTERM; killed", p.pid(), grace)
	}
}

// tail is the end of a file (the agent's output or log), for error
// messages.
func tail(path string, max int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > max {
		b = b[len(b)-max:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(bytes.TrimSpace(b))
}
