package system

import (
	"fmt"
	"net"
	"strings"
)

// IfaceAddr is one address of one network interface.
type IfaceAddr struct {
	Interface string
	Net       net.IPNet
}

// InterfaceAddrs lists every address of every interface, in interface
// order (get_network_metadata).
func InterfaceAddrs() ([]IfaceAddr, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list network interfaces: %w", err)
	}
	var out []IfaceAddr
	for _, ifc := range ifaces {
		addrs, err := ifc.Addrs()
		if err != nil {
			return nil, fmt.Errorf("addresses of %s: %w", ifc.Name, err)
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				out = append(out, IfaceAddr{Interface: ifc.Name, Net: *n})
			}
		}
	}
	return out, nil
}

// IPv4Addrs keeps the addresses get_ipv4_addresses reports: IPv4 only,
// neither loopback nor unspecified, and not on an interface whose name
// contains "docker" (the engine's bridges).
func IPv4Addrs(all []IfaceAddr) []IfaceAddr {
	var out []IfaceAddr
	for _, a := range all {
		ip := a.Net.IP.To4()
		if ip == nil || ip.IsLoopback() || ip.IsUnspecified() || strings.Contains(a.Interface, "docker") {
			continue
		}
		out = append(out, a)
	}
	return out
}
