package api

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"reagent/src/errdefs"
	"reagent/src/system"
	"reagent/src/wamp"
)

// cmdOutputTopic is where a background command's lines go:
// re.mgmt.<serial>.cmd_output_<pid>, each as `[line]`.
const cmdOutputTopic = "cmd_output_%d"

// maxCmdLen is PATH_MAX: no program name is longer, and the error of a
// longer one would echo it back whole.
const maxCmdLen = 4096

// ExecPID is the answer of a background execute_cmd, `[ExecPID]`.
//
//	{"pid": 4242}
type ExecPID struct {
	PID int `json:"pid"`
}

// execute_cmd `{cmd: string, blocking: bool, args?: [primitive], timeout?: ms}`
// runs a program (no shell) as the agent's user. Blocking: `["<stdout>"]`.
// Background: `[{"pid": N}]`, then every stdout and stderr line on the
// output topic. timeout is a kill timeout in both modes (the reference's
// was a read delay): 0 or absent → system.DefaultBlockingTimeout /
// system.DefaultBackgroundTimeout.
func (h *handlers) executeCmd(ctx context.Context, c *wamp.Call) (wamp.Result, error) {
	cmd, err := decodeExecuteCmd(c)
	if err != nil {
		return wamp.Result{}, err
	}
	// Remote code execution: keep an audit trail (the arguments may hold
	// secrets, so only their number).
	h.log.Info().Str("caller", c.Caller).Uint64("account", c.Account).Str("cmd", cmd.Name).
		Int("args", len(cmd.Args)).Bool("blocking", cmd.Blocking).Dur("timeout", cmd.Timeout).Msg("execute command")
	if !cmd.Blocking {
		cmd.Output = h.publishOutput()
		cmd.OutputDelay = h.d.ExecOutputDelay
		if cmd.OutputDelay == 0 {
			cmd.OutputDelay = system.DefaultOutputDelay
		}
	}
	res, err := h.execute(ctx, cmd)
	if err != nil {
		return wamp.Result{}, err
	}
	if cmd.Blocking {
		return args(res.Stdout), nil
	}
	return args(ExecPID{PID: res.PID}), nil
}

// publishOutput returns the Output of one background command. A failed
// publish (e.g. offline) is logged once per command; the command's pipes
// are drained regardless.
func (h *handlers) publishOutput() func(pid int, line string) {
	var failed atomic.Bool
	return func(pid int, line string) {
		if h.d.Publish == nil {
			return
		}
		topic := wamp.ProcedureURI(h.serial, fmt.Sprintf(cmdOutputTopic, pid))
		if err := h.d.Publish(topic, []any{line}); err != nil && !failed.Swap(true) {
			h.log.Warn().Err(err).Int("pid", pid).Msg("execute_cmd output not published")
		}
	}
}

// decodeExecuteCmd validates the request with the reference's error texts.
func decodeExecuteCmd(c *wamp.Call) (system.Command, error) {
	if _, ok := c.Arg(0); !ok {
		return system.Command{}, errdefs.InvalidArgument("args array should not be empty")
	}
	d, err := c.Dict(0)
	if err != nil {
		return system.Command{}, err
	}
	var cmd system.Command
	name, ok := d["cmd"].(string)
	if !ok {
		return system.Command{}, errdefs.InvalidArgument("cmd param should be a string")
	}
	if name == "" {
		return system.Command{}, errdefs.InvalidArgument("cmd param should not be empty")
	}
	if len(name) > maxCmdLen {
		return system.Command{}, errdefs.InvalidArgument("cmd param is longer than %d bytes", maxCmdLen)
	}
	cmd.Name = name
	if cmd.Blocking, ok = d["blocking"].(bool); !ok {
		return system.Command{}, errdefs.InvalidArgument("blocking param should be a boolean")
	}
	if v, present := d["args"]; present && v != nil {
		list, err := wamp.List(d, "args", false)
		if err != nil {
			return system.Command{}, errdefs.InvalidArgument("args param should be an array of primitive values")
		}
		for _, a := range list {
			s, ok := primitiveString(a)
			if !ok {
				return system.Command{}, errdefs.InvalidArgument("args param should be an array of primitive values")
			}
			cmd.Args = append(cmd.Args, s)
		}
	}
	if v, present := d["timeout"]; present && v != nil {
		ms, ok := wamp.ToUint64(v, false)
		if !ok {
			return system.Command{}, errdefs.InvalidArgument("the timeout param should be an uint64")
		}
		if ms > uint64(system.MaxCommandTimeout/time.Millisecond) {
			return system.Command{}, errdefs.InvalidArgument("the timeout param should be at most %d (ms)",
				system.MaxCommandTimeout/time.Millisecond)
		}
		cmd.Timeout = time.Duration(ms) * time.Millisecond
	}
	return cmd, nil
}

// primitiveString stringifies a string, number or boolean argument.
func primitiveString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case bool:
		return strconv.FormatBool(x), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case float32:
		return strconv.FormatFloat(float64(x), 'f', -1, 32), true
	case json.Number:
		return x.String(), true
	}
	if i, ok := wamp.ToInt64(v, false); ok {
		return strconv.FormatInt(i, 10), true
	}
	if u, ok := wamp.ToUint64(v, false); ok {
		return strconv.FormatUint(u, 10), true
	}
	return "", false
}
