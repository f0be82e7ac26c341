package backend

import (
	"context"

	"reagent/src/wamp"
)

// ForSession adapts c to what the WAMP session calls on every connect
// (wamp.Backend); osName gives the OS reported with the architecture.
func (c *Client) ForSession(osName func() string) wamp.Backend {
	return sessionBackend{be: c, osName: osName}
}

type sessionBackend struct {
	be     *Client
	osName func() string
}

func (b sessionBackend) AddTestament(ctx context.Context, sessionID uint64) error {
	return b.be.AddTestament(ctx, sessionID)
}

func (b sessionBackend) ReadDeviceMetadata(ctx context.Context) (wamp.DeviceMetadata, error) {
	md, err := b.be.ReadDeviceMetadata(ctx)
	if err != nil {
		return wamp.DeviceMetadata{}, err
	}
	return wamp.DeviceMetadata{Name: md.DeviceName, SwarmName: md.SwarmName, OwnerName: md.OwnerName, SwarmKey: md.SwarmKey}, nil
}

func (b sessionBackend) GetAppCredKey(ctx context.Context) (string, error) {
	return b.be.GetAppCredKey(ctx)
}

func (b sessionBackend) UpdateDeviceStatus(ctx context.Context, st wamp.DeviceStatus) (string, error) {
	ans, err := b.be.UpdateDeviceStatus(ctx, st.Status, st.SessionID, st.Stats, st.TunnelCapable)
	return ans.ReswarmBaseURL, err
}

func (b sessionBackend) UpdateDeviceArchitecture(ctx context.Context) error {
	return b.be.UpdateDeviceArchitecture(ctx, b.osName())
}

func (b sessionBackend) CheckPrivilege(ctx context.Context, account uint64, p wamp.Privilege) (bool, error) {
	return b.be.CheckPrivilege(ctx, account, string(p))
}

func (b sessionBackend) SetSwarmKey(k int64) { b.be.SetSwarmKey(k) }
