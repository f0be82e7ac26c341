package api

import (
	"sort"
	"strings"

	"reagent/src/wamp"
)

// Names of the device procedures, re.mgmt.<serial>.<name>, spelled as the
// reference (wamp-contract §3.2). Every one is in the privilege table
// below, including those later issues implement.
const (
	ProcRequestAppState           = "request_app_state"
	ProcWriteData                 = "write_data"
	ProcDeviceHandshake           = "device_handshake"
	ProcGetImages                 = "get_images"
	ProcPruneImages               = "prune_images"
	ProcRequestTerminalSession    = "request_terminal_session"
	ProcStartTerminalSession      = "start_terminal_session"
	ProcStopTerminalSession       = "stop_terminal_session"
	ProcListWifiNetworks          = "list_wifi_networks"
	ProcAddWifiConfiguration      = "add_wifi_configuration"
	ProcRemoveWifiConfiguration   = "remove_wifi_configuration"
	ProcScanWifiNetworks          = "scan_wifi_networks"
	ProcSelectWifiNetwork         = "select_wifi_network"
	ProcRestartWifi               = "restart_wifi"
	ProcGetIPv4Addresses          = "get_ipv4_addresses"
	ProcListEthernetDevices       = "list_ethernet_devices"
	ProcUpdateIPv4Config          = "update_ipv4_config"
	ProcSystemReboot              = "system_reboot"
	ProcSystemShutdown            = "system_shutdown"
	ProcSystemRestartAgent        = "system_restart_agent"
	ProcUpdateAgent               = "update_agent"
	ProcGetAgentMetadata          = "get_agent_metadata"
	ProcListContainers            = "list_containers"
	ProcGetNetworkMetadata        = "get_network_metadata"
	ProcGetAppLogHistory          = "get_app_log_history"
	ProcQueryAppLogs              = "query_app_logs"
	ProcQueryDeviceLogs           = "query_device_logs"
	ProcGetTunnelState            = "get_tunnel_state"
	ProcGetOSRelease              = "get_os_release"
	ProcDownloadOSUpdate          = "download_os_update"
	ProcInstallOSUpdate           = "install_os_update"
	ProcExecuteCmd                = "execute_cmd"
	ProcInitDeviceTerminal        = "init_device_terminal"
	ProcGetStorageData            = "get_storage_data"
	ProcWampConnectionEstablished = "wamp_connection_established" // registered by src/wamp itself
)

// Prefixes of the procedures registered per session (wamp-contract §3.3):
// re.mgmt.<serial>.term_resize.<uuid> and …term_resize.<container>.<uuid>.
const PrefixTermResize = "term_resize."

// rule is how the privilege of one procedure is decided.
type rule struct {
	static wamp.Privilege // "" when dynamic
	// dynamic: decided per call by the privilege func the procedure is
	// registered with (addDynamic), from state only its handlers know.
	dynamic bool
}

// privileges is the privilege of every device procedure: the reference's
// where it had a check, and where it had none (DESIGN §4) the one the
// damage calls for. Deny by default: a procedure missing here cannot be
// registered through this package. Read-only.
var privileges = map[string]rule{
	ProcRequestAppState:           {dynamic: true}, // reference: none since v0.17.4; from the app's local state
	ProcWriteData:                 {static: wamp.Develop},
	ProcDeviceHandshake:           {static: wamp.Public}, // reveals the serial and the clock only
	ProcGetImages:                 {static: wamp.Read},
	ProcPruneImages:               {static: wamp.Maintain},
	ProcRequestTerminalSession:    {static: wamp.Develop},
	ProcStartTerminalSession:      {static: wamp.Develop},
	ProcStopTerminalSession:       {static: wamp.Develop},
	ProcListWifiNetworks:          {static: wamp.Read},
	ProcAddWifiConfiguration:      {static: wamp.Network},
	ProcRemoveWifiConfiguration:   {static: wamp.Network},
	ProcScanWifiNetworks:          {static: wamp.Network}, // reference: none (a TODO)
	ProcSelectWifiNetwork:         {static: wamp.Network},
	ProcRestartWifi:               {static: wamp.Network},
	ProcGetIPv4Addresses:          {static: wamp.Read}, // reference: none
	ProcListEthernetDevices:       {static: wamp.Read},
	ProcUpdateIPv4Config:          {static: wamp.Network},
	ProcSystemReboot:              {static: wamp.Maintain},
	ProcSystemShutdown:            {static: wamp.Maintain},
	ProcSystemRestartAgent:        {static: wamp.Maintain},
	ProcUpdateAgent:               {static: wamp.Maintain},
	ProcGetAgentMetadata:          {static: wamp.Read},
	ProcListContainers:            {static: wamp.Read},
	ProcGetNetworkMetadata:        {static: wamp.Read}, // reference: none
	ProcGetAppLogHistory:          {static: wamp.Read},
	ProcQueryAppLogs:              {static: wamp.Read},
	ProcQueryDeviceLogs:           {static: wamp.Read},
	ProcGetTunnelState:            {static: wamp.Read}, // reference: none
	ProcGetOSRelease:              {static: wamp.Read},
	ProcDownloadOSUpdate:          {static: wamp.Maintain},
	ProcInstallOSUpdate:           {static: wamp.Maintain},
	ProcExecuteCmd:                {static: wamp.Maintain}, // reference: none — remote code execution
	ProcInitDeviceTerminal:        {static: wamp.Develop},  // reference: none — a root shell
	ProcGetStorageData:            {static: wamp.Read},
	ProcWampConnectionEstablished: {static: wamp.Public}, // answers "Hello :-)"
}

// prefixPrivileges covers the per-session procedures; the reference
// checked none (the URI was the only secret).
var prefixPrivileges = map[string]wamp.Privilege{
	PrefixTermResize: wamp.Develop,
}

// PrivilegeOf is the privilege of a procedure name: the static one,
// wamp.Dynamic when it depends on the call, false when the name is unknown
// (and so must not be served).
func PrivilegeOf(name string) (wamp.Privilege, bool) {
	if r, ok := privileges[name]; ok {
		if r.dynamic {
			return wamp.Dynamic, true
		}
		return r.static, true
	}
	for p, priv := range prefixPrivileges {
		if strings.HasPrefix(name, p) && len(name) > len(p) {
			return priv, true
		}
	}
	return "", false
}

// Procedures lists the names of the table, sorted.
func Procedures() []string {
	out := make([]string, 0, len(privileges))
	for n := range privileges {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
