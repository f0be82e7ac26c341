package backend

import (
	"context"
	"fmt"

	"reagent/src/errdefs"
	"reagent/src/wamp"
)

// PortRule is one port of an app (the reference's PortForwardRule).
//
//	{"name": "web", "main": true, "active": true, "public": false, "port": 8080,
//	 "protocol": "http", "local_ip": "", "remote_port_environment": "",
//	 "remote_port": 0, "host_port": 31000}
type PortRule struct {
	Name                  string `json:"name"`
	Main                  bool   `json:"main"`
	Active                bool   `json:"active"`
	Public                bool   `json:"public"`
	Port                  uint64 `json:"port"`
	Protocol              string `json:"protocol"`
	LocalIP               string `json:"local_ip"`
	RemotePortEnvironment string `json:"remote_port_environment"`
	RemotePort            uint64 `json:"remote_port"`
	HostPort              uint64 `json:"host_port,omitempty"`
	CloudRemotePort       uint64 `json:"cloud_remote_port,omitempty"`
}

// SyncRecord is one record of get_requested_app_states (the reference's
// DeviceSyncResponse; the fields it declares but never uses are left out).
//
//	{"app_key": 7, "app_name": "demo", "stage": "PROD", "current_state": "PRESENT",
//	 "target_state": "RUNNING", "requestor_account_key": 42, "device_owner_account_key": 42,
//	 "release_key": 3, "new_release_key": 0, "request_update": false,
//	 "present_version": "1.0.0", "newest_version": "1.0.0",
//	 "environment": {"GREETING": {"value": "hi"}}, "environment_template": {},
//	 "docker_compose": null, "new_docker_compose": null, "ports": [], "app_cred_epoch": 1}
type SyncRecord struct {
	AppKey                uint64         `json:"app_key"`
	AppName               string         `json:"app_name"`
	Stage                 string         `json:"stage"`
	CurrentState          string         `json:"current_state"`
	TargetState           string         `json:"target_state"`
	RequestorAccountKey   uint64         `json:"requestor_account_key"`
	DeviceOwnerAccountKey uint64         `json:"device_owner_account_key"`
	ReleaseKey            uint64         `json:"release_key"`
	NewReleaseKey         uint64         `json:"new_release_key"`
	RequestUpdate         bool           `json:"request_update"`
	PresentVersion        string         `json:"present_version"`
	NewestVersion         string         `json:"newest_version"`
	Environment           map[string]any `json:"environment"`
	EnvironmentTemplate   map[string]any `json:"environment_template"`
	DockerCompose         map[string]any `json:"docker_compose"`
	NewDockerCompose      map[string]any `json:"new_docker_compose"`
	Ports                 []PortRule     `json:"ports"`
	AppCredEpoch          uint64         `json:"app_cred_epoch"`
}

// GetRequestedAppStates calls reswarm.containers.get_requested_app_states
// [{device_key}] and decodes args[0], a list of records. It is strict,
// because the caller deletes local apps missing from the answer: anything
// but a list whose every record decodes is an error, and an empty list
// comes back as a non-nil empty slice ("the cloud wants no apps").
func (c *Client) GetRequestedAppStates(ctx context.Context) ([]SyncRecord, error) {
	p, err := payload(DeviceKeyRequest{DeviceKey: c.deviceKey})
	if err != nil {
		return nil, err
	}
	res, err := c.call(ctx, 0, ProcGetRequestedAppStates, []any{p}, nil)
	if err != nil {
		return nil, err
	}
	return decodeSyncRecords(res)
}

