package devcloud

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/gammazero/nexus/v3/wamp"

	"reagent/src/errdefs"
)

// Requested is one record of get_requested_app_states (JSON tags = the
// reference's DeviceSyncResponse keys).
type Requested struct {
	AppKey                uint64           `json:"app_key"`
	AppName               string           `json:"app_name"`
	Stage                 string           `json:"stage"`
	TargetState           string           `json:"target_state"`
	CurrentState          string           `json:"current_state"`
	RequestorAccountKey   uint64           `json:"requestor_account_key"`
	DeviceOwnerAccountKey uint64           `json:"device_owner_account_key"`
	ReleaseKey            uint64           `json:"release_key"`
	NewReleaseKey         uint64           `json:"new_release_key"`
	RequestUpdate         bool             `json:"request_update"`
	PresentVersion        string           `json:"present_version"`
	NewestVersion         string           `json:"newest_version"`
	Environment           map[string]any   `json:"environment"`
	EnvironmentTemplate   map[string]any   `json:"environment_template"`
	DockerCompose         map[string]any   `json:"docker_compose"`
	NewDockerCompose      map[string]any   `json:"new_docker_compose"`
	Ports                 []map[string]any `json:"ports"`
	AppCredEpoch          uint64           `json:"app_cred_epoch"`
}

// AppReport is one state report (update_app_on_device shape (a)).
type AppReport struct {
	Seq          int
	AppKey       uint64
	Stage        string
	State        string
	UpdateStatus string
	Payload      map[string]any
	At           time.Time
}

// decodeRequested reads a stored record; nested numbers come back with
// their wire types.
func decodeRequested(s string) (Requested, error) {
	var r Requested
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	if err := dec.Decode(&r); err != nil {
		return Requested{}, err
	}
	r.normalize()
	return r, nil
}

func (r *Requested) normalize() {
	fix := func(m map[string]any) map[string]any {
		if m == nil {
			return nil
		}
		return wireNumbers(m).(map[string]any)
	}
	r.Environment = fix(r.Environment)
	r.EnvironmentTemplate = fix(r.EnvironmentTemplate)
	r.DockerCompose = fix(r.DockerCompose)
	r.NewDockerCompose = fix(r.NewDockerCompose)
	for i := range r.Ports {
		r.Ports[i] = fix(r.Ports[i])
	}
}

// stateFields are the keys of a requested state that the sync record and
// the request_app_state kwargs both carry, with the same names and values.
func (r Requested) stateFields() wamp.Dict {
	return wamp.Dict{
		"app_key":                  r.AppKey,
		"app_name":                 r.AppName,
		"stage":                    r.Stage,
		"target_state":             r.TargetState,
		"current_state":            r.CurrentState,
		"requestor_account_key":    r.RequestorAccountKey,
		"device_owner_account_key": r.DeviceOwnerAccountKey,
		"release_key":              r.ReleaseKey,
		"new_release_key":          r.NewReleaseKey,
		"request_update":           r.RequestUpdate,
		"present_version":          r.PresentVersion,
		"newest_version":           r.NewestVersion,
		"app_cred_epoch":           r.AppCredEpoch,
	}
}

// syncRecord is the record get_requested_app_states sends: the Requested
// keys (maps and ports null when unset) plus the device keys the reference
// declares (and ignores).
func (r Requested) syncRecord(d device) wamp.Dict {
	rec := r.stateFields()
	rec["environment"] = orNil(r.Environment)
	rec["environment_template"] = orNil(r.EnvironmentTemplate)
	rec["docker_compose"] = orNil(r.DockerCompose)
	rec["new_docker_compose"] = orNil(r.NewDockerCompose)
	rec["ports"] = portsList(r.Ports)
	rec["device_key"] = uint64(d.DeviceKey)
	rec["swarm_key"] = uint64(d.SwarmKey)
	rec["serial_number"] = d.Serial
	return rec
}

// RequestKwargs are the request_app_state kwargs the cloud sends for r
// (apps-lifecycle §1.3): version is the newest version; maps and ports are
// left out when empty, because a present docker_compose makes a compose app.
func RequestKwargs(r Requested) wamp.Dict {
	kw := r.stateFields()
	kw["version"] = r.NewestVersion
	for k, m := range map[string]map[string]any{
		"environment":          r.Environment,
		"environment_template": r.EnvironmentTemplate,
		"docker_compose":       r.DockerCompose,
		"new_docker_compose":   r.NewDockerCompose,
	} {
		if m != nil {
			kw[k] = m
		}
	}
	if r.Ports != nil {
		kw["ports"] = portsList(r.Ports)
	}
	return kw
}

func orNil(m map[string]any) any {
	if m == nil {
		return nil
	}
	return m
}

func portsList(ports []map[string]any) any {
	if ports == nil {
		return nil
	}
	l := make(wamp.List, len(ports))
	for i, p := range ports {
		l[i] = p
	}
	return l
}

