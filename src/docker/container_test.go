package docker

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"reagent/src/errdefs"
	"reagent/src/testimage"
)

// freePort finds a free TCP port on 127.0.0.1.
func freePort(t *testing.T) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

func TestContainerLifecycle(t *testing.T) {
	e := newEnv(t)
	img := e.image("life", testimage.Options{})
	in, out := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(in, "hello.txt"), []byte("hello from the host"), 0o644); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	name := e.name("life")
	script := `cat /in/hello.txt; echo
grep -q host.docker.internal /etc/hosts && echo extra-host-ok
echo "FOO=$FOO"
touch /in/x 2>/dev/null || echo read-only-ok
echo written > /out/w.txt
mkdir -p /www && echo served > /www/index.html
echo ready
exec httpd -f -p 8080 -h /www`
	id := e.run(ContainerSpec{
		Name:        name,
		Image:       img,
		Cmd:         []string{"sh", "-c", script},
		Env:         []string{"FOO=bar baz"},
		Labels:      e.labels("role", "app"),
		Mounts:      []Mount{{Source: in, Target: "/in", ReadOnly: true}, {Source: out, Target: "/out"}},
		Ports:       []PortBinding{{ContainerPort: 8080, Protocol: "tcp", HostIP: "127.0.0.1", HostPort: port}},
		ExtraHosts:  []string{"host.docker.internal:host-gateway"},
		StopTimeout: 2 * time.Second,
		LogMaxSize:  "1m",
		LogMaxFiles: 2,
	})
	e.waitLogLine(id, "ready")

	var got []string
	for _, le := range e.logs(id, LogsOptions{}) {
		got = append(got, le.Text)
	}
	want := []string{"hello from the host", "extra-host-ok", "FOO=bar baz", "read-only-ok", "ready"}
	if !slices.Equal(got, want) {
		t.Fatalf("container output %q, want %q", got, want)
	}
	if b, err := os.ReadFile(filepath.Join(out, "w.txt")); err != nil || string(b) != "written\n" {
		t.Fatalf("rw mount: %q %v", b, err)
	}

	// The published port reaches the container.
	hc := &http.Client{Timeout: 2 * time.Second}
	url := "http://127.0.0.1:" + strconv.Itoa(int(port)) + "/index.html"
	e.waitFor("http on the published port", 20*time.Second, func() (bool, error) {
		resp, err := hc.Get(url)
		if err != nil {
			return false, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b) == "served\n", nil
	})

	for _, query := range []string{name, "/" + name, id, id[:12]} {
		ct, err := e.c.InspectContainer(e.ctx(10*time.Second), query)
		if err != nil {
			t.Fatalf("inspect %q: %v", query, err)
		}
		if ct.ID != id || ct.Name != name || ct.Image != img || !strings.HasPrefix(ct.ImageID, "sha256:") {
			t.Fatalf("inspect %q: %+v", query, ct)
		}
		if !ct.State.Running || ct.State.Status != "running" || ct.State.StartedAt.IsZero() || !ct.State.FinishedAt.IsZero() || ct.Created.IsZero() {
			t.Fatalf("state %+v created %v", ct.State, ct.Created)
		}
		if ct.Labels["role"] != "app" || ct.Labels[testLabel] != e.label || ct.Tty || !slices.Contains(ct.Env, "FOO=bar baz") {
			t.Fatalf("config %+v", ct)
		}
		wantPorts := []PortBinding{{ContainerPort: 8080, Protocol: "tcp", HostIP: "127.0.0.1", HostPort: port}}
		if !slices.Equal(ct.Ports, wantPorts) {
			t.Fatalf("ports %+v", ct.Ports)
		}
		mounts := map[string]Mount{}
		for _, m := range ct.Mounts {
			mounts[m.Target] = m
		}
		if mounts["/in"] != (Mount{Source: in, Target: "/in", ReadOnly: true}) || mounts["/out"] != (Mount{Source: out, Target: "/out"}) {
			t.Fatalf("mounts %+v", ct.Mounts)
		}
	}
	raw, err := e.c.api.ContainerInspect(e.ctx(10*time.Second), id)
	if err != nil {
		t.Fatal(err)
	}
	if raw.HostConfig.RestartPolicy.Name != "no" || raw.HostConfig.LogConfig.Type != "json-file" ||
		raw.HostConfig.LogConfig.Config["max-size"] != "1m" || raw.HostConfig.LogConfig.Config["max-file"] != "2" ||
		raw.Config.StopTimeout == nil || *raw.Config.StopTimeout != 2 || raw.HostConfig.NetworkMode != "bridge" {
		t.Fatalf("host config %+v / stop timeout %v", raw.HostConfig, raw.Config.StopTimeout)
	}

	// Stop (httpd as PID 1 ignores TERM: killed after the timeout), remove,
	// and everything reports "gone".
	if err := e.c.StopContainer(e.ctx(30*time.Second), id, 500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	ct, err := e.c.InspectContainer(e.ctx(10*time.Second), id)
	if err != nil || ct.State.Running || ct.State.Status != "exited" || ct.State.FinishedAt.IsZero() {
		t.Fatalf("after stop: %+v %v", ct.State, err)
	}
	if err := e.c.StopContainer(e.ctx(30*time.Second), id, time.Second); err != nil {
		t.Fatalf("stopping a stopped container: %v", err)
	}
	if err := e.c.KillContainer(e.ctx(10*time.Second), id, "KILL"); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("kill a stopped container: %v", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- e.c.WaitRemoved(e.ctx(30*time.Second), id) }()
	if err := e.c.RemoveContainer(e.ctx(30*time.Second), id, false); err != nil {
		t.Fatal(err)
	}
	if err := <-waited; err != nil {
		t.Fatalf("wait removed: %v", err)
	}
	if err := e.c.WaitRemoved(e.ctx(10*time.Second), id); err != nil {
		t.Fatalf("wait on a gone container: %v", err)
	}
	for _, err := range []error{
		errOf(e.c.InspectContainer(e.ctx(10*time.Second), id)),
		e.c.RemoveContainer(e.ctx(10*time.Second), id, true),
		e.c.StopContainer(e.ctx(10*time.Second), id, time.Second),
		e.c.StartContainer(e.ctx(10*time.Second), id),
		e.c.Logs(e.ctx(10*time.Second), id, LogsOptions{}, func(LogEntry) error { return nil }),
	} {
		if !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("on a removed container: %v", err)
		}
	}
}

