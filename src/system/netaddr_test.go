package system

import (
	"net"
	"reflect"
	"testing"
)

func TestIPv4Addrs(t *testing.T) {
	mk := func(iface, cidr string) IfaceAddr {
		ip, n, err := net.ParseCIDR(cidr)
		if err != nil {
			t.Fatal(err)
		}
		n.IP = ip
		return IfaceAddr{Interface: iface, Net: *n}
	}
	in := []IfaceAddr{
		mk("lo", "127.0.0.1/8"),
		mk("eth0", "192.168.1.5/24"),
		mk("eth0", "fe80::1/64"),
		mk("docker0", "172.17.0.1/16"),
		mk("br-docker-x", "172.18.0.1/16"),
		mk("wlan0", "0.0.0.0/0"),
		mk("wlan0", "10.0.0.7/8"),
	}
	want := []IfaceAddr{in[1], in[6]}
	if got := IPv4Addrs(in); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v", got)
	}
	if got := IPv4Addrs(in[:1]); got != nil {
		t.Fatalf("only loopback → nil, got %v", got)
	}
}

func TestInterfaceAddrsIncludesLoopback(t *testing.T) {
	addrs, err := InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if a.Net.IP.IsLoopback() && a.Net.IP.To4() != nil {
			if ones, bits := a.Net.Mask.Size(); bits != 32 || ones == 0 {
				t.Fatalf("loopback mask %v", a.Net.Mask)
			}
			return
		}
	}
	t.Fatalf("no IPv4 loopback among %v", addrs)
}
