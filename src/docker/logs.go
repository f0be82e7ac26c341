package docker

import (
	"context"
	"errors"
	"fmt"
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

	stdout := &lineBuilder{stream: "stdout", keepTS: opts.Timestamps, emit: fn}
	stderr := &lineBuilder{stream: "stderr", keepTS: opts.Timestamps, emit: fn}
	if ct.Tty {
		err = parseRaw(body, stdout)
	} else {
		err = parseMultiplexed(body, stdout, stderr)
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
