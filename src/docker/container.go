package docker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/go-connections/nat"

	"reagent/src/errdefs"
)

// Mount is a bind mount. The source must exist on the host: the engine
// reports a missing one as errdefs.ErrInvalidArgument rather than creating
// a root-owned directory behind the caller's back.
type Mount struct {
	Source   string
	Target   string
	ReadOnly bool
}

// PortBinding publishes a container port on the host.
type PortBinding struct {
	ContainerPort uint16
	Protocol      string // "tcp" (default) or "udp"
	HostIP        string // "" = all interfaces
	HostPort      uint16
}

// Device maps a host device into the container.
type Device struct {
	PathOnHost      string
	PathInContainer string // "" = same as PathOnHost
	Permissions     string // cgroup permissions, "" = "rwm"
}

// ContainerSpec is everything CreateContainer sets.
type ContainerSpec struct {
	Name           string
	Image          string
	Cmd            []string // nil = the image's default
	Env            []string
	Labels         map[string]string
	Tty, OpenStdin bool
	Mounts         []Mount // bind mounts
	Ports          []PortBinding
	ExtraHosts     []string // e.g. "host.docker.internal:host-gateway"
	NetworkMode    string   // "" = "bridge"
	Privileged     bool
	CapAdd         []string
	CapDrop        []string
	Devices        []Device
	Runtime        string        // "" = the engine's default
	StopTimeout    time.Duration // grace before SIGKILL on stop; 0 = engine default (10 s)
	// json-file rotation, e.g. "10m" and 3, so container logs never fill
	// the disk; both empty = the engine's default log driver.
	LogMaxSize  string
	LogMaxFiles int
}

// CreateContainer creates (does not start) a container. The restart policy
// is always "no": restarts are the agent's decision, with backoff.
func (c *Client) CreateContainer(ctx context.Context, spec ContainerSpec) (string, error) {
	cfg, hostCfg, err := spec.configs()
	if err != nil {
		return "", fmt.Errorf("create container %s: %w", spec.Name, err)
	}
	resp, err := c.api.ContainerCreate(ctx, cfg, hostCfg, nil, nil, spec.Name)
	if err != nil {
		return "", wrapf(err, "create container %s", spec.Name)
	}
	for _, w := range resp.Warnings {
		c.log.Warn().Str("container", spec.Name).Str("warning", w).Msg("engine warning on create")
	}
	c.log.Debug().Str("container", spec.Name).Str("id", resp.ID).Msg("created container")
	return resp.ID, nil
}

