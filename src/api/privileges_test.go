package api

import (
	"context"
	"sort"
	"testing"

	"reagent/src/wamp"
)

// wantPrivileges is the table as the issue specifies it: the reference's
// privilege where it had one, DESIGN §4's where it had none.
var wantPrivileges = map[string]wamp.Privilege{
	"request_app_state": wamp.Dynamic, "write_data": wamp.Develop, "device_handshake": wamp.Public,
	"get_images": wamp.Read, "prune_images": wamp.Maintain, "request_terminal_session": wamp.Develop,
	"start_terminal_session": wamp.Develop, "stop_terminal_session": wamp.Develop,
	"list_wifi_networks": wamp.Read, "add_wifi_configuration": wamp.Network,
	"remove_wifi_configuration": wamp.Network, "scan_wifi_networks": wamp.Network,
	"select_wifi_network": wamp.Network, "restart_wifi": wamp.Network, "get_ipv4_addresses": wamp.Read,
	"list_ethernet_devices": wamp.Read, "update_ipv4_config": wamp.Network, "system_reboot": wamp.Maintain,
	"system_shutdown": wamp.Maintain, "system_restart_agent": wamp.Maintain, "update_agent": wamp.Maintain,
	"get_agent_metadata": wamp.Read, "list_containers": wamp.Read, "get_network_metadata": wamp.Read,
	"get_app_log_history": wamp.Read, "query_app_logs": wamp.Read, "query_device_logs": wamp.Read,
	"get_tunnel_state": wamp.Read, "get_os_release": wamp.Read, "download_os_update": wamp.Maintain,
	"install_os_update": wamp.Maintain, "execute_cmd": wamp.Maintain, "init_device_terminal": wamp.Develop,
	"get_storage_data": wamp.Read, "wamp_connection_established": wamp.Public,
}

// issue4 are the procedures this package implements now.
var issue4 = []string{"device_handshake", "get_agent_metadata", "get_storage_data", "get_network_metadata",
	"get_ipv4_addresses", "list_containers", "get_images", "prune_images", "system_reboot", "system_shutdown",
	"system_restart_agent", "execute_cmd", "get_os_release"}

func TestPrivilegeTableIsComplete(t *testing.T) {
	for name, want := range wantPrivileges {
		if got, ok := PrivilegeOf(name); !ok || got != want {
			t.Errorf("%s: privilege %q (known %v), want %q", name, got, ok, want)
		}
	}
	if got := Procedures(); len(got) != len(wantPrivileges) || !sort.StringsAreSorted(got) {
		t.Errorf("Procedures() = %v, want the %d names above, sorted", got, len(wantPrivileges))
	}
	for _, name := range []string{"", "nope", "term_resize.", "execute_cmd.x"} {
		if p, ok := PrivilegeOf(name); ok {
			t.Errorf("unknown %q has privilege %q", name, p)
		}
	}
	for _, name := range []string{"term_resize.9f1e", "term_resize.prod_1_demo.9f1e"} {
		if p, ok := PrivilegeOf(name); !ok || p != wamp.Develop {
			t.Errorf("%s: %q %v, want DEVELOP", name, p, ok)
		}
	}
}

func TestRegisterUsesTheTable(t *testing.T) {
	_, reg := newTest(t, Deps{})
	r := reg()
	var names []string
	for name, p := range r.procs {
		names = append(names, name)
		want, ok := PrivilegeOf(name)
		if !ok {
			t.Errorf("%s registered but not in the table", name)
			continue
		}
		if p.dyn == nil && p.priv != want {
			t.Errorf("%s registered as %q, table says %q", name, p.priv, want)
		}
		if p.dyn != nil && want != wamp.Dynamic {
			t.Errorf("%s registered with a privilege func, table says %q", name, want)
		}
		if p.priv == "" && p.dyn == nil {
			t.Errorf("%s registered without a privilege", name)
		}
	}
	sort.Strings(names)
	want := append([]string(nil), issue4...)
	sort.Strings(want)
	if len(names) != len(want) {
		t.Fatalf("registered %v, want %v", names, want)
	}
	for i := range names {
		if names[i] != want[i] {
			t.Fatalf("registered %v, want %v", names, want)
		}
	}
}

// A registration the table does not back fails loudly: an unknown name,
// a dynamic entry registered with a fixed privilege, a fixed entry
// registered with a privilege func.
func TestRegistrationOutsideTheTablePanics(t *testing.T) {
	h, _ := newTest(t, Deps{})
	anyPrivilege := func(context.Context, *wamp.Call) (wamp.Privilege, error) { return wamp.Read, nil }
	cases := []struct {
		name     string
		register func(r *recorder)
	}{
		{"unknown name", func(r *recorder) { h.add(r, "not_in_table", h.deviceHandshake) }},
		{"unknown dynamic name", func(r *recorder) { h.addDynamic(r, "not_in_table", anyPrivilege, h.deviceHandshake) }},
		{"dynamic entry with a fixed privilege", func(r *recorder) { h.add(r, ProcRequestAppState, h.deviceHandshake) }},
		{"fixed entry with a privilege func", func(r *recorder) { h.addDynamic(r, ProcGetImages, anyPrivilege, h.deviceHandshake) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := &recorder{procs: map[string]registered{}}
			defer func() {
				if recover() == nil {
					t.Fatal("the registration did not panic")
				}
				if len(r.procs) != 0 {
					t.Fatalf("registered %v", r.procs)
				}
			}()
			c.register(r)
		})
	}
}
