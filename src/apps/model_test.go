package apps

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"reagent/src/backend"
	"reagent/src/docker"
	"reagent/src/errdefs"
	"reagent/src/store"
)

func TestNames(t *testing.T) {
	prod := Key{AppKey: 42, Stage: StageProd}
	dev := Key{AppKey: 42, Stage: StageDev}
	tests := []struct {
		name, got, want string
	}{
		{"prod container", ContainerName(prod, "MyApp"), "prod_42_myapp"},
		{"dev container", ContainerName(dev, "my-app_2"), "dev_42_my-app_2"},
		{"publish log", PublishLogName(42, "MyApp"), "pub_42_myapp"},
		{"image name armv7", ImageName(prod, "armv7", "MyApp"), "prod_armv7_42_myapp"},
		{"repo", ImageRepo("Registry.IronFlock.com/", "apps/", prod, "arm64", "MyApp"), "registry.ironflock.com/apps/prod_arm64_42_myapp"},
		{"prod ref", ImageRef("reg/apps/prod_amd64_42_x", StageProd, "1.2.0"), "reg/apps/prod_amd64_42_x:1.2.0"},
		{"dev ref has no tag", ImageRef("reg/apps/dev_amd64_42_x", StageDev, "1.2.0"), "reg/apps/dev_amd64_42_x"},
		{"registry host", RegistryHost("https://Reg.example:5000/x/"), "reg.example:5000"},
		{"registry host plain", RegistryHost("127.0.0.1:5001/"), "127.0.0.1:5001"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Fatalf("got %q, want %q", tc.got, tc.want)
			}
		})
	}
}

func TestValidateAppName(t *testing.T) {
	for _, ok := range []string{"a", "MyApp", "my-app_2", "9lives", strings.Repeat("x", 100)} {
		if err := ValidateAppName(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-x", "_x", "a/b", "../x", "a.b", "a b", "ä", strings.Repeat("x", 101), "x\n"} {
		err := ValidateAppName(bad)
		if !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%q accepted (err %v)", bad, err)
		}
	}
}

func TestLabelsRoundTrip(t *testing.T) {
	k := Key{AppKey: 9, Stage: StageProd}
	got, ok := keyFromLabels(appLabels(k, "Foo", "serial-1"))
	if !ok || got != k {
		t.Fatalf("keyFromLabels(appLabels) = %v %v", got, ok)
	}
	for _, l := range []map[string]string{
		nil,
		{LabelAppKey: "9", LabelStage: "PROD"}, // not managed
		{LabelManaged: "true", LabelAppKey: "x", LabelStage: "PROD"},
		{LabelManaged: "true", LabelAppKey: "9", LabelStage: "TEST"},
		{LabelManaged: "true", LabelAppKey: "0", LabelStage: "DEV"},
	} {
		if _, ok := keyFromLabels(l); ok {
			t.Errorf("%v read as an app", l)
		}
	}
}

// The vectors were computed independently:
// printf '%s' 'ironflock/app-cred/v1|serial-1|42|PROD|3' | openssl dgst -sha256 -hmac cred-key-xyz -binary | base64
func TestAppCredentialVector(t *testing.T) {
	tests := []struct {
		name           string
		k              Key
		epoch          uint64
		wantID, wantSK string
	}{
		{"prod epoch 3", Key{AppKey: 42, Stage: StageProd}, 3, "app-42-prod-e3@serial-1", "iUNqyijBA02hiL+Npztftmk1KMZsIsHxrULdHAMchfE="},
		{"dev epoch 0 is 1", Key{AppKey: 42, Stage: StageDev}, 0, "app-42-dev-e1@serial-1", "8liGJIef0shOIGcQTv2OtOUMxDKnJWfoVZcRMDSU5l4="},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, secret := AppCredential("cred-key-xyz", "serial-1", tc.k, tc.epoch)
			if id != tc.wantID || secret != tc.wantSK {
				t.Fatalf("got %s %s, want %s %s", id, secret, tc.wantID, tc.wantSK)
			}
		})
	}
}

func envMap(vars []envVar) map[string]string {
	m := map[string]string{}
	for _, v := range vars {
		m[v.Name] = v.Value
	}
	return m
}

