package devcloud

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gammazero/nexus/v3/wamp"

	"reagent/src/errdefs"
)

// readDeviceMetadata: [{device_key}] → [{device_name, swarm_name, ownername, swarm_key}].
func (c *Cloud) readDeviceMetadata(_ context.Context, cl call) (wamp.List, error) {
	_, d, err := c.devicePayload(cl)
	if err != nil {
		return nil, err
	}
	return wamp.List{wamp.Dict{
		"device_name": d.Name,
		"swarm_name":  d.SwarmName,
		"ownername":   d.Owner,
		"swarm_key":   uint64(d.SwarmKey),
	}}, nil
}

// getAppCredKey: [] → ["<key>"]; the device is the caller.
func (c *Cloud) getAppCredKey(_ context.Context, cl call) (wamp.List, error) {
	d, err := c.deviceOf(cl, cl.optArg0())
	if err != nil {
		return nil, err
	}
	return wamp.List{d.AppCredKey}, nil
}

// updateDeviceStatus: [{swarm_key, device_key, status, wamp_session_id,
// stats, tunnel_capable}] → [{reswarmBaseURL}].
func (c *Cloud) updateDeviceStatus(_ context.Context, cl call) (wamp.List, error) {
	p, d, err := c.devicePayload(cl)
	if err != nil {
		return nil, err
	}
	status, _ := p["status"].(string)
	if status == "" {
		return nil, errdefs.InvalidArgument("%s: status must be a non-empty string", cl.proc)
	}
	r := StatusRecord{Status: status, At: time.Now()}
	r.SessionID, _ = asUint64(p["wamp_session_id"])
	if tc, ok := p["tunnel_capable"].(bool); ok {
		r.TunnelCapable = &tc
	}
	stats := "null"
	if s, ok := asDict(p["stats"]); ok {
		stats = encodeJSON(s)
	}
	if err := c.db.addStatus(d.Serial, r, stats); err != nil {
		return nil, err
	}
	c.chg.notify()
	return wamp.List{wamp.Dict{"reswarmBaseURL": "http://" + c.ws.hostPort()}}, nil
}

// updateDeviceArchitecture: [{swarm_key, device_key, architecture, os, arch,
// variant, agent_version}] → [].
func (c *Cloud) updateDeviceArchitecture(_ context.Context, cl call) (wamp.List, error) {
	p, d, err := c.devicePayload(cl)
	if err != nil {
		return nil, err
	}
	if err := c.db.setArchitecture(d.Serial, encodeJSON(p)); err != nil {
		return nil, err
	}
	c.chg.notify()
	return nil, nil
}

// checkPrivilege: [{privilege, entity, entity_key, requestor_account_key,
// swarm_key}] → [true|false] from the Studio user's privileges.
func (c *Cloud) checkPrivilege(_ context.Context, cl call) (wamp.List, error) {
	p, err := cl.arg0()
	if err != nil {
		return nil, err
	}
	priv, _ := p["privilege"].(string)
	if priv == "" {
		return nil, errdefs.InvalidArgument("%s: privilege must be a non-empty string", cl.proc)
	}
	var who string
	if s, ok := p["requestor_account_key"].(string); ok && s == SystemAuthID {
		who = SystemAuthID
	} else if k, ok := asUint64(p["requestor_account_key"]); ok {
		who = fmt.Sprint(k)
	} else {
		return nil, errdefs.InvalidArgument("%s: requestor_account_key must be an account key, got %v", cl.proc, p["requestor_account_key"])
	}
	return wamp.List{c.ids.allowed(who, priv)}, nil
}

// getRequestedAppStates: [{device_key}] → [[record, …]].
func (c *Cloud) getRequestedAppStates(_ context.Context, cl call) (wamp.List, error) {
	d, err := c.deviceOf(cl, cl.optArg0())
	if err != nil {
		return nil, err
	}
	recs := wamp.List{}
	for _, r := range c.RequestedApps(d.Serial) {
		recs = append(recs, r.syncRecord(d))
	}
	return wamp.List{recs}, nil
}

