package api

import (
	"context"
	"encoding/json"
	"strings"

	"reagent/src/apps"
	"reagent/src/backend"
	"reagent/src/errdefs"
	"reagent/src/wamp"
)

// AppStates is what request_app_state needs from the app reconciler
// (*apps.Manager).
type AppStates interface {
	Request(ctx context.Context, r apps.Request) error
	// InstallPrivilege: the app is unknown here, REMOVED or UNINSTALLED,
	// so a request brings it onto the device.
	InstallPrivilege(ctx context.Context, k apps.Key) bool
}

// registerAppState registers request_app_state when the reconciler is
// there. Its privilege is decided per call from the app's local state
// (not from the caller's current_state, which the caller controls).
func (h *handlers) registerAppState(r Registrar) {
	if h.d.Apps == nil {
		return
	}
	h.addDynamic(r, ProcRequestAppState, h.appStatePrivilege, h.requestAppState)
}

// appStatePrivilege: INSTALL when the request brings the app onto the
// device (unknown here, REMOVED or UNINSTALLED), otherwise OPERATE — the
// check the reference had before v0.17.4. Input too broken to name an app
// gets INSTALL, the stricter one; the handler then refuses it.
func (h *handlers) appStatePrivilege(ctx context.Context, c *wamp.Call) (wamp.Privilege, error) {
	key, ok := wamp.ToUint64(c.Kwargs["app_key"], false)
	stage, _ := c.Kwargs["stage"].(string)
	if !ok || key == 0 || (stage != apps.StageDev && stage != apps.StageProd) {
		return wamp.Install, nil
	}
	if h.d.Apps.InstallPrivilege(ctx, apps.Key{AppKey: key, Stage: stage}) {
		return wamp.Install, nil
	}
	return wamp.Operate, nil
}

// request_app_state (kwargs, apps-lifecycle §1.3): validate, store the
// desired state, answer an empty result at once; the reconciler does the
// work and reports it through update_app_on_device and the app's log.
func (h *handlers) requestAppState(ctx context.Context, c *wamp.Call) (wamp.Result, error) {
	req, err := DecodeAppStateRequest(c.Kwargs)
	if err != nil {
		return wamp.Result{}, err
	}
	if err := h.d.Apps.Request(ctx, req); err != nil {
		return wamp.Result{}, err
	}
	return wamp.Result{}, nil
}

// DecodeAppStateRequest reads request_app_state's kwargs into a validated
// request, with the reference's error texts ("failed to parse <field>",
// "missing from payload <field>"). Types per wamp-contract §6.2: app_key
// and new_release_key are whole non-negative numbers in any encoding but
// never strings; account keys and release_key may also be decimal
// strings; instance_key and app_cred_epoch are lenient. Fixes of the
// reference: an absent app_key is an error, stage and states must be
// known.
//
//	{"app_key": 42, "app_name": "demo", "stage": "PROD", "target_state": "RUNNING",
//	 "current_state": "REMOVED", "requestor_account_key": 7, "device_owner_account_key": 7,
//	 "release_key": 3, "new_release_key": 0, "version": "1.0.0", "present_version": "",
//	 "newest_version": "1.0.0", "request_update": false, "cancel_transition": false,
//	 "environment": {"GREETING": {"value": "hi"}}, "environment_template": {},
//	 "ports": [{"name": "web", "port": 80, "protocol": "http", "active": true}],
//	 "docker_credentials": {"ghcr.io": {"username": "u", "password": "p"}},
//	 "instance_key": 0, "app_cred_epoch": 1}
func DecodeAppStateRequest(kw map[string]any) (apps.Request, error) {
	var (
		r   apps.Request
		err error
	)
	d := kwargs(kw)
	v, present := d.get("app_key")
	if present {
		n, ok := wamp.ToUint64(v, false)
		if !ok {
			return r, parseErr("app_key")
		}
		r.AppKey = n
	}
	if r.AppKey == 0 {
		return r, missingErr("app_key")
	}
	if r.AppName, err = d.str("app_name", "appName"); err != nil {
		return r, err
	}
	if r.AppName == "" {
		return r, missingErr("appName")
	}
	if r.Stage, err = d.str("stage", "stage"); err != nil {
		return r, err
	}
	if r.Stage == "" {
		return r, missingErr("stage")
	}
	if r.TargetState, err = d.strFallback("target_state", "manually_requested_state"); err != nil {
		return r, err
	}
	if r.TargetState == "" {
		return r, missingErr("target_state")
	}
	if r.CurrentState, err = d.strFallback("current_state", "state"); err != nil {
		return r, err
	}
	if r.RequestorAccountKey, err = d.uint("requestor_account_key", true); err != nil {
		return r, err
	}
	if r.RequestorAccountKey == 0 {
		if r.RequestorAccountKey, err = d.uint("account_id", true); err != nil {
			return r, err
		}
	}
	if r.DeviceOwnerAccountKey, err = d.uint("device_owner_account_key", true); err != nil {
		return r, err
	}
	if r.ReleaseKey, err = d.uint("release_key", true); err != nil {
		return r, err
	}
	if r.NewReleaseKey, err = d.uint("new_release_key", false); err != nil {
		return r, err
	}
	r.InstanceKey = d.lenientUint("instance_key")
	r.AppCredEpoch = d.lenientUint("app_cred_epoch")
	for _, f := range []struct {
		key string
		dst *string
	}{{"version", &r.Version}, {"present_version", &r.PresentVersion}, {"newest_version", &r.NewestVersion}} {
		if *f.dst, err = d.str(f.key, f.key); err != nil {
			return r, err
		}
	}
	if r.RequestUpdate, err = d.boolean("request_update"); err != nil {
		return r, err
	}
	if r.CancelTransition, err = d.boolean("cancel_transition"); err != nil {
		return r, err
	}
	for _, f := range []struct {
		key string
		dst *map[string]any
	}{{"environment", &r.Environment}, {"environment_template", &r.EnvironmentTemplate},
		{"docker_compose", &r.DockerCompose}, {"new_docker_compose", &r.NewDockerCompose}} {
		if *f.dst, err = d.dict(f.key); err != nil {
			return r, err
		}
	}
	if r.Ports, err = d.ports(); err != nil {
		return r, err
	}
	if r.DockerCredentials, err = d.credentials(); err != nil {
		return r, err
	}
	if err := r.Validate(); err != nil {
		return apps.Request{}, err
	}
	return r, nil
}