func TestComposeEnv(t *testing.T) {
	fl := testFlock()
	var warnings []string
	in := envInput{
		Key: Key{AppKey: 42, Stage: StageProd}, AppName: "demo", Flock: fl, CredKey: "cred-key-xyz", Epoch: 3,
		InstanceKey: 5, BaseURL: "https://studio.test", LANIP: "192.168.1.5",
		Environment: json.RawMessage(`{"GREETING":{"value":"hi\nthere"},"NUM":{"value":42},"FLAG":{"value":true},
			"APP_AUTH_SECRET":{"value":"stolen"},"bad/name":{"value":"x"},"NULLED":{"value":null},"DEVICE_NAME":{"value":"mine"}}`),
		Template: json.RawMessage(`{"GREETING":{"defaultValue":"default"},"URL":{"defaultValue":"http://x"},
			"OBJ":{"defaultValue":{"a":1}}}`),
		HostPorts: []hostPort{{Protocol: "tcp", Declared: 80, Host: 40001}},
	}
	vars := composeEnv(in, func(s string) { warnings = append(warnings, s) })
	got := envMap(vars)
	want := map[string]string{
		"DEVICE_SERIAL_NUMBER": "serial-1", "ENV": "PROD", "DEVICE_KEY": "2", "SWARM_KEY": "1", "APP_KEY": "42",
		"APP_NAME": "demo", "DEVICE_ENDPOINT_URL": "ws://host.docker.internal:8080/ws-re-dev", "TUNNEL_DOMAIN": "localhost",
		"APP_AUTH_ID": "app-42-prod-e3@serial-1", "APP_AUTH_SECRET": "iUNqyijBA02hiL+Npztftmk1KMZsIsHxrULdHAMchfE=",
		"DEVICE_LAN_IP": "192.168.1.5", "INSTANCE_KEY": "5", "RESWARM_URL": "https://studio.test",
		"DEVICE_URL": "https://studio.test/owner/swarms/swarm/settings/devices/dev-1",
		"GREETING":   `hi\nthere`, "NUM": "42", "FLAG": "true", "DEVICE_NAME": "mine",
		"URL": "http://x", // exact-name match: DEVICE_ENDPOINT_URL does not count as URL
		"OBJ": `{"a":1}`, "DEVICE_PORT_FOR_80": "40001",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	for _, absent := range []string{"NULLED", "bad/name", "DEVICE_SECRET"} {
		if _, ok := got[absent]; ok {
			t.Errorf("%s is set", absent)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d variables, want %d: %v", len(got), len(want), got)
	}
	if !slices.ContainsFunc(warnings, func(s string) bool { return strings.Contains(s, "APP_AUTH_SECRET") }) ||
		!slices.ContainsFunc(warnings, func(s string) bool { return strings.Contains(s, "bad/name") }) {
		t.Errorf("warnings %v lack the reserved and the invalid name", warnings)
	}

	t.Run("no cred key, no base url", func(t *testing.T) {
		in := envInput{Key: Key{AppKey: 1, Stage: StageDev}, AppName: "d", Flock: fl}
		got := envMap(composeEnv(in, func(string) {}))
		for _, absent := range []string{"APP_AUTH_ID", "APP_AUTH_SECRET", "RESWARM_URL", "DEVICE_URL", "INSTANCE_KEY", "DEVICE_LAN_IP"} {
			if _, ok := got[absent]; ok {
				t.Errorf("%s is set", absent)
			}
		}
		if got["ENV"] != "DEV" {
			t.Errorf("ENV = %q", got["ENV"])
		}
	})
}

func TestTunnelDomainAndEndpoint(t *testing.T) {
	tests := []struct {
		env, endpoint, appliance, want string
	}{
		{"", "wss://devices.datapods.io/ws", "", "app.ironflock.dev"},
		{"", "wss://cbw.record-evolution.com/ws", "", "app.ironflock.com"},
		{"", "wss://cbw.ironflock.com/ws", "", "localhost"},
		{"production", "", "", "app.ironflock.com"},
		{"test", "", "", "app.ironflock.dev"},
		{"local", "", "appliance.example", "appliance.example"},
	}
	for _, tc := range tests {
		fl := testFlock()
		fl.Environment, fl.DeviceEndpointURL, fl.ApplianceDomain = tc.env, tc.endpoint, tc.appliance
		if got := tunnelDomain(fl); got != tc.want {
			t.Errorf("%+v: %q", tc, got)
		}
	}
	for in, want := range map[string]string{
		"ws://localhost:8080/ws-re-dev": "ws://host.docker.internal:8080/ws-re-dev",
		"ws://127.0.0.1/ws":             "ws://host.docker.internal/ws",
		"ws://[::1]:80/ws":              "ws://host.docker.internal:80/ws",
		"wss://cbw.ironflock.com/ws":    "wss://cbw.ironflock.com/ws",
	} {
		if got := containerEndpoint(in); got != want {
			t.Errorf("containerEndpoint(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestEnvFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "env")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, stale := range []string{"DEVICE_SECRET.txt", "OLD.txt"} {
		if err := os.WriteFile(filepath.Join(dir, stale), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	big := strings.Repeat("b", maxEnvValue+1)
	vars := []envVar{{"A", "1"}, {"BIG", big}}
	if err := writeEnvFiles(dir, vars); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("env dir mode %v, %v", fi.Mode(), err)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
		info, _ := e.Info()
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", e.Name(), info.Mode())
		}
	}
	if !slices.Equal(names, []string{"A.txt", "BIG.txt"}) {
		t.Fatalf("files %v", names)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "BIG.txt")); string(b) != big {
		t.Fatal("BIG.txt content")
	}
	if env := dockerEnv(vars); !slices.Equal(env, []string{"A=1"}) {
		t.Fatalf("docker env %v: an oversized value must only be a file", env)
	}
}

// Unchanged env files are not rewritten (same inode), changed, widened or
// replaced ones are.
func TestEnvFilesRewriteOnlyChanged(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "env")
	if err := writeEnvFiles(dir, []envVar{{"A", "1"}, {"B", "2"}, {"C", "3"}}); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "C.txt"), 0o644); err != nil { // someone widened it
		t.Fatal(err)
	}
	inode := func(name string) uint64 {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Ino
	}
	a, b, c := inode("A.txt"), inode("B.txt"), inode("C.txt")
	if err := writeEnvFiles(dir, []envVar{{"A", "1"}, {"B", "22"}, {"C", "3"}}); err != nil {
		t.Fatal(err)
	}
	if inode("A.txt") != a {
		t.Error("A.txt rewritten with the same value")
	}
	if inode("B.txt") == b {
		t.Error("B.txt kept with a changed value")
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "B.txt")); string(got) != "22" {
		t.Errorf("B.txt = %q", got)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "C.txt")); inode("C.txt") == c || fi.Mode().Perm() != 0o600 {
		t.Errorf("C.txt mode %v: a widened file must be replaced with a 0600 one", fi.Mode())
	}
}

