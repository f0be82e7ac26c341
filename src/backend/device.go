package backend

import (
	"context"
	"fmt"

	"reagent/src/errdefs"
	"reagent/src/release"
	"reagent/src/wamp"
)

// Testament is the dict the router publishes on reswarm.api.testament_device
// when the session ends without GOODBYE.
//
//	{"swarm_key": 1, "device_key": 2, "serial_number": "7c3e…", "wamp_session_id": 4242}
type Testament struct {
	SwarmKey      int64  `json:"swarm_key"`
	DeviceKey     int64  `json:"device_key"`
	SerialNumber  string `json:"serial_number"`
	WampSessionID uint64 `json:"wamp_session_id"`
}

// AddTestament installs the device's testament for session sessionID:
// args ["reswarm.api.testament_device", [Testament], {}], no kwargs.
func (c *Client) AddTestament(ctx context.Context, sessionID uint64) error {
	p, err := payload(Testament{SwarmKey: c.SwarmKey(), DeviceKey: c.deviceKey, SerialNumber: c.serial, WampSessionID: sessionID})
	if err != nil {
		return err
	}
	_, err = c.call(ctx, timeoutTestament, ProcAddTestament, []any{TopicTestament, []any{p}, map[string]any{}}, nil)
	return err
}

// DeviceKeyRequest is the argument of read_device_metadata and
// get_requested_app_states.
//
//	{"device_key": 2}
type DeviceKeyRequest struct {
	DeviceKey int64 `json:"device_key"`
}

// DeviceMetadata is the cloud's record of the device. swarm_key may come
// in any numeric encoding.
//
//	{"device_name": "dev-1", "swarm_name": "my swarm", "ownername": "alice", "swarm_key": 1}
type DeviceMetadata struct {
	DeviceName string `json:"device_name"`
	SwarmName  string `json:"swarm_name"`
	OwnerName  string `json:"ownername"`
	SwarmKey   int64  `json:"swarm_key"`
}

// ReadDeviceMetadata calls reswarm.devices.read_device_metadata [{device_key}].
func (c *Client) ReadDeviceMetadata(ctx context.Context) (DeviceMetadata, error) {
	p, err := payload(DeviceKeyRequest{DeviceKey: c.deviceKey})
	if err != nil {
		return DeviceMetadata{}, err
	}
	res, err := c.call(ctx, 0, ProcReadDeviceMetadata, []any{p}, nil)
	if err != nil {
		return DeviceMetadata{}, err
	}
	return decodeMetadata(res)
}

func decodeMetadata(res wamp.Result) (DeviceMetadata, error) {
	a, err := firstArg(ProcReadDeviceMetadata, res)
	if err != nil {
		return DeviceMetadata{}, err
	}
	d, ok := wamp.AsDict(a)
	if !ok {
		return DeviceMetadata{}, errdefs.InvalidArgument("%s: invalid payload %T", ProcReadDeviceMetadata, a)
	}
	var md DeviceMetadata
	for key, dst := range map[string]*string{"device_name": &md.DeviceName, "swarm_name": &md.SwarmName, "ownername": &md.OwnerName} {
		if md := d[key]; md != nil {
			s, ok := md.(string)
			if !ok {
				return DeviceMetadata{}, errdefs.InvalidArgument("%s: %s is not a string", ProcReadDeviceMetadata, key)
			}
			*dst = s
		}
	}
	if v := d["swarm_key"]; v != nil {
		k, ok := wamp.ToInt64(v, true)
		if !ok {
			return DeviceMetadata{}, errdefs.InvalidArgument("%s: swarm_key is not a number: %v", ProcReadDeviceMetadata, v)
		}
		md.SwarmKey = k
	}
	return md, nil
}

// GetAppCredKey calls reswarm.devices.get_app_cred_key [] (the cloud knows
// the device from the session) and returns the non-empty key string.
func (c *Client) GetAppCredKey(ctx context.Context) (string, error) {
	res, err := c.call(ctx, 0, ProcGetAppCredKey, []any{}, nil)
	if err != nil {
		return "", err
	}
	a, err := firstArg(ProcGetAppCredKey, res)
	if err != nil {
		return "", err
	}
	s, ok := a.(string)
	if !ok || s == "" {
		return "", errdefs.InvalidArgument("%s: expected a non-empty string, got %T", ProcGetAppCredKey, a)
	}
	return s, nil
}