func validateRequested(r Requested) error {
	switch {
	case r.AppKey == 0:
		return errdefs.InvalidArgument("app_key must not be 0")
	case r.Stage != "DEV" && r.Stage != "PROD":
		return errdefs.InvalidArgument("stage must be DEV or PROD, got %q", r.Stage)
	case r.AppName == "":
		return errdefs.InvalidArgument("app_name must not be empty")
	case r.TargetState == "":
		return errdefs.InvalidArgument("target_state must not be empty")
	}
	return nil
}

// SetRequested stores what get_requested_app_states returns for the app.
// An empty current_state is filled with the app's latest reported state
// (REMOVED if it never reported), as the real backend knows it.
func (c *Cloud) SetRequested(serial string, r Requested) error {
	_, err := c.setRequested(serial, r)
	return err
}

func (c *Cloud) setRequested(serial string, r Requested) (Requested, error) {
	if err := validateRequested(r); err != nil {
		return Requested{}, err
	}
	if _, ok, err := c.db.device(serial); err != nil {
		return Requested{}, err
	} else if !ok {
		return Requested{}, fmt.Errorf("set requested state on %s: %w", serial, errUnknownDevice)
	}
	c.reqMu.Lock()
	defer c.reqMu.Unlock()
	if r.CurrentState == "" {
		r.CurrentState = "REMOVED"
		if last, err := c.db.appReports(serial, &AppReport{AppKey: r.AppKey, Stage: r.Stage}); err == nil && len(last) == 1 {
			r.CurrentState = last[0].State
		}
	}
	// Store a copy with wire-typed numbers, so the record reads back as it
	// will go out.
	stored, err := decodeRequested(encodeJSON(r))
	if err != nil {
		return Requested{}, fmt.Errorf("set requested state: %w", err)
	}
	if err := c.db.setRequested(serial, stored, encodeJSON(stored)); err != nil {
		return Requested{}, err
	}
	c.chg.notify()
	return stored, nil
}

// DeleteRequested removes the app from get_requested_app_states.
func (c *Cloud) DeleteRequested(serial string, appKey uint64, stage string) error {
	c.reqMu.Lock()
	ok, err := c.db.deleteRequested(serial, appKey, stage)
	c.reqMu.Unlock()
	if err != nil {
		return err
	}
	if !ok {
		return errdefs.NotFound("no requested state for app %d (%s) on %s", appKey, stage, serial)
	}
	c.chg.notify()
	return nil
}

// RequestedApps returns the stored requested states of the device.
func (c *Cloud) RequestedApps(serial string) []Requested {
	recs, err := c.db.requestedRecords(serial)
	if err != nil {
		c.log.Error().Err(err).Msg("requested apps")
	}
	out := make([]Requested, 0, len(recs))
	for _, s := range recs {
		r, err := decodeRequested(s)
		if err != nil {
			c.log.Error().Err(err).Str("serial", serial).Msg("stored requested state unreadable")
			continue
		}
		out = append(out, r)
	}
	return out
}

// RequestApp is SetRequested plus a call of re.mgmt.<serial>.request_app_state
// as system with RequestKwargs(r); extra kwargs (cancel_transition,
// docker_credentials, version, …) are added and override.
func (c *Cloud) RequestApp(ctx context.Context, serial string, r Requested, extra wamp.Dict) error {
	stored, err := c.setRequested(serial, r)
	if err != nil {
		return err
	}
	kw := RequestKwargs(stored)
	maps.Copy(kw, extra)
	if _, err := c.CallDevice(ctx, SystemAuthID, serial, "request_app_state", nil, kw); err != nil {
		return fmt.Errorf("request app %d (%s) %s on %s: %w", r.AppKey, r.Stage, r.TargetState, serial, err)
	}
	return nil
}

// AppReports returns the device's state reports in arrival order.
func (c *Cloud) AppReports(serial string) []AppReport {
	out, err := c.db.appReports(serial, nil)
	if err != nil {
		c.log.Error().Err(err).Msg("app reports")
	}
	return out
}

// latestReport is the newest state report of one app.
func (c *Cloud) latestReport(serial string, appKey uint64, stage string) (AppReport, bool) {
	out, err := c.db.appReports(serial, &AppReport{AppKey: appKey, Stage: stage})
	if err != nil || len(out) == 0 {
		return AppReport{}, false
	}
	return out[0], true
}

// AwaitAppState waits until the latest state report of the app is state.
func (c *Cloud) AwaitAppState(ctx context.Context, serial string, appKey uint64, stage, state string) error {
	return c.await(ctx, func() bool {
		r, ok := c.latestReport(serial, appKey, stage)
		return ok && r.State == state
	}, func() string {
		r, _ := c.latestReport(serial, appKey, stage)
		return fmt.Sprintf("app %d (%s) on %s state %s (latest %q)", appKey, stage, serial, state, r.State)
	})
}

// PortReports returns the port saves (update_app_on_device shape (b)) of
// the device in arrival order.
func (c *Cloud) PortReports(serial string) []map[string]any {
	out, err := c.db.portReports(serial)
	if err != nil {
		c.log.Error().Err(err).Msg("port reports")
	}
	return out
}
