package api

import (
	"context"
	"fmt"

	"reagent/src/release"
	"reagent/src/system"
	"reagent/src/wamp"
)

// AgentMetadata is the answer of get_agent_metadata, `[AgentMetadata]`.
// The reference added latestVersion, latestTunnelVersion,
// latestAgentVersion and hasLatest when an HTTP version lookup succeeded;
// that lookup belongs to self-update and is left out here.
//
//	{"os": "linux debian 12 6.1.0-28-amd64", "arch": "arm", "variant": "v7", "version": "0.1.0",
//	 "serialNumber": "c6aa09d3-…", "canUpdate": true, "OSVersion": "linux debian 12 6.1.0-28-amd64",
//	 "tunnelCapable": true}
type AgentMetadata struct {
	OS            string `json:"os"`
	Arch          string `json:"arch"`
	Variant       string `json:"variant"`
	Version       string `json:"version"`
	SerialNumber  string `json:"serialNumber"`
	CanUpdate     bool   `json:"canUpdate"`
	OSVersion     string `json:"OSVersion"`
	TunnelCapable bool   `json:"tunnelCapable"`
}

func (h *handlers) getAgentMetadata(context.Context, *wamp.Call) (wamp.Result, error) {
	arch, variant := release.SplitArch()
	detailed := h.detailedOS()
	return args(AgentMetadata{
		OS: detailed, Arch: arch, Variant: variant, Version: release.Version(),
		SerialNumber: h.serial, CanUpdate: true, OSVersion: detailed,
		TunnelCapable: h.d.TunnelCapable != nil && h.d.TunnelCapable(),
	}), nil
}

// get_storage_data answers `[system.StatsPayload]`, the heartbeat's stats.
func (h *handlers) getStorageData(ctx context.Context, _ *wamp.Call) (wamp.Result, error) {
	p, err := h.stats(ctx)
	if err != nil {
		return wamp.Result{}, fmt.Errorf("measure the device: %w", err)
	}
	return args(p), nil
}

// get_os_release answers `[system.OSReleases]`, or no args on a device
// without the ReswarmOS release files.
func (h *handlers) getOSRelease(context.Context, *wamp.Call) (wamp.Result, error) {
	r, ok, err := h.osRelease()
	if err != nil {
		return wamp.Result{}, err
	}
	if !ok {
		return wamp.Result{}, nil
	}
	return args(r), nil
}

// powerHandler answers at once with no args; the operation follows
// system.PowerDelay later, so the answer still reaches the caller.
func (h *handlers) powerHandler(op system.PowerOp) wamp.Handler {
	return func(_ context.Context, c *wamp.Call) (wamp.Result, error) {
		h.log.Info().Str("operation", string(op)).Str("caller", c.Caller).Uint64("account", c.Account).
			Msg("system operation requested")
		if err := h.power.Schedule(op); err != nil {
			return wamp.Result{}, err
		}
		return wamp.Result{}, nil
	}
}
