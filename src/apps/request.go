package apps

import (
	"encoding/json"
	"errors"
	"fmt"

	"reagent/src/backend"
	"reagent/src/errdefs"
	"reagent/src/store"
)

// Credential is one entry of docker_credentials: registry host →
// {username, password}. It never prints its password.
type Credential struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

func (c Credential) String() string   { return "Credential{" + c.Username + ", password ***}" }
func (c Credential) GoString() string { return c.String() }

// Request is a validated request_app_state (apps-lifecycle §1.3), the
// desired state of one app with everything needed to drive it.
type Request struct {
	Key
	AppName                                    string
	TargetState                                string // a state; transient ones are normalised (STARTING → RUNNING …)
	CurrentState                               string // the cloud's view; informational
	RequestorAccountKey, DeviceOwnerAccountKey uint64
	ReleaseKey, NewReleaseKey                  uint64
	Version, PresentVersion, NewestVersion     string
	RequestUpdate, CancelTransition            bool
	Environment, EnvironmentTemplate           map[string]any // {NAME: {"value": …}}, {NAME: {"defaultValue": …}}
	Ports                                      []backend.PortRule
	DockerCompose, NewDockerCompose            map[string]any
	DockerCredentials                          map[string]Credential // nil: keep what is stored
	InstanceKey, AppCredEpoch                  uint64                // 0: keep what is stored
}

// Validate checks the request; errors are ErrInvalidArgument.
func (r Request) Validate() error {
	if r.Stage != StageDev && r.Stage != StageProd {
		return errdefs.InvalidArgument("invalid stage %q: must be DEV or PROD", r.Stage)
	}
	if r.AppKey == 0 {
		return errdefs.InvalidArgument("missing from payload app_key")
	}
	if err := ValidateAppName(r.AppName); err != nil {
		return err
	}
	if !IsState(r.TargetState) || !requestable[NormalizeTarget(r.TargetState)] {
		return errdefs.InvalidArgument("invalid target_state %q", r.TargetState)
	}
	if r.CurrentState != "" && !IsState(r.CurrentState) {
		return errdefs.InvalidArgument("invalid current_state %q", r.CurrentState)
	}
	for host, c := range r.DockerCredentials {
		if host == "" || c.Username == "" || c.Password == "" {
			return errdefs.InvalidArgument("failed to parse docker_credentials")
		}
	}
	return nil
}

// toRequested makes the row to store, keeping from prev what the request
// leaves out: the device owner (the reference keeps it when 0 is sent),
// registry credentials, instance key and credential epoch (which the
// reference lost on every re-drive).
func (r Request) toRequested(prev store.Requested) (store.Requested, error) {
	row := store.Requested{
		Key:                   r.Key,
		AppName:               r.AppName,
		TargetState:           NormalizeTarget(r.TargetState),
		Version:               r.Version,
		PresentVersion:        r.PresentVersion,
		NewestVersion:         r.NewestVersion,
		ReleaseKey:            r.ReleaseKey,
		NewReleaseKey:         r.NewReleaseKey,
		RequestUpdate:         r.RequestUpdate,
		RequestorAccountKey:   r.RequestorAccountKey,
		DeviceOwnerAccountKey: r.DeviceOwnerAccountKey,
		AppCredEpoch:          r.AppCredEpoch,
		InstanceKey:           r.InstanceKey,
		DockerCredentials:     prev.DockerCredentials,
	}
	if row.DeviceOwnerAccountKey == 0 {
		row.DeviceOwnerAccountKey = prev.DeviceOwnerAccountKey
	}
	if row.AppCredEpoch == 0 {
		row.AppCredEpoch = prev.AppCredEpoch
	}
	if row.InstanceKey == 0 {
		row.InstanceKey = prev.InstanceKey
	}
	var err error
	fields := []struct {
		dst *json.RawMessage
		v   any
		ok  bool
	}{
		{&row.Environment, r.Environment, r.Environment != nil},
		{&row.EnvironmentTemplate, r.EnvironmentTemplate, r.EnvironmentTemplate != nil},
		{&row.Ports, r.Ports, r.Ports != nil},
		{&row.DockerCompose, r.DockerCompose, r.DockerCompose != nil},
		{&row.NewDockerCompose, r.NewDockerCompose, r.NewDockerCompose != nil},
		{&row.DockerCredentials, r.DockerCredentials, r.DockerCredentials != nil},
	}
	for _, f := range fields {
		if !f.ok {
			continue
		}
		if *f.dst, err = json.Marshal(f.v); err != nil {
			return store.Requested{}, errdefs.InvalidArgument("request for app %s: %v", keyString(r.Key), err)
		}
	}
	return row, nil
}

