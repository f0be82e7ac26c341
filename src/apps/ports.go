package apps

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"reagent/src/backend"
	"reagent/src/errdefs"
	"reagent/src/store"
)

// Managed host ports (apps-lifecycle §6): apps do not use host networking;
// every port rule without local_ip is published on 0.0.0.0:<host port>. A
// host port, once given to an app's port, stays reserved in the store
// across stops, restarts and agent restarts, and is released on uninstall.

// Default pool of host ports.
const (
	defaultPortMin = 40000
	defaultPortMax = 49999
)

// hostPort is one published port of an app.
type hostPort struct {
	Protocol string // "tcp" or "udp"
	Declared uint16 // the container port the rule names
	Host     uint16
}

type protoPort struct {
	proto string
	port  uint16
}

// parsePortRules reads the stored port rules; nil or null is none.
func parsePortRules(raw json.RawMessage) ([]backend.PortRule, error) {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || bytes.Equal(t, []byte("null")) {
		return nil, nil
	}
	var rules []backend.PortRule
	if err := json.Unmarshal(t, &rules); err != nil {
		return nil, errdefs.InvalidArgument("port rules: %v", err)
	}
	return rules, nil
}

// dockerProtocol is the engine protocol of a rule: udp for udp, tcp for
// everything else (http, https, tcp).
func dockerProtocol(rule backend.PortRule) string {
	if strings.EqualFold(rule.Protocol, "udp") {
		return "udp"
	}
	return "tcp"
}

// allocatePorts picks and reserves the host port of every published port of
// the app, preferring, in order: the app's existing reservation, the host
// port the rule carries (persisted upstream earlier), for DEV apps the
// declared port itself, then the first free port of the pool. Ports in
// exclude (found busy at start) are not given again. warn receives
// messages for the app's log.
func (m *Manager) allocatePorts(ctx context.Context, k Key, rules []backend.PortRule, exclude map[protoPort]bool,
	warn func(string)) ([]hostPort, error) {
	all, err := m.st.HostPorts(ctx)
	if err != nil {
		return nil, err
	}
	mine := map[protoPort]uint16{} // (proto, declared) → host
	taken := map[protoPort]Key{}   // (proto, host) → owner
	for _, hp := range all {
		taken[protoPort{hp.Protocol, hp.HostPort}] = hp.Key
		if hp.Key == k && hp.Service == "" {
			mine[protoPort{hp.Protocol, hp.DeclaredPort}] = hp.HostPort
		}
	}
	free := func(proto string, p uint16, probe bool) bool {
		if p == 0 || exclude[protoPort{proto, p}] {
			return false
		}
		if owner, ok := taken[protoPort{proto, p}]; ok && owner != k {
			return false
		}
		return !probe || m.portFree(proto, p)
	}
	var out []hostPort
	seen := map[protoPort]bool{}
	for _, r := range rules {
		if r.LocalIP != "" {
			continue
		}
		if r.Port == 0 || r.Port > 65535 {
			warn(fmt.Sprintf("port rule %q: port %d is not a valid port; not published", r.Name, r.Port))
			continue
		}
		proto, declared := dockerProtocol(r), uint16(r.Port)
		pk := protoPort{proto, declared}
		if seen[pk] {
			continue
		}
		seen[pk] = true
		var host uint16
		switch {
		case free(proto, mine[pk], false):
			host = mine[pk]
		case r.HostPort <= 65535 && free(proto, uint16(r.HostPort), true):
			host = uint16(r.HostPort)
		case k.Stage == StageDev && free(proto, declared, true):
			host = declared
		}
		for host == 0 || !m.reserve(ctx, k, proto, declared, host) {
			if host != 0 {
				taken[protoPort{proto, host}] = Key{} // lost a race: someone else has it
			}
			if host = m.poolPort(proto, free); host == 0 {
				return nil, errdefs.Unavailable("no free host port in %d-%d for port %d/%s", m.opts.PortMin, m.opts.PortMax, declared, proto)
			}
		}
		if k.Stage == StageDev && host != declared {
			warn(fmt.Sprintf("Port %d is already in use by another app; the app is reachable on host port %d instead.", declared, host))
		}
		taken[protoPort{proto, host}] = k
		out = append(out, hostPort{Protocol: proto, Declared: declared, Host: host})
	}
	return out, nil
}

// poolPort is the first free port of the pool.
func (m *Manager) poolPort(proto string, free func(string, uint16, bool) bool) uint16 {
	for p := m.opts.PortMin; p <= m.opts.PortMax && p != 0; p++ {
		if free(proto, p, true) {
			return p
		}
	}
	return 0
}

// reserve records host for the app's declared port; false when another app
// got the port first.
func (m *Manager) reserve(ctx context.Context, k Key, proto string, declared, host uint16) bool {
	err := m.st.ReserveHostPort(ctx, store.HostPort{Key: k, Protocol: proto, DeclaredPort: declared, HostPort: host})
	if err != nil {
		if !errors.Is(err, errdefs.ErrConflict) {
			m.log.Warn().Err(err).Uint64("app_key", k.AppKey).Str("stage", k.Stage).Msg("reserve host port")
		}
		return false
	}
	return true
}

// portFree probes a host port by binding it on all interfaces.
func portFree(proto string, p uint16) bool {
	addr := ":" + strconv.Itoa(int(p))
	if proto == "udp" {
		c, err := net.ListenPacket("udp", addr)
		if err != nil {
			return false
		}
		_ = c.Close()
		return true
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

// rulesWithHostPorts returns the rules with the assigned host ports and
// whether any changed, for saving upstream (update_app_on_device shape b).
func rulesWithHostPorts(rules []backend.PortRule, ports []hostPort) ([]backend.PortRule, bool) {
	byDecl := map[protoPort]uint16{}
	for _, p := range ports {
		byDecl[protoPort{p.Protocol, p.Declared}] = p.Host
	}
	out := make([]backend.PortRule, len(rules))
	changed := false
	for i, r := range rules {
		out[i] = r
		if r.LocalIP != "" || r.Port == 0 || r.Port > 65535 {
			continue
		}
		if h, ok := byDecl[protoPort{dockerProtocol(r), uint16(r.Port)}]; ok && uint64(h) != r.HostPort {
			out[i].HostPort = uint64(h)
			changed = true
		}
	}
	return out, changed
}