// StatusPayload is one update_device_status report (heartbeat and the
// CONFIGURING/CONNECTED reports of the on-connect sequence).
//
//	{"swarm_key": 1, "device_key": 2, "status": "CONNECTED", "wamp_session_id": 4242,
//	 "stats": {"cpu_count": 2, "cpu_usage": 3.5, "memory_total": 8000000000, …},
//	 "tunnel_capable": true}
type StatusPayload struct {
	SwarmKey      int64  `json:"swarm_key"`
	DeviceKey     int64  `json:"device_key"`
	Status        string `json:"status"`
	WampSessionID uint64 `json:"wamp_session_id"`
	Stats         any    `json:"stats"`
	TunnelCapable bool   `json:"tunnel_capable"`
}

// StatusAnswer is what the cloud answers a status report with; only
// reswarmBaseURL is used.
//
//	{"reswarmBaseURL": "https://studio.ironflock.com"}
type StatusAnswer struct {
	ReswarmBaseURL string `json:"reswarmBaseURL"`
}

// UpdateDeviceStatus reports the device status: [StatusPayload]. The
// answer's reswarmBaseURL is kept only when it is a non-empty string.
func (c *Client) UpdateDeviceStatus(ctx context.Context, status string, sessionID uint64, stats any, tunnelCapable bool) (StatusAnswer, error) {
	p, err := payload(StatusPayload{
		SwarmKey: c.SwarmKey(), DeviceKey: c.deviceKey, Status: status,
		WampSessionID: sessionID, Stats: stats, TunnelCapable: tunnelCapable,
	})
	if err != nil {
		return StatusAnswer{}, fmt.Errorf("%s: %w", ProcUpdateDeviceStatus, err)
	}
	res, err := c.call(ctx, 0, ProcUpdateDeviceStatus, []any{p}, nil)
	if err != nil {
		return StatusAnswer{}, err
	}
	var ans StatusAnswer
	if len(res.Args) > 0 {
		if d, ok := wamp.AsDict(res.Args[0]); ok {
			if s, ok := d["reswarmBaseURL"].(string); ok {
				ans.ReswarmBaseURL = s
			}
		}
	}
	return ans, nil
}

// Architecture is the update_device_architecture report.
//
//	{"swarm_key": 1, "device_key": 2, "architecture": "armv7", "os": "linux debian 12 6.1.0",
//	 "arch": "arm", "variant": "v7", "agent_version": "0.21.0"}
type Architecture struct {
	SwarmKey     int64  `json:"swarm_key"`
	DeviceKey    int64  `json:"device_key"`
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Arch         string `json:"arch"`
	Variant      string `json:"variant"`
	AgentVersion string `json:"agent_version"`
}

// UpdateDeviceArchitecture reports this binary's architecture and version
// and the OS description osName: [Architecture].
func (c *Client) UpdateDeviceArchitecture(ctx context.Context, osName string) error {
	arch, variant := release.SplitArch()
	p, err := payload(Architecture{
		SwarmKey: c.SwarmKey(), DeviceKey: c.deviceKey, Architecture: release.Arch(),
		OS: osName, Arch: arch, Variant: variant, AgentVersion: release.Version(),
	})
	if err != nil {
		return err
	}
	_, err = c.call(ctx, 0, ProcUpdateDeviceArchitecture, []any{p}, nil)
	return err
}

// PrivilegeRequest asks whether an account holds a privilege on the device.
//
//	{"privilege": "READ", "entity": "DEVICE", "entity_key": 2, "requestor_account_key": 42, "swarm_key": 1}
type PrivilegeRequest struct {
	Privilege           string `json:"privilege"`
	Entity              string `json:"entity"`
	EntityKey           int64  `json:"entity_key"`
	RequestorAccountKey uint64 `json:"requestor_account_key"`
	SwarmKey            int64  `json:"swarm_key"`
}

// CheckPrivilege calls reswarm.devices.check_privilege [PrivilegeRequest]
// and expects [bool].
func (c *Client) CheckPrivilege(ctx context.Context, account uint64, privilege string) (bool, error) {
	p, err := payload(PrivilegeRequest{
		Privilege: privilege, Entity: "DEVICE", EntityKey: c.deviceKey,
		RequestorAccountKey: account, SwarmKey: c.SwarmKey(),
	})
	if err != nil {
		return false, err
	}
	res, err := c.call(ctx, 0, ProcCheckPrivilege, []any{p}, nil)
	if err != nil {
		return false, err
	}
	a, err := firstArg(ProcCheckPrivilege, res)
	if err != nil {
		return false, err
	}
	b, ok := a.(bool)
	if !ok {
		return false, errdefs.InvalidArgument("%s: type of argument is not bool (%T)", ProcCheckPrivilege, a)
	}
	return b, nil
}
