package devcloud

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gammazero/nexus/v3/wamp"

	"reagent/src/errdefs"
)

// devcloud's own procedures for the Studio CLI. The real cloud has a web
// app instead; these are not part of the device wire contract.
const (
	studioPrefix           = "devcloud.studio."
	ProcStudioDevices      = studioPrefix + "devices"       // [] → [[device, …]]
	ProcStudioApps         = studioPrefix + "apps"          // [serial] → [[app, …]]
	ProcStudioSetRequested = studioPrefix + "set_requested" // [serial, Requested] → [request_app_state kwargs]
)

func isStudioProc(name string) bool { return strings.HasPrefix(name, studioPrefix) }

// studioAllowed: system and router-local sessions may do anything, a
// Studio user what one of privs allows.
func (c *Cloud) studioAllowed(cl call, privs ...string) error {
	switch cl.role {
	case RoleSystem, "trusted":
		return nil
	case RoleUser:
		for _, p := range privs {
			if c.ids.allowed(cl.authid, p) {
				return nil
			}
		}
	}
	return errdefs.NotAuthorized("%s needs privilege %s", cl.proc, strings.Join(privs, " or "))
}

// DeviceSummary is one row of `devcloud studio devices`.
type DeviceSummary struct {
	Serial        string         `json:"serial"`
	AuthID        string         `json:"authid"`
	Name          string         `json:"name"`
	SwarmName     string         `json:"swarm_name"`
	Status        string         `json:"status"`         // "" before the first status
	StatusAt      time.Time      `json:"status_at"`      // zero before the first status
	LastHeartbeat time.Time      `json:"last_heartbeat"` // last update_device_status
	Stats         map[string]any `json:"stats"`
	Architecture  map[string]any `json:"architecture"`
}

func (c *Cloud) studioDevices(_ context.Context, cl call) (wamp.List, error) {
	if err := c.studioAllowed(cl, "READ"); err != nil {
		return nil, err
	}
	devs, err := c.db.devices()
	if err != nil {
		return nil, err
	}
	out := wamp.List{}
	for _, d := range devs {
		s := DeviceSummary{
			Serial: d.Serial, AuthID: principalID(d), Name: d.Name, SwarmName: d.SwarmName,
		}
		s.Architecture, _ = decodeJSON(d.Arch).(map[string]any)
		hist, err := c.db.statuses(d.Serial, false)
		if err != nil {
			return nil, err
		}
		if n := len(hist); n > 0 {
			s.Status, s.StatusAt = hist[n-1].Status, hist[n-1].At
		}
		for i := len(hist) - 1; i >= 0; i-- {
			if hist[i].Status != "DISCONNECTED" {
				s.LastHeartbeat, s.Stats = hist[i].At, hist[i].Stats
				break
			}
		}
		out = append(out, toWire(s))
	}
	return wamp.List{out}, nil
}

func principalID(d device) string { return fmt.Sprintf("%d-%d", d.SwarmKey, d.DeviceKey) }

// AppSummary is one row of `devcloud studio apps SERIAL`: requested vs
// reported state.
type AppSummary struct {
	AppKey        uint64    `json:"app_key"`
	AppName       string    `json:"app_name"`
	Stage         string    `json:"stage"`
	TargetState   string    `json:"target_state"` // "" when nothing is requested
	Version       string    `json:"version"`      // newest_version requested
	ReportedState string    `json:"reported_state"`
	ReportedAt    time.Time `json:"reported_at"`
	UpdateStatus  string    `json:"update_status"`
	Reports       int       `json:"reports"`
}

func (c *Cloud) studioApps(_ context.Context, cl call) (wamp.List, error) {
	if err := c.studioAllowed(cl, "READ"); err != nil {
		return nil, err
	}
	serial, _ := wamp.AsString(argAt(cl.args, 0))
	if _, ok, err := c.db.device(serial); err != nil {
		return nil, err
	} else if !ok {
		return nil, errdefs.NotFound("no device %q", serial)
	}
	type key struct {
		k uint64
		s string
	}
	rows := map[key]*AppSummary{}
	var order []key
	get := func(k key) *AppSummary {
		if a, ok := rows[k]; ok {
			return a
		}
		a := &AppSummary{AppKey: k.k, Stage: k.s}
		rows[k] = a
		order = append(order, k)
		return a
	}
	for _, r := range c.RequestedApps(serial) {
		a := get(key{r.AppKey, r.Stage})
		a.AppName, a.TargetState, a.Version = r.AppName, r.TargetState, r.NewestVersion
	}
	for _, r := range c.AppReports(serial) {
		a := get(key{r.AppKey, r.Stage})
		a.ReportedState, a.ReportedAt, a.UpdateStatus = r.State, r.At, r.UpdateStatus
		a.Reports++
	}
	slices.SortFunc(order, func(a, b key) int {
		if a.k != b.k {
			if a.k < b.k {
				return -1
			}
			return 1
		}
		return strings.Compare(a.s, b.s)
	})
	out := wamp.List{}
	for _, k := range order {
		out = append(out, toWire(*rows[k]))
	}
	return wamp.List{out}, nil
}

func (c *Cloud) studioSetRequested(_ context.Context, cl call) (wamp.List, error) {
	if err := c.studioAllowed(cl, "INSTALL", "OPERATE"); err != nil {
		return nil, err
	}
	serial, _ := wamp.AsString(argAt(cl.args, 0))
	rec, ok := asDict(argAt(cl.args, 1))
	if serial == "" || !ok {
		return nil, errdefs.InvalidArgument("%s: want [serial, record]", cl.proc)
	}
	var r Requested
	if err := json.Unmarshal([]byte(encodeJSON(rec)), &r); err != nil {
		return nil, errdefs.InvalidArgument("%s: record: %v", cl.proc, err)
	}
	stored, err := c.setRequested(serial, r)
	if err != nil {
		return nil, err
	}
	return wamp.List{RequestKwargs(stored)}, nil
}

func argAt(l wamp.List, i int) any {
	if i < len(l) {
		return l[i]
	}
	return nil
}

// toWire turns a summary struct into a dict with its JSON names.
func toWire(v any) wamp.Dict {
	m, _ := decodeJSON(encodeJSON(v)).(map[string]any)
	return m
}