// updateAppOnDevice takes (a) a state report {app_key, …, stage, state,
// updateStatus} or (b) a port save {app_key, device_key, swarm_key, stage,
// ports}, and stores either.
func (c *Cloud) updateAppOnDevice(_ context.Context, cl call) (wamp.List, error) {
	p, d, err := c.devicePayload(cl)
	if err != nil {
		return nil, err
	}
	_, isReport := p["state"]
	_, isPorts := p["ports"]
	switch {
	case isReport:
		r := AppReport{At: time.Now()}
		var ok bool
		if r.AppKey, ok = asUint64(p["app_key"]); !ok {
			return nil, errdefs.InvalidArgument("%s: app_key must be an unsigned integer, got %v", cl.proc, p["app_key"])
		}
		r.Stage, _ = p["stage"].(string)
		r.State, _ = p["state"].(string)
		r.UpdateStatus, _ = p["updateStatus"].(string)
		if r.State == "" || (r.Stage != "DEV" && r.Stage != "PROD") {
			return nil, errdefs.InvalidArgument("%s: want stage DEV|PROD and a state, got stage %q state %q", cl.proc, r.Stage, r.State)
		}
		if err := c.addReport(d.Serial, r, encodeJSON(p)); err != nil {
			return nil, err
		}
	case isPorts:
		if err := c.db.addPortReport(d.Serial, encodeJSON(p)); err != nil {
			return nil, err
		}
	default:
		return nil, errdefs.InvalidArgument("%s: payload is neither a state report (state) nor a port save (ports)", cl.proc)
	}
	c.chg.notify()
	return nil, nil
}

// updatePendingConfirmation is the updateStatus of the report that ends a
// successful update on the device.
const updatePendingConfirmation = "pending_remote_confirmation"

// addReport stores a state report, after the cloud's record of the app
// followed it (followReportLocked): whoever sees the report sees the record
// it led to.
func (c *Cloud) addReport(serial string, rep AppReport, payload string) error {
	c.reqMu.Lock()
	defer c.reqMu.Unlock()
	if err := c.followReportLocked(serial, rep); err != nil {
		return err
	}
	return c.db.addAppReport(serial, rep, payload)
}

// followReportLocked makes the cloud's record of the app follow what the
// device reports: its current state, and after a finished update what the
// real cloud records then — the new version is the present one, the new
// release the current one, no update is requested any more. Without the
// latter every later sync would hand the device the update request again.
func (c *Cloud) followReportLocked(serial string, rep AppReport) error {
	rec, ok, err := c.db.requestedRecord(serial, rep.AppKey, rep.Stage)
	if err != nil || !ok {
		return err
	}
	r, err := decodeRequested(rec)
	if err != nil {
		return fmt.Errorf("stored requested state of app %d: %w", rep.AppKey, err)
	}
	r.CurrentState = rep.State
	if rep.UpdateStatus == updatePendingConfirmation && r.RequestUpdate {
		r.PresentVersion = r.NewestVersion
		r.ReleaseKey = r.NewReleaseKey
		r.RequestUpdate = false
	}
	return c.db.setRequested(serial, r, encodeJSON(r))
}

// getRegistryToken: [{callerID}] → ["devcloud-token-<callerID>"].
func (c *Cloud) getRegistryToken(_ context.Context, cl call) (wamp.List, error) {
	p, err := cl.arg0()
	if err != nil {
		return nil, err
	}
	id, ok := asUint64(p["callerID"])
	if !ok {
		return nil, errdefs.InvalidArgument("%s: callerID must be an account key, got %v", cl.proc, p["callerID"])
	}
	return wamp.List{c.RegistryToken(id)}, nil
}

