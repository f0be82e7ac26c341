// Package backend is the typed face of the cloud's procedures the agent
// calls (reswarm.*, re.tunnel.*, the router's wamp.* meta procedures):
// one method per procedure, the reference's payloads as wire structs, and
// a deadline on every call. It owns no state but the device identity the
// payloads carry.
package backend

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"time"

	"reagent/src/config"
	"reagent/src/errdefs"
	"reagent/src/wamp"
)

// Caller makes one call to a peer; *wamp.Session is one.
type Caller interface {
	Call(ctx context.Context, procedure string, args []any, kwargs map[string]any) (wamp.Result, error)
}

// Client calls the cloud's procedures for one device.
type Client struct {
	caller    Caller
	timeout   time.Duration // deadline of every call unless the procedure has its own
	serial    string
	deviceKey int64
	swarmKey  atomic.Int64 // changes when the cloud moves the device (read_device_metadata)
}

// New builds a Client for the device of flock. defaultTimeout bounds every
// call (≤ 0 → 10 s); a ctx with an earlier deadline keeps it.
func New(caller Caller, flock *config.Flock, defaultTimeout time.Duration) *Client {
	if defaultTimeout <= 0 {
		defaultTimeout = 10 * time.Second
	}
	c := &Client{caller: caller, timeout: defaultTimeout, serial: flock.SerialNumber, deviceKey: flock.DeviceKey}
	c.swarmKey.Store(flock.SwarmKey)
	return c
}

// SetSwarmKey makes later payloads carry the swarm key the cloud assigned.
func (c *Client) SetSwarmKey(k int64) { c.swarmKey.Store(k) }

// SwarmKey is the swarm key payloads carry.
func (c *Client) SwarmKey() int64 { return c.swarmKey.Load() }

// call applies the deadline and makes the call.
func (c *Client) call(ctx context.Context, d time.Duration, procedure string, args []any, kwargs map[string]any) (wamp.Result, error) {
	if d <= 0 {
		d = c.timeout
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	res, err := c.caller.Call(ctx, procedure, args, kwargs)
	if err != nil {
		return wamp.Result{}, fmt.Errorf("%s: %w", procedure, err)
	}
	return res, nil
}

// payload turns a wire struct into the generic value a call carries, so
// every serializer nexus may pick sees plain maps with the JSON names.
func payload(v any) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	dec := json.NewDecoder(bytesReader(b))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	return normalizeNumbers(m).(map[string]any), nil
}

// normalizeNumbers turns json.Number into uint64/int64/float64, the types
// nexus's serializers write natively.
func normalizeNumbers(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = normalizeNumbers(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = normalizeNumbers(e)
		}
		return x
	case json.Number:
		if u, ok := wamp.ToUint64(x, false); ok {
			return u
		}
		if i, ok := wamp.ToInt64(x, false); ok {
			return i
		}
		f, _ := x.Float64()
		return f
	}
	return v
}

// decode re-reads a decoded value (maps, lists, numbers of any encoding)
// into a wire struct, strictly: a field of the wrong type is an error.
func decode(v any, into any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, into)
}

// firstArg is args[0] of a result, or an error naming the procedure.
func firstArg(procedure string, res wamp.Result) (any, error) {
	if len(res.Args) == 0 {
		return nil, errdefs.Unavailable("%s: the answer has no arguments", procedure)
	}
	return res.Args[0], nil
}