func TestRestartTracker(t *testing.T) {
	tr := newRestartTracker(time.Second, 10*time.Second, time.Minute, func() float64 { return 0.5 })
	t0 := time.Unix(1000, 0)
	var got []time.Duration
	var reasons []string
	for i := 0; i < 6; i++ {
		d, why := tr.Next("exited with status code 1", t0, t0.Add(time.Second))
		got = append(got, d)
		reasons = append(reasons, why)
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}
	if !slices.Equal(got, want) {
		t.Fatalf("delays %v, want %v", got, want)
	}
	if reasons[2] != "restarting in 4s (3rd restart): exited with status code 1" {
		t.Fatalf("reason %q", reasons[2])
	}
	// A run of a healthy length starts the count over.
	if d, why := tr.Next("exited with status code 2", t0, t0.Add(time.Minute)); d != time.Second || !strings.Contains(why, "(1st restart)") {
		t.Fatalf("after a healthy run: %v %q", d, why)
	}
	tr.Next("x", t0, t0)
	tr.Healthy(t0, t0.Add(30*time.Second))
	if tr.Count() != 2 {
		t.Fatalf("reset before the healthy period: count %d", tr.Count())
	}
	tr.Healthy(t0, t0.Add(time.Minute))
	if tr.Count() != 0 {
		t.Fatalf("not reset after the healthy period: count %d", tr.Count())
	}
	// Jitter stays within [0.8, 1.2).
	for _, r := range []float64{0, 0.999} {
		j := newRestartTracker(10*time.Second, time.Minute, time.Hour, func() float64 { return r })
		d, _ := j.Next("x", time.Time{}, time.Time{})
		if d < 8*time.Second || d >= 12*time.Second {
			t.Fatalf("jitter %v out of bounds", d)
		}
	}
	for n, w := range map[int]string{1: "1st", 2: "2nd", 3: "3rd", 4: "4th", 11: "11th", 12: "12th", 13: "13th", 21: "21st", 22: "22nd", 101: "101st", 111: "111th"} {
		if ordinalWord(n) != w {
			t.Errorf("ordinal %d = %s", n, ordinalWord(n))
		}
	}
}