// Names are matched exactly: neither a longer nor a shorter name, nor an
// ID prefix shorter than a short ID, finds the container (the reference's
// substring filter matched prod_1_app against prod_1_app2).
func TestInspectExactName(t *testing.T) {
	e := newEnv(t)
	img := e.image("exact", testimage.Options{})
	name := e.name("app2")
	id := e.create(ContainerSpec{Name: name, Image: img, Cmd: []string{"true"}})
	for _, query := range []string{strings.TrimSuffix(name, "2"), name + "x", id[:4], id[:11]} {
		if ct, err := e.c.InspectContainer(e.ctx(10*time.Second), query); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("inspect %q: %v %s", query, err, ct.Name)
		}
	}
	if ct, err := e.c.InspectContainer(e.ctx(10*time.Second), name); err != nil || ct.ID != id || ct.State.Status != "created" {
		t.Fatalf("inspect exact name: %+v %v", ct, err)
	}
}

func TestCreateErrors(t *testing.T) {
	e := newEnv(t)
	img := e.image("errs", testimage.Options{Cmd: []string{"true"}})
	name := e.name("taken")
	e.create(ContainerSpec{Name: name, Image: img})
	cases := []struct {
		name  string
		spec  ContainerSpec
		class error
	}{
		{"name taken", ContainerSpec{Name: name, Image: img}, errdefs.ErrConflict},
		{"image missing", ContainerSpec{Name: e.name("noimg"), Image: e.ref("missing", "1")}, errdefs.ErrNotFound},
		{"bad name", ContainerSpec{Name: "no/slashes", Image: img}, errdefs.ErrInvalidArgument},
		{"mount source missing", ContainerSpec{Name: e.name("nomount"), Image: img, Mounts: []Mount{{Source: "/nonexistent/" + e.label, Target: "/x"}}}, errdefs.ErrInvalidArgument},
		{"bad protocol", ContainerSpec{Name: e.name("proto"), Image: img, Ports: []PortBinding{{ContainerPort: 1, Protocol: "sctp6"}}}, errdefs.ErrInvalidArgument},
		{"unknown runtime", ContainerSpec{Name: e.name("rt"), Image: img, Runtime: "nvidia"}, ErrRuntimeUnavailable},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := e.sub(t)
			c.spec.Labels = e.labels()
			id, err := e.c.CreateContainer(e.ctx(30*time.Second), c.spec)
			if id != "" {
				e.removeContainerLater(id)
			}
			if !errors.Is(err, c.class) {
				t.Fatalf("create: %v, want %v", err, c.class)
			}
		})
	}
}