func (s ContainerSpec) configs() (*container.Config, *container.HostConfig, error) {
	exposed := nat.PortSet{}
	bindings := nat.PortMap{}
	for _, p := range s.Ports {
		proto := strings.ToLower(p.Protocol)
		if proto == "" {
			proto = "tcp"
		}
		if proto != "tcp" && proto != "udp" {
			return nil, nil, errdefs.InvalidArgument("port %d: protocol %q is neither tcp nor udp", p.ContainerPort, p.Protocol)
		}
		if p.ContainerPort == 0 {
			return nil, nil, errdefs.InvalidArgument("port binding without a container port")
		}
		port, err := nat.NewPort(proto, strconv.Itoa(int(p.ContainerPort)))
		if err != nil {
			return nil, nil, errdefs.InvalidArgument("port %d/%s: %v", p.ContainerPort, proto, err)
		}
		exposed[port] = struct{}{}
		hostPort := ""
		if p.HostPort != 0 {
			hostPort = strconv.Itoa(int(p.HostPort))
		}
		bindings[port] = append(bindings[port], nat.PortBinding{HostIP: p.HostIP, HostPort: hostPort})
	}

	cfg := &container.Config{
		Image:        s.Image,
		Cmd:          s.Cmd,
		Env:          s.Env,
		Labels:       s.Labels,
		Tty:          s.Tty,
		OpenStdin:    s.OpenStdin,
		AttachStdin:  s.OpenStdin,
		AttachStdout: true,
		AttachStderr: true,
		ExposedPorts: exposed,
	}
	if s.StopTimeout > 0 {
		secs := int(math.Ceil(s.StopTimeout.Seconds()))
		cfg.StopTimeout = &secs
	}

	network := s.NetworkMode
	if network == "" {
		network = "bridge"
	}
	hostCfg := &container.HostConfig{
		NetworkMode:   container.NetworkMode(network),
		PortBindings:  bindings,
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled},
		ExtraHosts:    s.ExtraHosts,
		Privileged:    s.Privileged,
		CapAdd:        s.CapAdd,
		CapDrop:       s.CapDrop,
		Runtime:       s.Runtime,
	}
	for _, m := range s.Mounts {
		if m.Source == "" || m.Target == "" {
			return nil, nil, errdefs.InvalidArgument("bind mount %q → %q: source and target are required", m.Source, m.Target)
		}
		hostCfg.Mounts = append(hostCfg.Mounts, mount.Mount{Type: mount.TypeBind, Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly})
	}
	for _, d := range s.Devices {
		in, perms := d.PathInContainer, d.Permissions
		if in == "" {
			in = d.PathOnHost
		}
		if perms == "" {
			perms = "rwm"
		}
		hostCfg.Devices = append(hostCfg.Devices, container.DeviceMapping{PathOnHost: d.PathOnHost, PathInContainer: in, CgroupPermissions: perms})
	}
	if s.LogMaxSize != "" || s.LogMaxFiles > 0 {
		opts := map[string]string{}
		if s.LogMaxSize != "" {
			opts["max-size"] = s.LogMaxSize
		}
		if s.LogMaxFiles > 0 {
			opts["max-file"] = strconv.Itoa(s.LogMaxFiles)
		}
		hostCfg.LogConfig = container.LogConfig{Type: "json-file", Config: opts}
	}
	return cfg, hostCfg, nil
}

// StartContainer starts a created or stopped container. Refused privileges
// are ErrPrivilegeRefused, a taken host port *PortInUseError.
func (c *Client) StartContainer(ctx context.Context, id string) error {
	if err := c.api.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		return wrapf(err, "start container %s", id)
	}
	return nil
}

// StopContainer sends the stop signal (SIGTERM unless the image says
// otherwise) and SIGKILL once timeout has passed; sub-second timeouts round
// up, a negative one means the container's own StopTimeout. Stopping a
// stopped container is not an error.
func (c *Client) StopContainer(ctx context.Context, id string, timeout time.Duration) error {
	var opts container.StopOptions
	if timeout >= 0 {
		secs := int(math.Ceil(timeout.Seconds()))
		opts.Timeout = &secs
	}
	if err := c.api.ContainerStop(ctx, id, opts); err != nil {
		return wrapf(err, "stop container %s", id)
	}
	return nil
}

// KillContainer sends signal ("" = SIGKILL). A container that is not
// running is errdefs.ErrConflict.
func (c *Client) KillContainer(ctx context.Context, id, signal string) error {
	if err := c.api.ContainerKill(ctx, id, signal); err != nil {
		return wrapf(err, "kill container %s with %s", id, signal)
	}
	return nil
}

// RemoveContainer removes a container (force: even while running). A
// missing one is errdefs.ErrNotFound; callers that only want it gone treat
// that as success. Volumes are kept.
func (c *Client) RemoveContainer(ctx context.Context, id string, force bool) error {
	if err := c.api.ContainerRemove(ctx, id, container.RemoveOptions{Force: force}); err != nil {
		return wrapf(err, "remove container %s", id)
	}
	return nil
}

// WaitRemoved blocks until the container no longer exists (or ctx ends).
// A container that is already gone returns nil at once.
func (c *Client) WaitRemoved(ctx context.Context, id string) error {
	resC, errC := c.api.ContainerWait(ctx, id, container.WaitConditionRemoved)
	select {
	case <-resC:
		return nil
	case err := <-errC:
		if err == nil {
			return nil
		}
		err = classify(err)
		if errors.Is(err, errdefs.ErrNotFound) {
			return nil
		}
		return fmt.Errorf("wait for removal of container %s: %w", id, err)
	case <-ctx.Done():
		return fmt.Errorf("wait for removal of container %s: %w", id, ctx.Err())
	}
}