func parseErr(field string) error   { return errdefs.InvalidArgument("failed to parse %s", field) }
func missingErr(field string) error { return errdefs.InvalidArgument("missing from payload %s", field) }

// kwargs reads request_app_state's keyword arguments; a JSON null counts
// as absent.
type kwargs map[string]any

func (d kwargs) get(key string) (any, bool) {
	v, ok := d[key]
	return v, ok && v != nil
}

// str reads a string; name is the field's name in the error text.
func (d kwargs) str(key, name string) (string, error) {
	v, ok := d.get(key)
	if !ok {
		return "", nil
	}
	s, isStr := v.(string)
	if !isStr {
		return "", parseErr(name)
	}
	return s, nil
}

// strFallback reads key, and fallback when key is empty.
func (d kwargs) strFallback(key, fallback string) (string, error) {
	s, err := d.str(key, key)
	if err != nil || s != "" {
		return s, err
	}
	return d.str(fallback, fallback)
}

// uint reads a whole non-negative number; with numericString also a
// decimal string.
func (d kwargs) uint(key string, numericString bool) (uint64, error) {
	v, ok := d.get(key)
	if !ok {
		return 0, nil
	}
	if s, isStr := v.(string); isStr && numericString && strings.TrimSpace(s) == "" {
		return 0, nil
	}
	n, ok := wamp.ToUint64(v, numericString)
	if !ok {
		return 0, parseErr(key)
	}
	return n, nil
}

// lenientUint reads a number in any encoding; anything unusable is 0 (the
// reference's lenience for instance_key and app_cred_epoch).
func (d kwargs) lenientUint(key string) uint64 {
	v, ok := d.get(key)
	if !ok {
		return 0
	}
	if n, ok := wamp.ToUint64(v, true); ok {
		return n
	}
	if f, ok := wamp.ToFloat64(v, true); ok && f >= 0 && f < 1<<63 {
		return uint64(f)
	}
	return 0
}

func (d kwargs) boolean(key string) (bool, error) {
	v, ok := d.get(key)
	if !ok {
		return false, nil
	}
	b, isBool := v.(bool)
	if !isBool {
		return false, parseErr(key)
	}
	return b, nil
}

func (d kwargs) dict(key string) (map[string]any, error) {
	v, ok := d.get(key)
	if !ok {
		return nil, nil
	}
	m, isDict := wamp.AsDict(v)
	if !isDict {
		return nil, parseErr(key)
	}
	return m, nil
}

// ports reads the port rules: a list of rule objects.
func (d kwargs) ports() ([]backend.PortRule, error) {
	v, ok := d.get("ports")
	if !ok {
		return nil, nil
	}
	list, isList := v.([]any)
	if !isList {
		return nil, parseErr("ports")
	}
	out := make([]backend.PortRule, 0, len(list))
	for _, item := range list {
		m, isDict := wamp.AsDict(item)
		if !isDict {
			return nil, parseErr("ports")
		}
		var rule backend.PortRule
		if err := redecode(m, &rule); err != nil {
			return nil, parseErr("ports")
		}
		out = append(out, rule)
	}
	return out, nil
}

// credentials reads docker_credentials: {registry: {username, password}},
// both required.
func (d kwargs) credentials() (map[string]apps.Credential, error) {
	m, err := d.dict("docker_credentials")
	if err != nil || m == nil {
		return nil, err
	}
	out := make(map[string]apps.Credential, len(m))
	for host, v := range m {
		e, isDict := wamp.AsDict(v)
		if !isDict {
			return nil, parseErr("docker_credentials")
		}
		user, uok := e["username"].(string)
		pass, pok := e["password"].(string)
		if !uok || !pok || user == "" || pass == "" || host == "" {
			return nil, parseErr("docker_credentials")
		}
		out[host] = apps.Credential{Username: user, Password: pass}
	}
	return out, nil
}

// redecode reads a decoded value into a wire struct, strictly.
func redecode(v any, into any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, into)
}
