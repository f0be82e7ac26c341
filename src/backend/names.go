package backend

import (
	"bytes"
	"io"
	"time"
)

// The cloud's procedures and topics, spelled as the reference (wamp-contract §4).
const (
	ProcAddTestament             = "wamp.session.add_testament"
	ProcSubscriptionMatch        = "wamp.subscription.match"
	ProcReadDeviceMetadata       = "reswarm.devices.read_device_metadata"
	ProcGetAppCredKey            = "reswarm.devices.get_app_cred_key"
	ProcUpdateDeviceStatus       = "reswarm.devices.update_device_status"
	ProcUpdateDeviceArchitecture = "reswarm.devices.update_device_architecture"
	ProcCheckPrivilege           = "reswarm.devices.check_privilege"
	ProcGetRequestedAppStates    = "reswarm.containers.get_requested_app_states"
	ProcUpdateAppOnDevice        = "reswarm.containers.update_app_on_device"
	ProcGetRegistryToken         = "reswarm.containers.get_registry_token"
	ProcExposePort               = "re.tunnel.expose_port"
	ProcClosePort                = "re.tunnel.close_port"

	// TopicTestament is where the router publishes the testament when the
	// device's session ends uncleanly.
	TopicTestament = "reswarm.api.testament_device"
)

// Deadlines the reference gives some calls; the rest use the Client's default.
const (
	timeoutTestament = 10 * time.Second
	timeoutPortSave  = 5 * time.Second
)

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }
