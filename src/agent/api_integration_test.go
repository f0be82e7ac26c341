package agent

// Integration tests of the device procedures of src/api (issue #4, part B)
// through the real agent wiring: agent.Run against devcloud (router,
// backend, registry), the real Docker engine and real processes. Only the
// power commands (reboot, poweroff, systemctl) go to a recording runner.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	nx "github.com/gammazero/nexus/v3/wamp"

	"reagent/src/api"
	"reagent/src/devcloud"
	"reagent/src/release"
	"reagent/src/system"
	"reagent/src/wamp"
)

// Every procedure of the issue answers `system` with the reference shape,
// acting on the real machine (except the power commands).
func TestAPIProceduresAnswerSystem(t *testing.T) {
	e := apiSetup(t, true)
	ctx := deadline(t, 2*time.Minute)

	t.Run("device_handshake", func(t *testing.T) {
		res := e.call(t, api.ProcDeviceHandshake, nil, nil)
		_, want := apiFixture(t, "device_handshake.json")
		apiShape(t, "kwargs", res.ArgumentsKw, want, apiExact)
		if len(res.Arguments) != 0 || res.ArgumentsKw["id"] != e.serial {
			t.Fatalf("%v %v", res.Arguments, res.ArgumentsKw)
		}
		if _, err := time.Parse(time.RFC3339, res.ArgumentsKw["utp"].(string)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("get_agent_metadata", func(t *testing.T) {
		res := e.call(t, api.ProcGetAgentMetadata, nil, nil)
		want, _ := apiFixture(t, "get_agent_metadata.json")
		apiShape(t, "args", res.Arguments, want, apiExact)
		m := res.Arguments[0].(map[string]any)
		arch, variant := release.SplitArch()
		if m["serialNumber"] != e.serial || m["version"] != release.Version() || m["arch"] != arch ||
			m["variant"] != variant || m["canUpdate"] != true || m["os"] != system.DetailedOS() || m["OSVersion"] != m["os"] {
			t.Fatalf("metadata %v", m)
		}
	})
	t.Run("get_storage_data", func(t *testing.T) {
		res := e.call(t, api.ProcGetStorageData, nil, nil)
		want, _ := apiFixture(t, "get_storage_data.json")
		apiShape(t, "args", res.Arguments, want, apiExact)
		m := res.Arguments[0].(map[string]any)
		if n, _ := wamp.ToUint64(m["cpu_count"], false); n == 0 {
			t.Fatalf("stats %v", m)
		}
		if n, _ := wamp.ToUint64(m["docker_apps_total"], false); n == 0 {
			t.Fatalf("the apps dir exists, its size is missing: %v", m)
		}
	})
	t.Run("get_network_metadata", func(t *testing.T) {
		res := e.call(t, api.ProcGetNetworkMetadata, nil, nil)
		want, _ := apiFixture(t, "get_network_metadata.json")
		apiShape(t, "args", res.Arguments, want, apiExact)
		found := false
		for _, a := range res.Arguments { // spread: one arg per address
			m := a.(map[string]any)
			apiShape(t, "address", m, want[0], apiExact)
			found = found || (m["IP"] == "127.0.0.1" && m["Mask"] == "/wAAAA==")
		}
		if !found {
			t.Fatalf("no loopback address among %v", res.Arguments)
		}
	})
	t.Run("get_ipv4_addresses", func(t *testing.T) {
		res := e.call(t, api.ProcGetIPv4Addresses, nil, nil)
		all, err := system.InterfaceAddrs()
		if err != nil {
			t.Fatal(err)
		}
		local := system.IPv4Addrs(all)
		if len(res.Arguments) != 1 {
			t.Fatalf("args %v, want one list (or null)", res.Arguments)
		}
		if len(local) == 0 {
			if res.Arguments[0] != nil {
				t.Fatalf("args %v, want [null]", res.Arguments)
			}
			return
		}
		want, _ := apiFixture(t, "get_ipv4_addresses.json")
		apiShape(t, "args", res.Arguments, want, apiExact)
		if n := len(res.Arguments[0].([]any)); n != len(local) {
			t.Fatalf("%d addresses, the machine has %d", n, len(local))
		}
	})
	t.Run("list_containers", func(t *testing.T) {
		res := e.call(t, api.ProcListContainers, nil, nil)
		if len(res.Arguments) != 1 {
			t.Fatalf("args %v, want the list wrapped once", res.Arguments)
		}
		want, _ := apiFixture(t, "list_containers.json")
		var ours map[string]any
		for _, c := range res.Arguments[0].([]any) {
			m := c.(map[string]any)
			if m["Id"] == e.contID {
				ours = m
			}
		}
		if ours == nil {
			t.Fatalf("container %s not listed", e.contID)
		}
		// The engine's own keys, numbers as numbers (Created), not strings.
		apiShape(t, "container", ours, want[0].([]any)[0], apiSuperset)
		if names, _ := ours["Names"].([]any); len(names) != 1 || names[0] != "/"+e.contName || ours["State"] != "created" ||
			ours["Labels"].(map[string]any)[testLabel] != e.label {
			t.Fatalf("container %v", ours)
		}
	})
	t.Run("get_images", func(t *testing.T) {
		res := e.call(t, api.ProcGetImages, nil, nil)
		fixture, _ := apiFixture(t, "get_images.json")
		want := map[string]any{} // every key an image may carry (omitempty)
		for _, f := range fixture {
			for k, v := range f.(map[string]any) {
				want[k] = v
			}
		}
		var ours map[string]any
		for _, a := range res.Arguments { // spread: one arg per image
			m := a.(map[string]any)
			apiShape(t, "image", m, want, apiSubset)
			if tags, _ := m["repoTags"].([]any); slices.Contains(tags, any(e.imageRef)) {
				ours = m
			}
		}
		if ours == nil || ours["labels"].(map[string]any)[testLabel] != e.label {
			t.Fatalf("image %s not among %d images (%v)", e.imageRef, len(res.Arguments), ours)
		}
	})
	t.Run("prune_images", func(t *testing.T) {
		newID := e.imageID(t, ctx, e.imageRef)
		if !e.imageExists(t, e.oldID) {
			t.Fatal("the dangling image is gone before the prune")
		}
		res := e.call(t, api.ProcPruneImages, nx.List{nx.Dict{}}, nil)
		want, _ := apiFixture(t, "prune_images.json")
		apiShape(t, "args", res.Arguments, want, apiExact)
		rep := res.Arguments[0].(map[string]any)
		if !slices.Contains(rep["imagesDeleted"].([]any), any(e.oldID)) || e.imageExists(t, e.oldID) {
			t.Fatalf("dangling %s not pruned: %v", e.oldID, rep)
		}
		if n, _ := wamp.ToUint64(rep["buildCacheReclaimed"], false); n != 0 {
			t.Fatalf("dangling-only prune touched the build cache: %v", rep)
		}
		// all: every unused image and the build cache; ours is used by the
		// container and stays.
		res = e.call(t, api.ProcPruneImages, nx.List{nx.Dict{"all": true}}, nil)
		apiShape(t, "args", res.Arguments, want, apiExact)
		if !e.imageExists(t, newID) {
			t.Fatal("prune {all:true} removed an image a container uses")
		}
		if got := e.prunes(); !slices.Equal(got, []string{"/images/prune", "/images/prune", "/build/prune"}) {
			t.Fatalf("engine prunes %v: volumes or containers must never be pruned", got)
		}
	})
	t.Run("execute_cmd blocking", func(t *testing.T) {
		res := e.call(t, api.ProcExecuteCmd, nx.List{nx.Dict{"cmd": "sh", "args": nx.List{"-c", "echo hello world"}, "blocking": true}}, nil)
		want, _ := apiFixture(t, "execute_cmd_blocking.json")
		apiShape(t, "args", res.Arguments, want, apiExact)
		if res.Arguments[0] != "hello world\n" {
			t.Fatalf("stdout %q", res.Arguments[0])
		}
	})
	t.Run("execute_cmd background", func(t *testing.T) {
		flag := filepath.Join(t.TempDir(), "go")
		res := e.call(t, api.ProcExecuteCmd, nx.List{nx.Dict{"cmd": "sh", "blocking": false, "timeout": 60000,
			"args": nx.List{"-c", "while [ ! -e " + flag + " ]; do sleep 0.02; done; echo out; echo err >&2"}}}, nil)
		want, _ := apiFixture(t, "execute_cmd_background.json")
		apiShape(t, "args", res.Arguments, want, apiExact)
		pid, ok := wamp.ToUint64(res.Arguments[0].(map[string]any)["pid"], false)
		if !ok || pid == 0 {
			t.Fatalf("answer %v", res.Arguments)
		}
		sub, err := e.cloud.Session(ctx, "system")
		if err != nil {
			t.Fatal(err)
		}
		events := make(chan *nx.Event, 8)
		topic := fmt.Sprintf("re.mgmt.%s.cmd_output_%d", e.serial, pid)
		if err := sub.SubscribeChan(topic, events, nil); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(flag, nil, 0o600); err != nil { // now the command may speak
			t.Fatal(err)
		}
		var lines []string
		for len(lines) < 2 {
			select {
			case ev := <-events:
				if len(ev.Arguments) != 1 || len(ev.ArgumentsKw) != 0 {
					t.Fatalf("event %v %v, want [line]", ev.Arguments, ev.ArgumentsKw)
				}
				lines = append(lines, ev.Arguments[0].(string))
			case <-ctx.Done():
				t.Fatalf("output so far %q", lines)
			}
		}
		sort.Strings(lines)
		if !slices.Equal(lines, []string{"err", "out"}) {
			t.Fatalf("lines %q", lines)
		}
		// The agent reaps its child: no zombie stays behind.
		if err := await(ctx, func() bool { _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); return err != nil }); err != nil {
			st, _ := readFileErr(fmt.Sprintf("/proc/%d/stat", pid))
			t.Fatalf("command %d never left the process table: %s", pid, st)
		}
	})
	t.Run("get_os_release", func(t *testing.T) {
		res := e.call(t, api.ProcGetOSRelease, nil, nil)
		_, errCur := os.Stat(system.OSReleaseFile)
		_, errLatest := os.Stat(system.LatestOSReleaseFile)
		if errCur != nil || errLatest != nil {
			if len(res.Arguments) != 0 || len(res.ArgumentsKw) != 0 {
				t.Fatalf("no ReswarmOS release files, yet %v %v", res.Arguments, res.ArgumentsKw)
			}
			return
		}
		want, _ := apiFixture(t, "get_os_release.json")
		apiShape(t, "args", res.Arguments, want, apiExact)
	})
	t.Run("power", func(t *testing.T) {
		for _, proc := range []string{api.ProcSystemReboot, api.ProcSystemShutdown, api.ProcSystemRestartAgent} {
			res := e.call(t, proc, nil, nil)
			if len(res.Arguments) != 0 || len(res.ArgumentsKw) != 0 {
				t.Fatalf("%s answered %v %v, want nothing", proc, res.Arguments, res.ArgumentsKw)
			}
		}
		want := []string{"reboot", "poweroff", "systemctl restart reagent"}
		if err := await(ctx, func() bool { return len(e.runner.get()) == len(want) }); err != nil {
			t.Fatalf("ran %v", e.runner.get())
		}
		got := e.runner.get()
		sort.Strings(got)
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Fatalf("ran %v, want %v", got, want)
		}
		// A restart that systemctl handled does not stop this process.
		e.call(t, api.ProcDeviceHandshake, nil, nil)
	})
}

// apiActing are calls that would change the machine if they ran.
func apiActing(flag string) map[string]nx.List {
	return map[string]nx.List{
		api.ProcExecuteCmd:  {nx.Dict{"cmd": "touch", "args": nx.List{flag}, "blocking": true}},
		api.ProcPruneImages: {nx.Dict{"all": false}},
	}
}

// A Studio user whose check_privilege answers false gets
// wamp.error.not_authorized from every privileged procedure and nothing
// happens; the same calls by a user holding the privileges do act.
func TestAPIPrivilegesDenied(t *testing.T) {
	e := apiSetup(t, false)
	e.cloud.AddUser(devcloud.User{AuthID: "100", Secret: "nobody-secret"})
	e.cloud.AddUser(devcloud.User{AuthID: "101", Secret: "maintainer-secret", Privileges: []string{"READ", "MAINTAIN"}})
	ctx := deadline(t, time.Minute)
	flag := filepath.Join(t.TempDir(), "created-by-execute_cmd")
	acting := apiActing(flag)

	registered := e.agent.sess.Procedures()
	denied := 0
	for _, name := range api.Procedures() {
		p, ok := registered[name]
		if !ok || p == wamp.Public {
			continue
		}
		if want, _ := api.PrivilegeOf(name); want != p {
			t.Errorf("%s registered as %s, the table says %s", name, p, want)
		}
		denied++
		args := acting[name]
		for _, caller := range []struct {
			authid string
			kwargs nx.Dict
		}{{"100", nil}, {"system", nx.Dict{"requestor_account_key": uint64(100)}}} {
			_, err := e.cloud.CallDevice(ctx, caller.authid, e.serial, name, args, caller.kwargs)
			if err == nil {
				t.Fatalf("%s answered %s without the privilege", name, caller.authid)
			}
			if uri, text := rpcErr(t, err); uri != "wamp.error.not_authorized" || !strings.Contains(text, "insufficient privileges") {
				t.Fatalf("%s as %s: %s %q, want wamp.error.not_authorized", name, caller.authid, uri, text)
			}
		}
	}
	// The 13 minus device_handshake, and every procedure added
	// since (request_app_state with its dynamic privilege among them).
	if _, ok := registered[api.ProcRequestAppState]; denied < 13 || !ok {
		t.Fatalf("%d privileged procedures registered (request_app_state: %v), want the issue's 12 and request_app_state", denied, ok)
	}
	// Nothing happened: no handler ran (each logs what it is asked to do
	// before doing it), no file, no power command, no prune at the engine.
	log := readFile(t, e.agent.logFile)
	for _, msg := range []string{"execute command", "system operation requested", "prune images"} {
		if line := `"message":"` + msg + `"`; strings.Contains(log, line) {
			t.Fatalf("a handler ran for a user without the privilege: the log has %s", line)
		}
	}
	if _, err := os.Stat(flag); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("execute_cmd acted for a user without the privilege: %v", err)
	}
	if runs := e.runner.get(); len(runs) != 0 {
		t.Fatalf("power commands ran for a user without the privilege: %v", runs)
	}
	if p := e.prunes(); len(p) != 0 {
		t.Fatalf("the engine was asked to prune: %v", p)
	}
	// A user who holds MAINTAIN gets through, so the denial above was real.
	callOK(t, ctx, e.cloud, "101", e.serial, api.ProcExecuteCmd, acting[api.ProcExecuteCmd], nil)
	if _, err := os.Stat(flag); err != nil {
		t.Fatalf("execute_cmd by a maintainer: %v", err)
	}
	if log := readFile(t, e.agent.logFile); !strings.Contains(log, `"message":"execute command"`) {
		t.Fatal("the audit line the check above relies on is not logged")
	}
	// READ is not MAINTAIN.
	callOK(t, ctx, e.cloud, "101", e.serial, api.ProcGetAgentMetadata, nil, nil)
}

