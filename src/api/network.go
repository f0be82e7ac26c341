package api

import (
	"context"
	"encoding/base64"

	"reagent/src/system"
	"reagent/src/wamp"
)

// NetAddr is one interface address of get_network_metadata. The reference
// answered Go *net.IPNet values, which its JSON codec wrote as the IP in
// text and the mask as base64 bytes; we send exactly that as two strings,
// so every serializer gives the same shape.
//
//	{"IP": "192.168.1.5", "Mask": "////AA=="}
type NetAddr struct {
	IP   string `json:"IP"`
	Mask string `json:"Mask"`
}

// get_network_metadata spreads the addresses across the positional args
// (the reference's shape): `[NetAddr, NetAddr, …]`.
func (h *handlers) getNetworkMetadata(context.Context, *wamp.Call) (wamp.Result, error) {
	all, err := h.addrs()
	if err != nil {
		return wamp.Result{}, err
	}
	out := make([]any, 0, len(all))
	for _, a := range all {
		out = append(out, NetAddr{IP: a.Net.IP.String(), Mask: base64.StdEncoding.EncodeToString(a.Net.Mask)})
	}
	return wamp.Result{Args: out}, nil
}

// IPv4Address is one entry of get_ipv4_addresses.
//
//	{"interfaceName": "eth0", "ip": "192.168.1.5"}
type IPv4Address struct {
	InterfaceName string `json:"interfaceName"`
	IP            string `json:"ip"`
}

// get_ipv4_addresses wraps the list once, `[[IPv4Address, …]]`, and
// answers `[null]` when there is none (the reference's shapes).
func (h *handlers) getIPv4Addresses(context.Context, *wamp.Call) (wamp.Result, error) {
	all, err := h.addrs()
	if err != nil {
		return wamp.Result{}, err
	}
	var list []IPv4Address
	for _, a := range system.IPv4Addrs(all) {
		list = append(list, IPv4Address{InterfaceName: a.Interface, IP: a.Net.IP.String()})
	}
	if list == nil {
		return args(nil), nil
	}
	return args(list), nil
}