func TestAllocatePorts(t *testing.T) {
	busy := map[uint16]bool{40000: true, 8080: true}
	h := newHarness(t, func(o *Options) {
		o.PortFree = func(proto string, p uint16) bool { return proto != "tcp" || !busy[p] }
	})
	ctx := context.Background()
	prod := Key{AppKey: 1, Stage: StageProd}
	other := Key{AppKey: 2, Stage: StageProd}
	if err := h.st.ReserveHostPort(ctx, store.HostPort{Key: other, Protocol: "tcp", DeclaredPort: 22, HostPort: 40001}); err != nil {
		t.Fatal(err)
	}
	rules := []backend.PortRule{
		{Name: "web", Port: 80, Protocol: "http"},
		{Name: "dns", Port: 53, Protocol: "udp"},
		{Name: "kept", Port: 9000, Protocol: "tcp", HostPort: 45000},
		{Name: "local", Port: 7000, LocalIP: "10.0.0.2"},
		{Name: "dup", Port: 80, Protocol: "https"},
	}
	warn := func(string) {}
	got, err := h.m.allocatePorts(ctx, prod, rules, nil, warn)
	if err != nil {
		t.Fatal(err)
	}
	want := []hostPort{{"tcp", 80, 40002}, {"udp", 53, 40000}, {"tcp", 9000, 45000}}
	if !slices.Equal(got, want) {
		t.Fatalf("ports %v, want %v (40000/tcp busy on the host, 40001/tcp another app's)", got, want)
	}
	// The reservation is kept on the next start, even though a probe
	// would now say the port is busy (our own stopped container had it).
	busy[40002] = true
	again, err := h.m.allocatePorts(ctx, prod, rules, nil, warn)
	if err != nil || !slices.Equal(again, want) {
		t.Fatalf("second allocation %v %v, want %v", again, err, want)
	}
	// A port the engine found busy is moved.
	moved, err := h.m.allocatePorts(ctx, prod, rules, map[protoPort]bool{{"tcp", 40002}: true}, warn)
	if err != nil || moved[0].Host != 40003 {
		t.Fatalf("after the engine found 40002 busy: %v %v", moved, err)
	}
	hps, _ := h.st.HostPorts(ctx)
	if len(hps) != 4 {
		t.Fatalf("reservations %v", hps)
	}
	updated, changed := rulesWithHostPorts(rules, moved)
	if !changed || updated[0].HostPort != 40003 || updated[2].HostPort != 45000 || updated[3].HostPort != 0 {
		t.Fatalf("rules with host ports %+v %v", updated, changed)
	}

	t.Run("dev gets its declared port when free", func(t *testing.T) {
		dev := Key{AppKey: 3, Stage: StageDev}
		var warnings []string
		got, err := h.m.allocatePorts(ctx, dev, []backend.PortRule{{Port: 3000}, {Port: 8080}}, nil,
			func(s string) { warnings = append(warnings, s) })
		if err != nil {
			t.Fatal(err)
		}
		if got[0].Host != 3000 || got[1].Host == 8080 || got[1].Host < 40000 {
			t.Fatalf("dev ports %v", got)
		}
		if len(warnings) != 1 || !strings.Contains(warnings[0], "Port 8080 is already in use by another app") {
			t.Fatalf("warnings %v", warnings)
		}
	})
	t.Run("pool exhausted", func(t *testing.T) {
		h := newHarness(t, func(o *Options) {
			o.PortMin, o.PortMax = 40000, 40001
			o.PortFree = func(string, uint16) bool { return false }
		})
		_, err := h.m.allocatePorts(ctx, prod, []backend.PortRule{{Port: 80}}, nil, warn)
		if !errors.Is(err, errdefs.ErrUnavailable) {
			t.Fatalf("err %v", err)
		}
	})
}

