package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/docker/docker/api/types/container"

	"reagent/src/errdefs"
)

// LogsOptions select the part of a container's log to read.
type LogsOptions struct {
	Follow bool
	// Since is inclusive, as in the engine, with nanosecond precision; to
	// resume after an entry pass that entry's Time plus one nanosecond.
	Since time.Time // zero = from the start
	Until time.Time // zero = no end
	Tail  int       // last N lines; 0 = all
	// Timestamps keeps the engine's "<RFC3339Nano> " prefix in Text (as
	// `docker logs -t` prints); Time is filled either way.
	Timestamps bool
}

// Logs calls fn for each line of the container's output, in order per
// stream, until the log ends (with Follow: until the container stops) or ctx
// ends. It works for TTY containers (raw stream, all "stdout") and non-TTY
// ones (multiplexed stdout/stderr). Lines longer than MaxLogLine are cut.
// An error from fn stops reading and is returned as is.
func (c *Client) Logs(ctx context.Context, id string, opts LogsOptions, fn func(LogEntry) error) error {
	ct, err := c.InspectContainer(ctx, id)
	if err != nil {
		return fmt.Errorf("logs: %w", err)
	}
	tail := "all"
	if opts.Tail > 0 {
		tail = strconv.Itoa(opts.Tail)
	}
	body, err := c.api.ContainerLogs(ctx, ct.ID, container.LogsOptions{
		ShowStdout: true,
		ShowStderr: true,
		Follow:     opts.Follow,
		Since:      unixNano(opts.Since),
		Until:      unixNano(opts.Until),
		Tail:       tail,
		Timestamps: true, // always: Time comes from them
	})
	if err != nil {
		return wrapf(err, "logs of container %s", id)
	}
	stop := context.AfterFunc(ctx, func() { body.Close() })
	defer stop()
	defer body.Close()

	var r io.Reader = body
	if opts.Follow {
		p := newPacedReader(ctx, body)
		defer p.stop()
		r = p
	}
	stdout := &lineBuilder{stream: "stdout", keepTS: opts.Timestamps, emit: fn}
	stderr := &lineBuilder{stream: "stderr", keepTS: opts.Timestamps, emit: fn}
	if ct.Tty {
		err = parseRaw(r, stdout)
	} else {
		err = parseMultiplexed(r, stdout, stderr)
	}
	var ce consumerError
	switch {
	case errors.As(err, &ce):
		return ce.err
	case ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		return fmt.Errorf("logs of container %s: %w", id, errdefs.Unavailable("reading log stream: %v", err))
	}
	// A last line without newline (the process exited mid-line).
	for _, b := range []*lineBuilder{stdout, stderr} {
		if err := b.end(); err != nil {
			return err.(consumerError).err
		}
	}
	return nil
}

const (
	// pacedSmall: a read of a followed stream that brings less than this
	// makes the next read wait pacedPause first.
	pacedSmall = 1024
	// pacedPause is the most a followed line is delayed by pacing; the log
	// relay publishes every 200 ms, and an app printing slowly still gets
	// each line within it.
	pacedPause = 10 * time.Millisecond
)

// pacedReader reads a followed log stream in fewer, larger reads. The
// engine flushes every message as it is written, so a reader that keeps up
// makes one read — a syscall, a wait in the poller and a goroutine
// wake-up — per line, which costs more CPU than handling the line. After a
// small read the next one waits pacedPause, so what the app printed
// meanwhile comes in one read; while data is waiting, reads follow each
// other at once.
type pacedReader struct {
	ctx   context.Context
	r     io.Reader
	t     *time.Timer // stopped unless pausing
	small bool        // the last read was small: pause before the next
}

func newPacedReader(ctx context.Context, r io.Reader) *pacedReader {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &pacedReader{ctx: ctx, r: r, t: t}
}

func (p *pacedReader) Read(b []byte) (int, error) {
	if p.small {
		p.t.Reset(pacedPause)
		select {
		case <-p.t.C:
		case <-p.ctx.Done():
			p.t.Stop()
			return 0, p.ctx.Err()
		}
	}
	n, err := p.r.Read(b)
	p.small = n < pacedSmall
	return n, err
}

func (p *pacedReader) stop() { p.t.Stop() }
