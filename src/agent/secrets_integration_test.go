package agent

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"reagent/src/config"
)

// The device secret is the wampcra key and the registry password: with
// every debug log switched on (-debug, -debugMessaging) through a connect,
// an app install (registry auth) and a stop, it appears in no log line and
// nowhere on stderr. pprof (-profiling) listens on loopback only.
func TestBinarySecretNeverLoggedAndPprofOnLoopback(t *testing.T) {
	e := newAppsEnv(t, 3*time.Minute)
	path, agentDir := e.newDevice(t)
	fl, err := config.LoadFlock(path)
	if err != nil {
		t.Fatal(err)
	}
	secret := fl.Secret.Reveal()
	a := app{key: appKey(t), name: "quiet", version: "1"}
	e.push(t, a, "1", cmdService)

	port := freePort(t)
	p := startBinary(t, path, agentDir, "-debug", "-debugMessaging", "-profiling", "-profilingPort", strconv.Itoa(port))
	if err := e.cloud.AwaitDeviceStatus(e.ctx, e.serial, "CONNECTED"); err != nil {
		t.Fatal(err)
	}
	e.request(t, a.requested("RUNNING"), nil)
	e.await(t, a.key, "RUNNING")

	addrs := listeners(t, port)
	if len(addrs) == 0 {
		t.Fatalf("nothing listens on port %d", port)
	}
	for _, ad := range addrs {
		if ad != "127.0.0.1" {
			t.Fatalf("pprof listens on %s:%d, want loopback only", ad, port)
		}
	}
	conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
	if err != nil {
		t.Fatalf("pprof not reachable on loopback: %v", err)
	}
	fmt.Fprintf(conn, "GET /debug/pprof/ HTTP/1.0\r\n\r\n")
	status, _ := bufio.NewReader(conn).ReadString('\n')
	conn.Close()
	if !strings.Contains(status, "200") {
		t.Fatalf("pprof answered %q", status)
	}

	e.request(t, a.requested("PRESENT"), nil)
	e.await(t, a.key, "PRESENT")
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	logText, err := os.ReadFile(filepath.Join(agentDir, "reagent.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(logText), `"level":"debug"`) || !strings.Contains(string(logText), "RUNNING") {
		t.Fatal("the log lacks the debug lines this test relies on")
	}
	if strings.Contains(string(logText), secret) {
		t.Fatal("the device secret is in the agent log")
	}
	if strings.Contains(p.stderrText(), secret) {
		t.Fatal("the device secret is on stderr")
	}
}

// freePort is a TCP port nothing listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// listeners are the local IPv4 addresses with a socket listening on port,
// read from /proc/net/tcp (and tcp6: an IPv6 wildcard would show as "::").
func listeners(t *testing.T, port int) []string {
	t.Helper()
	var out []string
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			fields := strings.Fields(line)
			if len(fields) < 4 || fields[3] != "0A" { // 0A = LISTEN
				continue
			}
			host, portHex, ok := strings.Cut(fields[1], ":")
			if !ok {
				continue
			}
			if p, err := strconv.ParseUint(portHex, 16, 16); err != nil || int(p) != port {
				continue
			}
			out = append(out, hexAddr(host))
		}
	}
	return out
}

// hexAddr renders /proc/net/tcp's little-endian hex IPv4 (or "::"-style
// IPv6) address.
func hexAddr(h string) string {
	if len(h) == 8 {
		var b [4]byte
		for i := 0; i < 4; i++ {
			v, _ := strconv.ParseUint(h[2*i:2*i+2], 16, 8)
			b[3-i] = byte(v)
		}
		return net.IP(b[:]).String()
	}
	if strings.Trim(h, "0") == "" {
		return "::"
	}
	return "ipv6:" + h
}