// This engine refuses privileged containers and CAP_ALL at start; the
// refusal must be recognisable so the agent can say why an app cannot run.
func TestPrivilegeRefused(t *testing.T) {
	e := newEnv(t)
	img := e.image("priv", testimage.Options{})
	cases := []struct {
		name string
		spec ContainerSpec
	}{
		{"privileged", ContainerSpec{Privileged: true}},
		{"all capabilities", ContainerSpec{CapAdd: []string{"ALL"}}},
		{"reference app settings", ContainerSpec{Privileged: true, CapAdd: []string{"ALL"}, Devices: []Device{{PathOnHost: "/dev", PathInContainer: "/dev"}}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := e.sub(t)
			c.spec.Name, c.spec.Image, c.spec.Cmd = e.name(c.name), img, []string{"sleep", "30"}
			id := e.create(c.spec)
			err := e.c.StartContainer(e.ctx(30*time.Second), id)
			if !errors.Is(err, ErrPrivilegeRefused) {
				t.Fatalf("start: %v, want ErrPrivilegeRefused", err)
			}
			if errors.Is(err, errdefs.ErrNotFound) || errors.Is(err, ErrPortInUse) {
				t.Fatalf("over-classified: %v", err)
			}
			ct, _ := e.c.InspectContainer(e.ctx(10*time.Second), id)
			if c.name == "privileged" && !ct.Privileged || c.name == "all capabilities" && !slices.Contains(ct.CapAdd, "ALL") {
				t.Fatalf("inspect does not show the request: %+v", ct)
			}
		})
	}
	// Devices and single capabilities are fine on this engine.
	id := e.run(ContainerSpec{Name: e.name("ok"), Image: img, Cmd: []string{"sh", "-c", "test -c /dev/xnull && echo dev-ok"},
		CapAdd: []string{"NET_ADMIN"}, Devices: []Device{{PathOnHost: "/dev/null", PathInContainer: "/dev/xnull"}}})
	if ct := e.waitExited(id); ct.State.ExitCode != 0 {
		t.Fatalf("device container exit %d", ct.State.ExitCode)
	}
}

func TestPortInUse(t *testing.T) {
	e := newEnv(t)
	img := e.image("ports", testimage.Options{})

	allocated := freePort(t)
	e.run(ContainerSpec{Name: e.name("holder"), Image: img, Cmd: []string{"sleep", "60"},
		Ports: []PortBinding{{ContainerPort: 80, HostIP: "127.0.0.1", HostPort: allocated}}})

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	foreign := uint16(l.Addr().(*net.TCPAddr).Port)

	cases := []struct {
		name string
		port uint16
	}{
		{"allocated by another container", allocated},
		{"bound by another process", foreign},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := e.sub(t)
			id := e.create(ContainerSpec{Name: e.name(c.name), Image: img, Cmd: []string{"sleep", "60"},
				Ports: []PortBinding{{ContainerPort: 80, Protocol: "tcp", HostIP: "127.0.0.1", HostPort: c.port}}})
			err := e.c.StartContainer(e.ctx(30*time.Second), id)
			var pe *PortInUseError
			if !errors.Is(err, ErrPortInUse) || !errors.As(err, &pe) || pe.HostPort != int(c.port) {
				t.Fatalf("start: %v (%+v), want port %d in use", err, pe, c.port)
			}
			if !errors.Is(err, errdefs.ErrConflict) {
				t.Fatalf("not a conflict: %v", err)
			}
		})
	}
}

