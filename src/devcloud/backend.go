package devcloud

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/gammazero/nexus/v3/client"
	"github.com/gammazero/nexus/v3/wamp"

	"reagent/src/errdefs"
)

// Backend procedures and topics, spelled as the real cloud (wamp-contract §4).
const (
	ProcReadDeviceMetadata       = "reswarm.devices.read_device_metadata"
	ProcGetAppCredKey            = "reswarm.devices.get_app_cred_key"
	ProcUpdateDeviceStatus       = "reswarm.devices.update_device_status"
	ProcUpdateDeviceArchitecture = "reswarm.devices.update_device_architecture"
	ProcCheckPrivilege           = "reswarm.devices.check_privilege"
	ProcGetRequestedAppStates    = "reswarm.containers.get_requested_app_states"
	ProcUpdateAppOnDevice        = "reswarm.containers.update_app_on_device"
	ProcGetRegistryToken         = "reswarm.containers.get_registry_token"
	ProcExposePort               = "re.tunnel.expose_port"
	ProcClosePort                = "re.tunnel.close_port"
	TopicTestament               = "reswarm.api.testament_device"
)

// Error URIs the backend answers with. Its text goes in args[0], as a
// Python backend raising an ApplicationError sends it.
const (
	errURIRuntime = wamp.URI("wamp.error.runtime_error")
)

// call is one invocation as a handler sees it.
type call struct {
	proc   string
	args   wamp.List
	kwargs wamp.Dict
	authid string // caller_authid, disclosed by the router
	role   string // caller_authrole
}

// arg0 is the first positional argument as a dict, the shape nearly every
// backend procedure takes.
func (cl call) arg0() (map[string]any, error) {
	if len(cl.args) == 0 {
		return nil, errdefs.InvalidArgument("%s: missing argument 0 (a dict)", cl.proc)
	}
	d, ok := asDict(cl.args[0])
	if !ok {
		return nil, errdefs.InvalidArgument("%s: argument 0 must be a dict, got %T", cl.proc, cl.args[0])
	}
	return d, nil
}

// optArg0 is argument 0 when it is a dict, else nil: for procedures whose
// payload may be left out (the device is the caller).
func (cl call) optArg0() map[string]any {
	if len(cl.args) == 0 {
		return nil
	}
	d, _ := asDict(cl.args[0])
	return d
}

type handler func(ctx context.Context, cl call) (wamp.List, error)

// startBackend joins the router as a local session, registers the backend
// procedures and subscribes to device testaments.
func (c *Cloud) startBackend() (*client.Client, error) {
	bk, err := client.ConnectLocal(c.rt, client.Config{
		Realm:          Realm,
		HelloDetails:   wamp.Dict{"authid": "devcloud-backend"},
		Logger:         stdLogger{c.log.With().Str("part", "backend").Logger()},
		LocalQueueSize: 4096,
	})
	if err != nil {
		return nil, fmt.Errorf("devcloud: backend session: %w", err)
	}
	procs := map[string]handler{
		ProcReadDeviceMetadata:       c.readDeviceMetadata,
		ProcGetAppCredKey:            c.getAppCredKey,
		ProcUpdateDeviceStatus:       c.updateDeviceStatus,
		ProcUpdateDeviceArchitecture: c.updateDeviceArchitecture,
		ProcCheckPrivilege:           c.checkPrivilege,
		ProcGetRequestedAppStates:    c.getRequestedAppStates,
		ProcUpdateAppOnDevice:        c.updateAppOnDevice,
		ProcGetRegistryToken:         c.getRegistryToken,
		ProcExposePort:               c.exposePort,
		ProcClosePort:                c.closePort,
		ProcStudioDevices:            c.studioDevices,
		ProcStudioApps:               c.studioApps,
		ProcStudioSetRequested:       c.studioSetRequested,
	}
	for name, h := range procs {
		if err := bk.Register(name, c.serve(name, h), wamp.Dict{wamp.OptDiscloseCaller: true}); err != nil {
			bk.Close()
			return nil, fmt.Errorf("devcloud: register %s: %w", name, err)
		}
	}
	if err := bk.Subscribe(TopicTestament, c.onTestamentEvent, nil); err != nil {
		bk.Close()
		return nil, fmt.Errorf("devcloud: subscribe %s: %w", TopicTestament, err)
	}
	return bk, nil
}

