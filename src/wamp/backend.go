package wamp

import "context"

// Backend is the part of the cloud's procedures the link itself needs on
// every connect, for the heartbeat and for privilege checks. src/backend
// has the typed calls; the agent adapts them to this interface, because
// src/backend is built on top of this package.
type Backend interface {
	// AddTestament asks the router to publish the device's testament when
	// the session sessionID ends uncleanly.
	AddTestament(ctx context.Context, sessionID uint64) error
	// ReadDeviceMetadata returns the cloud's view of the device's names and swarm.
	ReadDeviceMetadata(ctx context.Context) (DeviceMetadata, error)
	// GetAppCredKey returns the key app credentials are derived from.
	GetAppCredKey(ctx context.Context) (string, error)
	// UpdateDeviceStatus reports the status and answers the cloud's base
	// URL ("" when it sent none).
	UpdateDeviceStatus(ctx context.Context, st DeviceStatus) (baseURL string, err error)
	// UpdateDeviceArchitecture reports architecture, OS and agent version.
	UpdateDeviceArchitecture(ctx context.Context) error
	// CheckPrivilege asks whether account holds privilege p on this device.
	CheckPrivilege(ctx context.Context, account uint64, p Privilege) (bool, error)
	// SetSwarmKey makes later payloads carry a swarm key the cloud changed.
	SetSwarmKey(swarmKey int64)
}

// DeviceMetadata is the cloud's record of the device (read_device_metadata).
type DeviceMetadata struct {
	Name      string
	SwarmName string
	OwnerName string
	SwarmKey  int64
}

// Device statuses the agent reports.
const (
	StatusConfiguring = "CONFIGURING"
	StatusConnected   = "CONNECTED"
)

// DeviceStatus is one update_device_status report.
type DeviceStatus struct {
	Status        string
	SessionID     uint64
	Stats         any // the stats payload (system.StatsPayload); nil when it could not be read
	TunnelCapable bool
}

// StatsFunc reads the resource stats for the heartbeat.
type StatsFunc func(ctx context.Context) (any, error)
