package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/go-connections/nat"
)

// labelBench marks every container the bench creates itself (the SDK
// baseline), with the run id as value, so cleanup finds exactly those.
const labelBench = "io.ironflock.bench"

// sdkSpec is a container to create and start directly with the SDK.
type sdkSpec struct {
	cfg  *container.Config
	host *container.HostConfig
}

// baselineSpecs derive the SDK baselines from the container the agent made
// for the app (inspected while RUNNING):
//
//   - plain, the baseline: the same image, command, env and TTY, the
//     default bridge, one port binding, bind mounts for /data and /shared,
//     json-file rotation, host.docker.internal, restart policy "no";
//   - same, additionally every privilege setting of the agent's container
//     (capabilities, devices, privileged), so agent and SDK create the very
//     same container and only the agent's own work differs.
//
// Both bind their own directories and leave the host port to the engine.
func (b *bench) baselineSpecs(ins container.InspectResponse) (plain, same sdkSpec, err error) {
	if ins.Config == nil || ins.HostConfig == nil {
		return sdkSpec{}, sdkSpec{}, fmt.Errorf("inspect of %s has no config", ins.Name)
	}
	dir := filepath.Join(b.tmp, "baseline")
	var mounts []mount.Mount
	for _, t := range []string{"/data", "/shared"} {
		src := filepath.Join(dir, filepath.Base(t))
		if err := os.MkdirAll(src, 0o755); err != nil {
			return sdkSpec{}, sdkSpec{}, err
		}
		mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: src, Target: t})
	}
	// The agent's port bindings with the host port left to the engine: the
	// agent's own port stays reserved for it.
	ports := nat.PortMap{}
	exposed := nat.PortSet{}
	for p, bs := range ins.HostConfig.PortBindings {
		exposed[p] = struct{}{}
		for _, pb := range bs {
			ports[p] = append(ports[p], nat.PortBinding{HostIP: pb.HostIP})
		}
	}
	labels := map[string]string{labelBench: b.runID}

	cfg := &container.Config{
		Image:        ins.Config.Image,
		Cmd:          ins.Config.Cmd,
		Env:          append([]string(nil), ins.Config.Env...),
		Tty:          ins.Config.Tty,
		AttachStdout: true,
		AttachStderr: true,
		ExposedPorts: exposed,
		Labels:       labels,
		StopTimeout:  ins.Config.StopTimeout,
	}
	host := &container.HostConfig{
		NetworkMode:   "bridge",
		PortBindings:  ports,
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled},
		ExtraHosts:    ins.HostConfig.ExtraHosts,
		LogConfig:     ins.HostConfig.LogConfig,
		Mounts:        mounts,
	}
	plain = sdkSpec{cfg: cfg, host: host}

	sameHost := *host
	sameHost.Privileged = ins.HostConfig.Privileged
	sameHost.CapAdd = ins.HostConfig.CapAdd
	sameHost.CapDrop = ins.HostConfig.CapDrop
	sameHost.Devices = ins.HostConfig.Devices
	sameHost.DeviceCgroupRules = ins.HostConfig.DeviceCgroupRules
	sameHost.SecurityOpt = ins.HostConfig.SecurityOpt
	sameHost.Runtime = ins.HostConfig.Runtime
	sameCfg := *cfg
	sameCfg.Labels = maps.Clone(labels)
	sameCfg.OpenStdin = ins.Config.OpenStdin
	return plain, sdkSpec{cfg: &sameCfg, host: &sameHost}, nil
}

// sdkCreateStart creates and starts a container from spec and returns the
// time from ContainerCreate until inspect reports it running; then it
// removes the container (not timed).
func (b *bench) sdkCreateStart(ctx context.Context, spec sdkSpec, name string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	t0 := time.Now()
	resp, err := b.dc.ContainerCreate(ctx, spec.cfg, spec.host, nil, nil, name)
	if err != nil {
		return 0, fmt.Errorf("baseline create %s: %w", name, err)
	}
	defer func() {
		rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer rcancel()
		if err := b.dc.ContainerRemove(rctx, resp.ID, container.RemoveOptions{Force: true}); err != nil {
			b.logf("remove baseline container %s: %v", name, err)
		}
	}()
	if err := b.dc.ContainerStart(ctx, resp.ID, container.StartOptions{}); err != nil {
		return 0, fmt.Errorf("baseline start %s: %w", name, err)
	}
	ins, err := b.dc.ContainerInspect(ctx, resp.ID)
	d := time.Since(t0)
	if err != nil {
		return 0, fmt.Errorf("baseline inspect %s: %w", name, err)
	}
	if ins.State == nil || !ins.State.Running {
		return 0, fmt.Errorf("baseline container %s is not running after start", name)
	}
	return d, nil
}