// serve wraps a handler: it records the call, applies an injected fault,
// recovers from panics and turns errors into WAMP errors.
func (c *Cloud) serve(name string, h handler) client.InvocationHandler {
	return func(ctx context.Context, inv *wamp.Invocation) (res client.InvokeResult) {
		cl := call{proc: name, args: inv.Arguments, kwargs: inv.ArgumentsKw}
		cl.authid, _ = wamp.AsString(inv.Details["caller_authid"])
		cl.role, _ = wamp.AsString(inv.Details["caller_authrole"])
		if !isStudioProc(name) {
			c.ev.recordCall(CallRecord{Procedure: name, Args: inv.Arguments, Kwargs: inv.ArgumentsKw, CallerAuthID: cl.authid, At: time.Now()})
			c.chg.notify()
		}
		log := c.log.With().Str("procedure", name).Str("caller", cl.authid).Logger()
		if cl.role == RoleUser && !isStudioProc(name) {
			// Backend procedures serve devices (and system); a Studio user
			// has no business writing device state.
			return client.InvokeResult{Err: wamp.ErrNotAuthorized, Args: wamp.List{name + " is for devices"}}
		}
		if f, ok := c.ev.takeFault(name); ok {
			if f.Delay > 0 {
				t := time.NewTimer(f.Delay)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return client.InvokeResult{Err: wamp.ErrCanceled}
				}
			}
			if f.ErrorURI != "" {
				log.Debug().Str("error", f.ErrorURI).Msg("injected fault")
				return client.InvokeResult{Err: wamp.URI(f.ErrorURI), Args: wamp.List{"devcloud: injected fault"}}
			}
		}
		defer func() {
			if p := recover(); p != nil {
				log.Error().Interface("panic", p).Str("stack", string(debug.Stack())).Msg("backend handler panicked")
				res = client.InvokeResult{Err: errURIRuntime, Args: wamp.List{fmt.Sprintf("internal error: %v", p)}}
			}
		}()
		out, err := h(ctx, cl)
		if err != nil {
			log.Debug().Err(err).Msg("backend call failed")
			return client.InvokeResult{Err: errorURI(err), Args: wamp.List{err.Error()}}
		}
		log.Debug().Msg("backend call")
		if out == nil {
			out = wamp.List{}
		}
		return client.InvokeResult{Args: out}
	}
}

func errorURI(err error) wamp.URI {
	switch {
	case errors.Is(err, errdefs.ErrInvalidArgument):
		return wamp.ErrInvalidArgument
	case errors.Is(err, errdefs.ErrNotAuthorized):
		return wamp.ErrNotAuthorized
	default:
		return errURIRuntime
	}
}

// devicePayload is the dict argument 0 of a device procedure and the
// device it concerns (see deviceOf).
func (c *Cloud) devicePayload(cl call) (map[string]any, device, error) {
	p, err := cl.arg0()
	if err != nil {
		return nil, device{}, err
	}
	d, err := c.deviceOf(cl, p)
	return p, d, err
}

// deviceOf resolves the device a call is about. A device caller is always
// itself (and may not speak for another device); other callers (system,
// tests) name the device by device_key in the payload.
func (c *Cloud) deviceOf(cl call, payload map[string]any) (device, error) {
	var key uint64
	var hasKey bool
	if payload != nil {
		key, hasKey = asUint64(payload["device_key"])
	}
	if cl.role == RoleDevice {
		pr, ok := c.ids.get(cl.authid)
		if !ok {
			return device{}, errdefs.NotAuthorized("unknown device %s", cl.authid)
		}
		d, ok, err := c.db.device(pr.serial)
		if err != nil {
			return device{}, err
		}
		if !ok {
			return device{}, errdefs.NotAuthorized("unknown device %s", cl.authid)
		}
		if hasKey && key != uint64(d.DeviceKey) {
			return device{}, errdefs.NotAuthorized("device %s may not act for device_key %d", cl.authid, key)
		}
		return d, nil
	}
	if !hasKey {
		return device{}, errdefs.InvalidArgument("%s: device_key missing and the caller %q is not a device", cl.proc, cl.authid)
	}
	d, ok, err := c.db.deviceByKey(int64(key))
	if err != nil {
		return device{}, err
	}
	if !ok {
		return device{}, errdefs.NotFound("no device with device_key %d", key)
	}
	return d, nil
}