func decodeSyncRecords(res wamp.Result) ([]SyncRecord, error) {
	a, err := firstArg(ProcGetRequestedAppStates, res)
	if err != nil {
		return nil, err
	}
	list, ok := a.([]any)
	if !ok {
		return nil, errdefs.InvalidArgument("%s: expected a list of records, got %T", ProcGetRequestedAppStates, a)
	}
	out := make([]SyncRecord, 0, len(list))
	for i, item := range list {
		if _, ok := wamp.AsDict(item); !ok {
			return nil, errdefs.InvalidArgument("%s: record %d is %T, not a dict", ProcGetRequestedAppStates, i, item)
		}
		var r SyncRecord
		if err := decode(item, &r); err != nil {
			return nil, errdefs.InvalidArgument("%s: record %d: %v", ProcGetRequestedAppStates, i, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// AppStateReport is a state report of update_app_on_device (shape a).
// Device identity is filled in by the Client.
//
//	{"app_key": 7, "device_key": 2, "swarm_key": 1, "serial_number": "7c3e…", "stage": "PROD",
//	 "state": "RUNNING", "device_to_app_key": 0, "requestor_account_key": 42, "release_key": 3,
//	 "request_update": false, "release_build": false, "updateStatus": ""}
type AppStateReport struct {
	AppKey              uint64 `json:"app_key"`
	DeviceKey           int64  `json:"device_key"`
	SwarmKey            int64  `json:"swarm_key"`
	SerialNumber        string `json:"serial_number"`
	Stage               string `json:"stage"`
	State               string `json:"state"`
	DeviceToAppKey      uint64 `json:"device_to_app_key"`
	RequestorAccountKey uint64 `json:"requestor_account_key"`
	ReleaseKey          uint64 `json:"release_key"`
	RequestUpdate       bool   `json:"request_update"`
	ReleaseBuild        bool   `json:"release_build"`
	UpdateStatus        string `json:"updateStatus"`
}

// UpdateAppOnDevice reports an app's state: [AppStateReport].
func (c *Client) UpdateAppOnDevice(ctx context.Context, r AppStateReport) error {
	r.DeviceKey, r.SwarmKey, r.SerialNumber = c.deviceKey, c.SwarmKey(), c.serial
	p, err := payload(r)
	if err != nil {
		return err
	}
	_, err = c.call(ctx, 0, ProcUpdateAppOnDevice, []any{p}, nil)
	return err
}

// PortSave is the port save of update_app_on_device (shape b).
//
//	{"app_key": 7, "device_key": 2, "swarm_key": 1, "stage": "PROD",
//	 "ports": [{"name": "web", "port": 8080, "protocol": "http", "host_port": 31000, "remote_port": 0, …}]}
type PortSave struct {
	AppKey    uint64     `json:"app_key"`
	DeviceKey int64      `json:"device_key"`
	SwarmKey  int64      `json:"swarm_key"`
	Stage     string     `json:"stage"`
	Ports     []PortRule `json:"ports"`
}

// SaveAppPorts stores an app's port rules (with the agent's host ports) in
// the cloud: [PortSave], 5 s deadline like the reference.
func (c *Client) SaveAppPorts(ctx context.Context, appKey uint64, stage string, ports []PortRule) error {
	if ports == nil {
		ports = []PortRule{}
	}
	p, err := payload(PortSave{AppKey: appKey, DeviceKey: c.deviceKey, SwarmKey: c.SwarmKey(), Stage: stage, Ports: ports})
	if err != nil {
		return err
	}
	_, err = c.call(ctx, timeoutPortSave, ProcUpdateAppOnDevice, []any{p}, nil)
	return err
}

// RegistryTokenRequest names the account whose registry token is wanted.
//
//	{"callerID": 42}
type RegistryTokenRequest struct {
	CallerID uint64 `json:"callerID"`
}

// GetRegistryToken calls reswarm.containers.get_registry_token
// [{callerID}] and returns the token (the registry user name; the device
// secret is the password). No args is an empty token, as in the reference.
func (c *Client) GetRegistryToken(ctx context.Context, callerID uint64) (string, error) {
	p, err := payload(RegistryTokenRequest{CallerID: callerID})
	if err != nil {
		return "", err
	}
	res, err := c.call(ctx, 0, ProcGetRegistryToken, []any{p}, nil)
	if err != nil {
		return "", err
	}
	if len(res.Args) == 0 {
		return "", nil
	}
	s, ok := res.Args[0].(string)
	if !ok {
		return "", errdefs.InvalidArgument("%s: invalid registry_token payload (%T)", ProcGetRegistryToken, res.Args[0])
	}
	return s, nil
}

// SubscriptionMatch asks the router which subscriptions match topic
// (wamp.subscription.match [topic]); no subscriber is an empty list.
func (c *Client) SubscriptionMatch(ctx context.Context, topic string) ([]uint64, error) {
	res, err := c.call(ctx, 0, ProcSubscriptionMatch, []any{topic}, nil)
	if err != nil {
		return nil, err
	}
	if len(res.Args) == 0 || res.Args[0] == nil {
		return []uint64{}, nil
	}
	list, ok := res.Args[0].([]any)
	if !ok {
		return nil, fmt.Errorf("%s: expected a list of subscription ids, got %T", ProcSubscriptionMatch, res.Args[0])
	}
	ids := make([]uint64, 0, len(list))
	for _, v := range list {
		id, ok := wamp.ToUint64(v, false)
		if !ok {
			return nil, fmt.Errorf("%s: subscription id %v is not a number", ProcSubscriptionMatch, v)
		}
		ids = append(ids, id)
	}
	return ids, nil
}
