package apps

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"reagent/src/docker"
)

// Everything about how an app's container is set up lives here (the
// reference's table, apps-lifecycle §3.7), so it can be tightened in one
// place.

// privilegeLevel is a rung of the privilege ladder. Apps run with the most
// privileged settings the engine accepts; engines that refuse privileged
// containers (rootless, inside LXC, sandboxed VMs: the bounding set lacks a
// capability and runc fails with "unable to apply caps") get the next rung.
type privilegeLevel int

const (
	// levelPrivileged: the reference's settings — privileged, every
	// capability, the host's /dev.
	levelPrivileged privilegeLevel = iota
	// levelCapabilities: not privileged; every capability in the agent's
	// own bounding set (so none the engine cannot grant), the host's /dev.
	levelCapabilities
	// levelPlain: the engine's defaults; no extra capabilities, no devices.
	levelPlain
)

// metaPrivilegeLevel is where the level an engine accepts is remembered,
// so later containers start at it.
const metaPrivilegeLevel = "docker.privilege_level"

func (l privilegeLevel) describe(caps int) string {
	switch l {
	case levelPrivileged:
		return "privileged mode, all capabilities and the host's devices"
	case levelCapabilities:
		return fmt.Sprintf("the %d capabilities the engine allows and the host's devices, not privileged", caps)
	}
	return "no extra capabilities and no host devices"
}

// Optional host paths mounted into every app when present.
var optionalMounts = []string{"/sys/bus/w1/devices", "/usr/local/cuda"}

// specInput is what an app's container is made of.
type specInput struct {
	Key     Key
	AppName string
	Serial  string // the device's, for LabelDevice
	Image   string
	Env     []string
	DataDir string
	Shared  string
	Ports   []hostPort
	Level   privilegeLevel
	Caps    []string // capability names for levelCapabilities
	Nvidia  bool
	Stop    time.Duration // grace between SIGTERM and SIGKILL
	Exists  func(path string) bool
}

// containerSpec builds the app's container: Tty (DEV also stdin), restart
// policy "no" (the agent restarts, with backoff), the default bridge,
// host.docker.internal, /shared and /data plus the optional host mounts,
// the managed host ports, json-file rotation 10m×3, the nvidia runtime when
// a GPU is there, our labels, and the privileges of the level.
func containerSpec(in specInput) docker.ContainerSpec {
	spec := docker.ContainerSpec{
		Name:        ContainerName(in.Key, in.AppName),
		Image:       in.Image,
		Env:         in.Env,
		Labels:      appLabels(in.Key, in.AppName, in.Serial),
		Tty:         true,
		OpenStdin:   in.Key.Stage == StageDev,
		NetworkMode: "bridge",
		ExtraHosts:  []string{"host.docker.internal:host-gateway"},
		Mounts: []docker.Mount{
			{Source: in.Shared, Target: "/shared"},
			{Source: in.DataDir, Target: "/data"},
		},
		StopTimeout: in.Stop,
		LogMaxSize:  "10m",
		LogMaxFiles: 3,
	}
	for _, p := range optionalMounts {
		if in.Exists != nil && in.Exists(p) {
			spec.Mounts = append(spec.Mounts, docker.Mount{Source: p, Target: p})
		}
	}
	for _, p := range in.Ports {
		spec.Ports = append(spec.Ports, docker.PortBinding{ContainerPort: p.Declared, Protocol: p.Protocol, HostIP: "0.0.0.0", HostPort: p.Host})
	}
	if in.Nvidia {
		spec.Runtime = "nvidia"
	}
	applyLevel(&spec, in.Level, in.Caps)
	return spec
}

// applyLevel sets the privileges of a rung of the ladder.
func applyLevel(spec *docker.ContainerSpec, l privilegeLevel, caps []string) {
	devices := []docker.Device{{PathOnHost: "/dev", PathInContainer: "/dev", Permissions: "rwm"}}
	switch l {
	case levelPrivileged:
		spec.Privileged = true
		spec.CapAdd = []string{"ALL"}
		spec.Devices = devices
	case levelCapabilities:
		spec.CapAdd = append([]string(nil), caps...)
		spec.Devices = devices
	}
}

// capNames are the Linux capabilities by number, up to CAP_AUDIT_READ (37):
// the ones every engine back to API 1.41 knows. Docker 20.10 refuses the
// whole container for a name it does not know ("invalid CapAdd: unknown
// capability: CAP_BPF"), so PERFMON, BPF and CHECKPOINT_RESTORE are left
// out; on newer engines level 0 grants them anyway.
var capNames = []string{
	"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
	"LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
	"SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
	"SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
	"MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ",
}

// capsFromMask names the capabilities of a CapBnd mask, CAP_ prefixed, in
// number order; bits beyond the known names are ignored.
func capsFromMask(mask uint64) []string {
	var out []string
	for i, n := range capNames {
		if mask&(1<<uint(i)) != 0 {
			out = append(out, "CAP_"+n)
		}
	}
	return out
}

// boundingCaps reads the capability bounding set of the agent's own
// process from /proc/self/status.
func boundingCaps() ([]string, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return nil, fmt.Errorf("read capability bounding set: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapBnd:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return nil, fmt.Errorf("parse CapBnd %q: %w", v, err)
			}
			return capsFromMask(mask), nil
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read capability bounding set: %w", err)
	}
	return nil, fmt.Errorf("no CapBnd in /proc/self/status")
}

// hasNvidiaGPU looks for an NVIDIA driver on the host by its files only
// (no ldconfig run): the driver library dir, the kernel driver's proc
// entry or device node, or an NVIDIA board in the device tree.
func hasNvidiaGPU() bool {
	for _, p := range []string{"/usr/lib/nvidia", "/proc/driver/nvidia", "/dev/nvidia0", "/dev/nvidiactl"} {
		if pathExists(p) {
			return true
		}
	}
	b, err := os.ReadFile("/proc/device-tree/model")
	return err == nil && strings.Contains(strings.ToLower(string(b)), "nvidia")
}

func pathExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