func TestStopGracePeriod(t *testing.T) {
	e := newEnv(t)
	img := e.image("stop", testimage.Options{})
	cases := []struct {
		name     string
		script   string
		timeout  time.Duration
		exitCode int
	}{
		// The trap runs on SIGTERM, so the exit code is the script's own.
		{"traps TERM and exits within grace", `trap 'echo bye; exit 3' TERM; echo ready; while :; do sleep 1 & wait $!; done`, 20 * time.Second, 3},
		// PID 1 without a handler ignores TERM: killed after the timeout.
		{"ignores TERM", `echo ready; while :; do sleep 1; done`, time.Second, 137},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := e.sub(t)
			id := e.run(ContainerSpec{Name: e.name(c.name), Image: img, Cmd: []string{"sh", "-c", c.script}})
			e.waitLogLine(id, "ready")
			if err := e.c.StopContainer(e.ctx(60*time.Second), id, c.timeout); err != nil {
				t.Fatal(err)
			}
			ct, err := e.c.InspectContainer(e.ctx(10*time.Second), id)
			if err != nil || ct.State.Running || ct.State.ExitCode != c.exitCode {
				t.Fatalf("after stop: %+v %v, want exit %d", ct.State, err, c.exitCode)
			}
		})
	}
}

func TestKillSignal(t *testing.T) {
	e := newEnv(t)
	img := e.image("kill", testimage.Options{})
	id := e.run(ContainerSpec{Name: e.name("usr1"), Image: img,
		Cmd: []string{"sh", "-c", `trap 'echo got-usr1; exit 5' USR1; echo ready; while :; do sleep 1 & wait $!; done`}})
	e.waitLogLine(id, "ready")
	if err := e.c.KillContainer(e.ctx(10*time.Second), id, "USR1"); err != nil {
		t.Fatal(err)
	}
	if ct := e.waitExited(id); ct.State.ExitCode != 5 {
		t.Fatalf("exit %d", ct.State.ExitCode)
	}
}

func TestListContainers(t *testing.T) {
	e := newEnv(t)
	img := e.image("list", testimage.Options{Cmd: []string{"true"}})
	a := e.create(ContainerSpec{Name: e.name("a"), Image: img, Labels: e.labels("tier", "one")})
	b := e.run(ContainerSpec{Name: e.name("b"), Image: img, Cmd: []string{"sleep", "60"}, Labels: e.labels("tier", "two"),
		Ports: []PortBinding{{ContainerPort: 53, Protocol: "udp", HostIP: "127.0.0.1"}}})

	cases := []struct {
		name   string
		labels map[string]string
		want   []string
	}{
		{"test label", e.labels(), []string{a, b}},
		{"and of labels", e.labels("tier", "two"), []string{b}},
		{"value must match", e.labels("tier", "three"), nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := e.sub(t)
			list, err := e.c.ListContainers(e.ctx(10*time.Second), c.labels)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, ct := range list {
				ids = append(ids, ct.ID)
				if ct.ID == b && (ct.State.Status != "running" || len(ct.Ports) != 1 || ct.Ports[0].Protocol != "udp") {
					t.Fatalf("listed %+v", ct)
				}
				if ct.ID == a && ct.State.Status != "created" {
					t.Fatalf("listed %+v", ct)
				}
			}
			slices.Sort(ids)
			want := slices.Clone(c.want)
			slices.Sort(want)
			if !slices.Equal(ids, want) {
				t.Fatalf("ids %v, want %v", ids, want)
			}
		})
	}

	raw, err := e.c.ListContainersRaw(e.ctx(10 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, m := range raw {
		if m["Id"] != a && m["Id"] != b {
			continue
		}
		seen++
		for _, k := range []string{"Id", "Names", "Image", "ImageID", "Command", "Created", "Ports", "Labels", "State", "Status", "HostConfig", "NetworkSettings", "Mounts"} {
			if _, ok := m[k]; !ok {
				t.Fatalf("key %s missing: %v", k, m)
			}
		}
		if _, ok := m["Created"].(int64); !ok {
			t.Fatalf("Created is %T", m["Created"])
		}
		if names, _ := m["Names"].([]any); len(names) != 1 || names[0] != "/"+e.name("a") && names[0] != "/"+e.name("b") {
			t.Fatalf("Names %v", m["Names"])
		}
	}
	if seen != 2 {
		t.Fatalf("raw list has %d of our 2 containers", seen)
	}
}