// exposePort: [{port, protocol}] → [{remote_port}]. A port the device
// already holds fails with "Duplicate value", as the real backend does.
func (c *Cloud) exposePort(_ context.Context, cl call) (wamp.List, error) {
	p, d, err := c.devicePayload(cl)
	if err != nil {
		return nil, err
	}
	port, _ := asUint64(p["port"])
	proto, _ := p["protocol"].(string)
	if proto == "" {
		proto = "tcp"
	}
	proto = strings.ToLower(proto)
	got, err := c.db.allocatePort(d.Serial, int(min(port, 65535)), proto, c.portRange[0], c.portRange[1])
	if errors.Is(err, errDuplicatePort) {
		return nil, fmt.Errorf("Duplicate value: remote port %d is already exposed for device %s", port, d.Serial)
	}
	if err != nil {
		return nil, err
	}
	c.chg.notify()
	return wamp.List{wamp.Dict{"remote_port": uint64(got)}}, nil
}

// closePort: [{port, protocol}] → []; releases a port the device holds.
func (c *Cloud) closePort(_ context.Context, cl call) (wamp.List, error) {
	p, d, err := c.devicePayload(cl)
	if err != nil {
		return nil, err
	}
	port, ok := asUint64(p["port"])
	if !ok || port > 65535 {
		return nil, errdefs.InvalidArgument("%s: port must be a port number, got %v", cl.proc, p["port"])
	}
	released, err := c.db.releasePort(d.Serial, int(port))
	if err != nil {
		return nil, err
	}
	if !released {
		return nil, errdefs.NotFound("remote port %d is not exposed for device %s", port, d.Serial)
	}
	c.chg.notify()
	return nil, nil
}

// onTestamentEvent runs on the backend session's receive loop, which must
// not block on a call of its own: record and hand the rest off.
func (c *Cloud) onTestamentEvent(ev *wamp.Event) {
	if len(ev.Arguments) == 0 {
		c.log.Warn().Msg("testament without payload")
		return
	}
	p, ok := asDict(ev.Arguments[0])
	if !ok {
		c.log.Warn().Interface("payload", ev.Arguments[0]).Msg("testament payload is not a dict")
		return
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.ev.recordTestament(p)
	c.bg.Add(1) // under mu, so never after Close began waiting
	c.mu.Unlock()
	c.chg.notify()
	go func() {
		defer c.bg.Done()
		c.markDisconnected(p)
	}()
}

// markDisconnected stores DISCONNECTED for the device whose session left,
// unless another, live session of the device has reported since (a quick
// reconnect whose old session was only now noticed gone).
func (c *Cloud) markDisconnected(p map[string]any) {
	var d device
	var ok bool
	var err error
	if serial, _ := p["serial_number"].(string); serial != "" {
		d, ok, err = c.db.device(serial)
	} else if key, hasKey := asUint64(p["device_key"]); hasKey {
		d, ok, err = c.db.deviceByKey(int64(key))
	}
	if err != nil || !ok {
		c.log.Warn().Err(err).Interface("payload", p).Msg("testament of an unknown device")
		c.chg.notify()
		return
	}
	sid, _ := asUint64(p["wamp_session_id"])
	if last, ok := c.DeviceStatus(d.Serial); ok && last.SessionID != 0 && last.SessionID != sid && c.sessionAlive(last.SessionID) {
		c.log.Info().Str("serial", d.Serial).Uint64("session", sid).Msg("testament of an old session; device is connected again")
		c.chg.notify()
		return
	}
	if err := c.db.addStatus(d.Serial, StatusRecord{Status: "DISCONNECTED", SessionID: sid, At: time.Now()}, "null"); err != nil {
		c.log.Error().Err(err).Msg("store DISCONNECTED")
		return
	}
	c.log.Info().Str("serial", d.Serial).Uint64("session", sid).Msg("device disconnected")
	c.chg.notify()
}

func (c *Cloud) sessionAlive(id uint64) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := c.bk.Call(ctx, string(wamp.MetaProcSessionGet), nil, wamp.List{wamp.ID(id)}, nil, nil)
	return err == nil
}