func TestContainerSpecLevels(t *testing.T) {
	k := Key{AppKey: 42, Stage: StageDev}
	in := specInput{Key: k, AppName: "Demo", Serial: "serial-1", Image: "img", DataDir: "/apps/dev/demo", Shared: "/apps/shared",
		Ports: []hostPort{{"udp", 53, 40000}}, Caps: []string{"CAP_CHOWN"}, Nvidia: true, Stop: 3 * time.Second,
		Exists: func(p string) bool { return p == "/usr/local/cuda" }}
	s := containerSpec(in)
	if s.Name != "dev_42_demo" || !s.Tty || !s.OpenStdin || s.NetworkMode != "bridge" || s.Runtime != "nvidia" ||
		s.LogMaxSize != "10m" || s.LogMaxFiles != 3 || s.StopTimeout != 3*time.Second ||
		!slices.Equal(s.ExtraHosts, []string{"host.docker.internal:host-gateway"}) {
		t.Fatalf("spec %+v", s)
	}
	if len(s.Mounts) != 3 || s.Mounts[0].Target != "/shared" || s.Mounts[1].Target != "/data" || s.Mounts[2].Target != "/usr/local/cuda" {
		t.Fatalf("mounts %+v", s.Mounts)
	}
	if s.Labels[LabelManaged] != "true" || s.Labels[LabelAppKey] != "42" || s.Labels[LabelStage] != "DEV" ||
		s.Labels[LabelAppName] != "Demo" || s.Labels["real"] != "True" || s.Labels[LabelDevice] != "serial-1" {
		t.Fatalf("labels %v", s.Labels)
	}
	if len(s.Ports) != 1 || s.Ports[0] != (docker.PortBinding{ContainerPort: 53, Protocol: "udp", HostIP: "0.0.0.0", HostPort: 40000}) {
		t.Fatalf("ports %+v", s.Ports)
	}
	if !s.Privileged || !slices.Equal(s.CapAdd, []string{"ALL"}) || len(s.Devices) != 1 {
		t.Fatalf("level 0: %v %v %v", s.Privileged, s.CapAdd, s.Devices)
	}
	in.Level = levelCapabilities
	s = containerSpec(in)
	if s.Privileged || !slices.Equal(s.CapAdd, []string{"CAP_CHOWN"}) || len(s.Devices) != 1 || s.Devices[0].PathOnHost != "/dev" {
		t.Fatalf("level 1: %v %v %v", s.Privileged, s.CapAdd, s.Devices)
	}
	in.Level = levelPlain
	s = containerSpec(in)
	if s.Privileged || len(s.CapAdd) != 0 || len(s.Devices) != 0 {
		t.Fatalf("level 2: %v %v %v", s.Privileged, s.CapAdd, s.Devices)
	}
	if prod := containerSpec(specInput{Key: Key{AppKey: 1, Stage: StageProd}, AppName: "p"}); prod.OpenStdin || !prod.Tty {
		t.Fatal("PROD: Tty only")
	}
	// This machine's mask (CAP_SYS_RESOURCE missing); capabilities above
	// CAP_AUDIT_READ are unknown to older engines and left out.
	caps := capsFromMask(0x000001fffeffffff)
	if len(caps) != 37 || slices.Contains(caps, "CAP_BPF") || slices.Contains(caps, "CAP_SYS_RESOURCE") || !slices.Contains(caps, "CAP_SYS_ADMIN") {
		t.Fatalf("caps %d %v", len(caps), caps)
	}
}

func TestNormalizeTarget(t *testing.T) {
	for in, want := range map[string]string{
		StateBuilding: StatePresent, StateDownloading: StatePresent, StateUpdating: StatePresent,
		StateStopping: StatePresent, StateDeleting: StateRemoved, StateStarting: StateRunning,
		StateRunning: StateRunning, StateUninstalled: StateUninstalled,
	} {
		if got := NormalizeTarget(in); got != want {
			t.Errorf("%s → %s, want %s", in, got, want)
		}
	}
}

func TestValidEnvName(t *testing.T) {
	for _, ok := range []string{"A", "_x", "PATH_2", strings.Repeat("N", 255)} {
		if !validEnvName(ok) {
			t.Errorf("%.20q refused", ok)
		}
	}
	for _, bad := range []string{"", "2X", "A-B", "A B", "Ä", strings.Repeat("N", 256), "A\n"} {
		if validEnvName(bad) {
			t.Errorf("%.20q accepted", bad)
		}
	}
}