// Every procedure of the issue survives malformed input: an ERROR in the
// reference shape or an answer, never a panic, and the agent goes on.
func TestAPIRobustness(t *testing.T) {
	e := apiSetup(t, false)
	ctx := deadline(t, 2*time.Minute)
	inputs := malformedCalls(strings.Repeat("x", 5<<20),
		malformedCall{"wrong-typed kwargs", nil, nx.Dict{"all": "yes", "cmd": 5, "blocking": "no", "timeout": -1, "args": nx.Dict{}}},
		malformedCall{"wrong-typed fields", nx.List{nx.Dict{"all": "yes", "cmd": nx.List{1}, "blocking": 1, "timeout": "soon", "args": "x"}}, nil},
	)
	registered := e.agent.sess.Procedures()
	var procs []string
	for _, name := range api.Procedures() {
		if _, ok := registered[name]; ok && name != api.ProcWampConnectionEstablished {
			procs = append(procs, name)
		}
	}
	if len(procs) < 13 {
		t.Fatalf("the agent registered %v, want at least the 13 procedures of issue #4", procs)
	}
	callMalformed(t, ctx, e.cloud, e.serial, procs, inputs)
	res := e.call(t, api.ProcDeviceHandshake, nil, nil)
	if res.ArgumentsKw["id"] != e.serial {
		t.Fatalf("handshake after the storm: %v", res.ArgumentsKw)
	}
	if !e.agent.sess.Connected() {
		t.Fatal("agent disconnected")
	}
	if log := readFile(t, e.agent.logFile); strings.Contains(log, "procedure handler panicked") {
		t.Fatal("a handler panicked (recovered, but none of ours may)")
	}
	// The power procedures take no arguments, so every call scheduled one.
	if err := await(ctx, func() bool { return len(e.runner.get()) == 3*len(inputs) }); err != nil {
		t.Fatalf("power commands %v", e.runner.get())
	}
}
