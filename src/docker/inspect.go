package docker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/go-connections/nat"

	"reagent/src/errdefs"
)

// ContainerState is the engine's view of a container's process.
type ContainerState struct {
	Status     string // created running paused restarting removing exited dead
	Running    bool
	ExitCode   int
	OOMKilled  bool
	Error      string
	StartedAt  time.Time
	FinishedAt time.Time
}

// Container is an inspected container.
type Container struct {
	ID         string
	Name       string // without the leading "/"
	Image      string // as configured, e.g. "registry/apps/x:1.0"
	ImageID    string
	Labels     map[string]string
	State      ContainerState
	Tty        bool
	Env        []string
	Mounts     []Mount
	Ports      []PortBinding // configured host bindings
	Privileged bool
	CapAdd     []string
	Created    time.Time
}

// InspectContainer returns the container whose full ID or exact name is
// nameOrID; an ID prefix of at least 12 hex digits (a short ID) also
// matches. Anything else, including a name that only some other
// container's ID starts with, is errdefs.ErrNotFound.
func (c *Client) InspectContainer(ctx context.Context, nameOrID string) (Container, error) {
	resp, err := c.api.ContainerInspect(ctx, nameOrID)
	if err != nil {
		return Container{}, wrapf(err, "inspect container %s", nameOrID)
	}
	if !exactMatch(nameOrID, resp.ID, resp.Name) {
		return Container{}, fmt.Errorf("inspect container %s: %w", nameOrID,
			errdefs.NotFound("no container named %s (the engine matched %s by ID prefix)", nameOrID, strings.TrimPrefix(resp.Name, "/")))
	}
	return fromInspect(resp), nil
}

// exactMatch guards against the engine's fallback to ID-prefix lookup: a
// name such as "abc" would otherwise resolve to a foreign container whose ID
// starts with abc.
func exactMatch(query, id, name string) bool {
	if query == id || "/"+strings.TrimPrefix(query, "/") == name {
		return true
	}
	if len(query) < 12 || !strings.HasPrefix(id, query) {
		return false
	}
	for _, r := range query {
		if !strings.ContainsRune("0123456789abcdef", r) {
			return false
		}
	}
	return true
}

func fromInspect(r container.InspectResponse) Container {
	out := Container{
		ID:      r.ID,
		Name:    strings.TrimPrefix(r.Name, "/"),
		ImageID: r.Image,
		Created: parseTime(r.Created),
	}
	if r.Config != nil {
		out.Image = r.Config.Image
		out.Labels = r.Config.Labels
		out.Tty = r.Config.Tty
		out.Env = r.Config.Env
	}
	if r.State != nil {
		out.State = ContainerState{
			Status:     string(r.State.Status),
			Running:    r.State.Running,
			ExitCode:   r.State.ExitCode,
			OOMKilled:  r.State.OOMKilled,
			Error:      r.State.Error,
			StartedAt:  parseTime(r.State.StartedAt),
			FinishedAt: parseTime(r.State.FinishedAt),
		}
	}
	for _, m := range r.Mounts {
		out.Mounts = append(out.Mounts, Mount{Source: m.Source, Target: m.Destination, ReadOnly: !m.RW})
	}
	if r.HostConfig != nil {
		out.Privileged = r.HostConfig.Privileged
		out.CapAdd = r.HostConfig.CapAdd
		ports := make([]string, 0, len(r.HostConfig.PortBindings))
		for p := range r.HostConfig.PortBindings {
			ports = append(ports, string(p))
		}
		sort.Strings(ports) // map order is random; callers compare lists
		for _, p := range ports {
			port := splitPort(p)
			for _, b := range r.HostConfig.PortBindings[nat.Port(p)] {
				hp, _ := strconv.ParseUint(b.HostPort, 10, 16)
				out.Ports = append(out.Ports, PortBinding{ContainerPort: port.num, Protocol: port.proto, HostIP: b.HostIP, HostPort: uint16(hp)})
			}
		}
	}
	return out
}

type portProto struct {
	num   uint16
	proto string
}

// splitPort splits "80/tcp".
func splitPort(p string) portProto {
	num, proto, _ := strings.Cut(p, "/")
	n, _ := strconv.ParseUint(num, 10, 16)
	if proto == "" {
		proto = "tcp"
	}
	return portProto{num: uint16(n), proto: proto}
}

// parseTime reads the engine's RFC 3339 times; the engine's "never"
// ("0001-01-01T00:00:00Z") and garbage both become the zero time.
func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() <= 1 {
		return time.Time{}
	}
	return t
}

// ListContainers inspects every container (any state) carrying all of the
// given labels with exactly these values; nil lists every container.
// Containers removed while listing are skipped.
func (c *Client) ListContainers(ctx context.Context, labels map[string]string) ([]Container, error) {
	f := filters.NewArgs()
	for k, v := range labels {
		f.Add("label", k+"="+v)
	}
	list, err := c.api.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return nil, wrapf(err, "list containers")
	}
	out := make([]Container, 0, len(list))
	for _, s := range list {
		ct, err := c.InspectContainer(ctx, s.ID)
		if errors.Is(err, errdefs.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, ct)
	}
	return out, nil
}

// ListContainersRaw returns every container on the host as the engine's
// container-summary JSON objects (keys Id, Names, Image, ImageID, Command,
// Created, Ports, Labels, State, Status, HostConfig, NetworkSettings,
// Mounts, …), which is what the reference's list_containers returns.
// Integral numbers come back as int64, so they re-encode without exponents.
func (c *Client) ListContainersRaw(ctx context.Context) ([]map[string]any, error) {
	list, err := c.api.ContainerList(ctx, container.ListOptions{All: true})
	if err != nil {
		return nil, wrapf(err, "list containers")
	}
	b, err := json.Marshal(list)
	if err != nil {
		return nil, fmt.Errorf("encode container list: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var raw []map[string]any
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("decode container list: %w", err)
	}
	for _, m := range raw {
		normalizeNumbers(m)
	}
	return raw, nil
}

// normalizeNumbers turns json.Number into int64 or float64 in place, so no
// caller (or WAMP serializer) ever sees the json.Number string type.
func normalizeNumbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	case map[string]any:
		for k, e := range x {
			x[k] = normalizeNumbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = normalizeNumbers(e)
		}
	}
	return v
}
