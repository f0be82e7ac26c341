// Package api holds the device procedures, re.mgmt.<serial>.<name>, one
// file per family. Handlers are thin: decode and validate the arguments
// (bad input → errdefs.ErrInvalidArgument with the reference's texts),
// make one call into a domain package, encode the answer with the
// reference's field names and shapes (wamp-contract §3.2). The privilege
// of every procedure is in privileges.go. The package owns no state.
package api

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"reagent/src/config"
	"reagent/src/docker"
	"reagent/src/system"
	"reagent/src/wamp"
)

// Registrar is where procedures are registered: the wamp.Session in the
// agent, a recorder in tests.
type Registrar interface {
	Register(name string, p wamp.Privilege, h wamp.Handler)
	RegisterDynamic(name string, p wamp.PrivilegeFunc, h wamp.Handler)
}

// DockerAPI is what the procedures need from the engine (*docker.Client).
type DockerAPI interface {
	ListContainersRaw(ctx context.Context) ([]map[string]any, error)
	ListImages(ctx context.Context) ([]docker.Image, error)
	PruneImages(ctx context.Context, all bool) (docker.PruneReport, error)
}

// Deps are the parts the procedures act on.
type Deps struct {
	Serial string        // "" → Flock.SerialNumber
	Flock  *config.Flock // required
	Flags  *config.Flags // AppsDir for the stats; nil → no apps dir
	Docker DockerAPI     // nil → the docker procedures answer "unavailable"
	// Runner runs reboot, poweroff and systemctl. nil → system.ExecRunner.
	// Tests must always pass their own.
	Runner system.Runner
	// Publish sends a PUBLISH (execute_cmd output). nil → output dropped.
	Publish func(topic string, args []any) error
	Log     zerolog.Logger
	// Stats measures the device (get_storage_data); share the heartbeat's
	// system.Sampler. nil → a Sampler of Flags.AppsDir.
	Stats func(ctx context.Context) (system.StatsPayload, error)
	// RestartAgent ends the agent cleanly so its supervisor starts it
	// again: system_restart_agent where systemctl is missing or fails.
	RestartAgent  func()
	TunnelCapable func() bool // nil → false
	// Logs serves the log procedures (get_app_log_history, query_app_logs,
	// query_device_logs).
	Logs LogDeps
	// Transfers receives write_data uploads (*transfer.Manager). nil →
	// write_data is not registered.
	Transfers Transfers
	// Apps is the app reconciler behind request_app_state
	// (*apps.Manager). nil → request_app_state is not registered.
	Apps AppStates

	// Knobs for tests; zero takes the default.
	PowerDelay      time.Duration // system.PowerDelay
	ExecOutputDelay time.Duration // system.DefaultOutputDelay
}

// Register registers every procedure this package implements on r. It
// panics on a procedure missing from the privilege table (a programming
// error the tests catch), never on input.
func Register(r Registrar, d Deps) {
	h, err := newHandlers(d)
	if err != nil {
		panic(fmt.Sprintf("api.Register: %v", err))
	}
	h.register(r)
}

// handlers holds the dependencies of every handler. Function fields are
// the domain calls, replaceable in this package's tests.
type handlers struct {
	d      Deps
	serial string
	log    zerolog.Logger
	power  *system.Power
	stats  func(ctx context.Context) (system.StatsPayload, error)

	now        func() time.Time
	detailedOS func() string
	osRelease  func() (system.OSReleases, bool, error)
	addrs      func() ([]system.IfaceAddr, error)
	execute    func(ctx context.Context, c system.Command) (system.CommandResult, error)
}

func newHandlers(d Deps) (*handlers, error) {
	if d.Flock == nil {
		return nil, fmt.Errorf("Deps.Flock is required")
	}
	serial := d.Serial
	if serial == "" {
		serial = d.Flock.SerialNumber
	}
	runner := d.Runner
	if runner == nil {
		runner = system.ExecRunner{}
	}
	log := d.Log.With().Str("component", "api").Logger()
	power, err := system.NewPower(system.PowerOptions{Runner: runner, Exit: d.RestartAgent, Log: log, Delay: d.PowerDelay})
	if err != nil {
		return nil, err
	}
	stats := d.Stats
	if stats == nil {
		appsDir := ""
		if d.Flags != nil {
			appsDir = d.Flags.AppsDir
		}
		stats = system.NewSampler(appsDir).Stats
	}
	return &handlers{
		d: d, serial: serial, log: log, power: power, stats: stats,
		now:        time.Now,
		detailedOS: system.DetailedOS,
		osRelease:  system.OSRelease,
		addrs:      system.InterfaceAddrs,
		execute:    system.ExecuteCommand,
	}, nil
}

func (h *handlers) register(r Registrar) {
	h.add(r, ProcDeviceHandshake, h.deviceHandshake)
	h.add(r, ProcGetAgentMetadata, h.getAgentMetadata)
	h.add(r, ProcGetStorageData, h.getStorageData)
	h.add(r, ProcGetOSRelease, h.getOSRelease)
	h.add(r, ProcSystemReboot, h.powerHandler(system.Reboot))
	h.add(r, ProcSystemShutdown, h.powerHandler(system.Shutdown))
	h.add(r, ProcSystemRestartAgent, h.powerHandler(system.RestartAgent))
	h.add(r, ProcGetNetworkMetadata, h.getNetworkMetadata)
	h.add(r, ProcGetIPv4Addresses, h.getIPv4Addresses)
	h.add(r, ProcListContainers, h.listContainers)
	h.add(r, ProcGetImages, h.getImages)
	h.add(r, ProcPruneImages, h.pruneImages)
	h.add(r, ProcExecuteCmd, h.executeCmd)
	h.registerLogs(r)
	h.registerTransfer(r)
	h.registerAppState(r)
}

// add registers name with its privilege from the table.
func (h *handlers) add(r Registrar, name string, fn wamp.Handler) {
	ru, ok := privileges[name]
	switch {
	case !ok:
		panic("api: procedure " + name + " has no entry in the privilege table")
	case ru.dynamic:
		panic("api: procedure " + name + " has a dynamic privilege: register it with addDynamic")
	default:
		r.Register(name, ru.static, fn)
	}
}

// addDynamic registers name, whose table entry says its privilege is
// decided per call, with the func that decides it.
func (h *handlers) addDynamic(r Registrar, name string, p wamp.PrivilegeFunc, fn wamp.Handler) {
	if ru, ok := privileges[name]; !ok || !ru.dynamic {
		panic("api: procedure " + name + " has no dynamic entry in the privilege table")
	}
	r.RegisterDynamic(name, p, fn)
}

// args is the answer with positional args only.
func args(a ...any) wamp.Result { return wamp.Result{Args: a} }
