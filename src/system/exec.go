package system

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// Kill timeouts of execute_cmd when the caller gives none. A background
// command gets a generous bound instead of none: a forgotten `tail -f`
// must not run (and publish) forever.
const (
	DefaultBlockingTimeout   = 60 * time.Second
	DefaultBackgroundTimeout = 10 * time.Minute
	MaxCommandTimeout        = 24 * time.Hour
)

// DefaultOutputDelay is how long a background command's output is held
// back before the first line is handed on: the caller learns the pid (and
// so the output topic) only from our answer and needs a moment to
// subscribe. The reference waited its `timeout` (default 1 s) before reading.
const DefaultOutputDelay = time.Second

// Output bounds.
const (
	maxStdout     = 4 << 20  // blocking: the answer carries stdout
	maxStderrTail = 16 << 10 // blocking: the end of stderr goes into the error
	maxLine       = 64 << 10 // background: a longer line is cut into pieces
	lineQueue     = 1024     // background: lines waiting for the output delay
	pipeDrainWait = 2 * time.Second
)

// Command is one execute_cmd request. It runs the program directly, never
// through a shell.
type Command struct {
	Name     string
	Args     []string
	Blocking bool
	// Timeout kills the command (and the processes it started) when it
	// runs longer. 0 → DefaultBlockingTimeout / DefaultBackgroundTimeout.
	Timeout time.Duration
	// Background only: every stdout and stderr line, in order, from one
	// goroutine, starting OutputDelay after the start.
	Output      func(pid int, line string)
	OutputDelay time.Duration
}

// CommandResult is what ExecuteCommand reports.
type CommandResult struct {
	Stdout string // blocking
	PID    int    // background
	// Done is closed once a background command has exited, been reaped and
	// all its output handed to Output. Nil for blocking commands.
	Done <-chan struct{}
}

// ExecuteCommand runs c. Blocking: waits (bounded by ctx and the timeout)
// and returns stdout; a non-zero exit is an error carrying the end of
// stderr. Background: returns the pid at once; the process is not tied to
// ctx, is killed after its timeout and is always reaped.
func ExecuteCommand(ctx context.Context, c Command) (CommandResult, error) {
	if c.Name == "" {
		return CommandResult{}, errors.New("command failed to run: empty command")
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultBackgroundTimeout
		if c.Blocking {
			c.Timeout = DefaultBlockingTimeout
		}
	}
	c.Timeout = min(c.Timeout, MaxCommandTimeout)
	if c.Blocking {
		return runBlocking(ctx, c)
	}
	return startBackground(c)
}

func newCmd(ctx context.Context, c Command) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.Name, c.Args...)
	killGroupOnCancel(cmd)
	// Grandchildren may hold our pipes open after the command exits; don't
	// wait for them longer than this.
	cmd.WaitDelay = pipeDrainWait
	return cmd
}

// errKilled is the cause of a context ended by the command's own timeout.
var errKilled = errors.New("kill timeout")

func runBlocking(ctx context.Context, c Command) (CommandResult, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, c.Timeout, errKilled)
	defer cancel()
	cmd := newCmd(ctx, c)
	stdout := &headBuffer{max: maxStdout}
	stderr := &tailBuffer{max: maxStderrTail}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err := cmd.Run()
	switch {
	case err == nil:
		return CommandResult{Stdout: stdout.String()}, nil
	case errors.Is(context.Cause(ctx), errKilled):
		return CommandResult{}, fmt.Errorf("command failed to run: killed after %s", c.Timeout)
	case ctx.Err() != nil: // the call was cancelled or timed out first
		return CommandResult{}, fmt.Errorf("command failed to run: %w", context.Cause(ctx))
	}
	if msg := strings.TrimSpace(stderr.String()); msg != "" {
		return CommandResult{}, fmt.Errorf("command failed to run: %w: %s", err, msg)
	}
	return CommandResult{}, fmt.Errorf("command failed to run: %w", err)
}

func startBackground(c Command) (CommandResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	cmd := newCmd(ctx, c)
	lines := make(chan string, lineQueue)
	stdout := &lineWriter{lines: lines}
	stderr := &lineWriter{lines: lines}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		cancel()
		return CommandResult{}, fmt.Errorf("command failed to run: %w", err)
	}
	pid := cmd.Process.Pid
	done := make(chan struct{})
	go func() { // reaper: Wait is what frees the process table entry
		_ = cmd.Wait()
		cancel()
		stdout.flush()
		stderr.flush()
		close(lines)
	}()
	go func() { // publisher; lines is closed only after the reaper's Wait
		defer close(done)
		if c.OutputDelay > 0 {
			t := time.NewTimer(c.OutputDelay)
			<-t.C
		}
		for l := range lines {
			if c.Output != nil {
				c.Output(pid, l)
			}
		}
	}()
	return CommandResult{PID: pid, Done: done}, nil
}

// lineWriter splits what one stream writes into lines (without the line
// end) and queues them. exec writes each stream from one goroutine.
type lineWriter struct {
	lines   chan<- string
	partial []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		w.partial = append(w.partial, chunk...)
		for len(w.partial) > maxLine {
			w.emit(w.partial[:maxLine])
			w.partial = append(w.partial[:0], w.partial[maxLine:]...)
		}
		if i < 0 {
			break
		}
		w.emit(w.partial)
		w.partial = w.partial[:0]
		p = p[i+1:]
	}
	return n, nil
}

func (w *lineWriter) emit(b []byte) {
	w.lines <- string(bytes.ToValidUTF8(bytes.TrimSuffix(b, []byte("\r")), []byte("\uFFFD")))
}

// flush queues an unterminated last line. Called after the writes ended.
func (w *lineWriter) flush() {
	if len(w.partial) > 0 {
		w.emit(w.partial)
		w.partial = nil
	}
}

// headBuffer keeps the first max bytes and discards the rest, so a chatty
// command neither blocks nor grows the agent.
type headBuffer struct {
	max int
	buf bytes.Buffer
}

func (b *headBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *headBuffer) String() string { return b.buf.String() }

// tailBuffer keeps the last max bytes: an error message is at the end.
type tailBuffer struct {
	max int
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string { return string(bytes.ToValidUTF8(b.buf, nil)) }