// target is what a worker drives an app towards: the stored generation
// and the parts of it that decide whether an in-flight step still serves.
type target struct {
	Generation uint64
	State      string
	Version    string // the version to have installed (PROD)
	Update     bool   // request_update
	Cancel     bool   // cancel_transition: stop the in-flight step regardless
}

func targetOf(r store.Requested, cancel bool) target {
	return target{Generation: r.Generation, State: r.TargetState, Version: targetVersion(r), Update: r.RequestUpdate, Cancel: cancel}
}

// targetVersion is the version a PROD app should have: newest_version,
// else present_version, else version.
func targetVersion(r store.Requested) string {
	switch {
	case r.NewestVersion != "":
		return r.NewestVersion
	case r.PresentVersion != "":
		return r.PresentVersion
	}
	return r.Version
}

// credentials reads the stored docker_credentials.
func credentials(r store.Requested) (map[string]Credential, error) {
	if len(r.DockerCredentials) == 0 {
		return nil, nil
	}
	var m map[string]Credential
	if err := json.Unmarshal(r.DockerCredentials, &m); err != nil {
		return nil, errors.New("stored docker_credentials are unreadable")
	}
	return m, nil
}

// fromSyncRecord makes the row for a PROD record of get_requested_app_states,
// keeping from prev what the record does not carry.
func fromSyncRecord(rec backend.SyncRecord, prev store.Requested) (store.Requested, error) {
	r := Request{
		Key:                   Key{AppKey: rec.AppKey, Stage: rec.Stage},
		AppName:               rec.AppName,
		TargetState:           rec.TargetState,
		RequestorAccountKey:   rec.RequestorAccountKey,
		DeviceOwnerAccountKey: rec.DeviceOwnerAccountKey,
		ReleaseKey:            rec.ReleaseKey,
		NewReleaseKey:         rec.NewReleaseKey,
		RequestUpdate:         rec.RequestUpdate,
		Version:               rec.PresentVersion, // the reference copies present_version into version
		PresentVersion:        rec.PresentVersion,
		NewestVersion:         rec.NewestVersion,
		Environment:           rec.Environment,
		EnvironmentTemplate:   rec.EnvironmentTemplate,
		Ports:                 rec.Ports,
		DockerCompose:         rec.DockerCompose,
		NewDockerCompose:      rec.NewDockerCompose,
		AppCredEpoch:          rec.AppCredEpoch,
	}
	if err := r.Validate(); err != nil {
		return store.Requested{}, fmt.Errorf("record of app %d: %w", rec.AppKey, err)
	}
	return r.toRequested(prev)
}

// sameRequest reports whether storing b over a would change nothing that
// drives the app, so a reconnect that brings the same records does not
// count as a new request. The version fields count through the version
// they select: a request carries version = newest_version, a sync record
// version = present_version.
func sameRequest(a, b store.Requested) bool {
	return a.AppName == b.AppName && a.TargetState == b.TargetState && targetVersion(a) == targetVersion(b) &&
		a.ReleaseKey == b.ReleaseKey && a.NewReleaseKey == b.NewReleaseKey && a.RequestUpdate == b.RequestUpdate &&
		a.RequestorAccountKey == b.RequestorAccountKey && a.DeviceOwnerAccountKey == b.DeviceOwnerAccountKey &&
		a.AppCredEpoch == b.AppCredEpoch && a.InstanceKey == b.InstanceKey &&
		sameJSON(a.Environment, b.Environment) && sameJSON(a.EnvironmentTemplate, b.EnvironmentTemplate) &&
		sameJSON(a.Ports, b.Ports) && sameJSON(a.DockerCompose, b.DockerCompose) &&
		sameJSON(a.NewDockerCompose, b.NewDockerCompose) && sameJSON(a.DockerCredentials, b.DockerCredentials)
}

// sameJSON compares two JSON values by meaning (key order and spacing
// aside); empty and null are the same.
func sameJSON(a, b json.RawMessage) bool {
	na, nb := canonical(a), canonical(b)
	return na == nb
}

func canonical(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "null"
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return string(raw)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return string(raw)
	}
	return string(b)
}
