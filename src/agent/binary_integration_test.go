package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The real binary, built once for the tests that need a process: exit
// codes, signals, the single-instance lock.
var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func reagentBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "reagent-bin-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "reagent")
		cmd := exec.Command("go", "build", "-o", binPath, "reagent/src")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = errors.New("go build: " + err.Error() + "\n" + string(out))
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// proc is a running reagent process.
type proc struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	done   chan struct{}
	err    error // Wait's result, valid after done
}

func startBinary(t *testing.T, flockPath, agentDir string, extraFlags ...string) *proc {
	t.Helper()
	p := &proc{stderr: &bytes.Buffer{}, done: make(chan struct{})}
	args := append([]string{"-config", flockPath, "-agentDir", agentDir,
		"-logFile", filepath.Join(agentDir, "reagent.log"), "-update=false", "-env", "local"}, extraFlags...)
	p.cmd = exec.Command(reagentBinary(t), args...)
	p.cmd.Stderr = &syncWriter{w: p.stderr}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("stderr of pid %d: %s", p.cmd.Process.Pid, p.stderr.String())
			dumpLog(t, filepath.Join(agentDir, "reagent.log"))
		}
	})
	return p
}

// wait waits for the process to exit within d and returns its exit code.
func (p *proc) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("reagent (pid %d) still running after %v", p.cmd.Process.Pid, d)
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		t.Fatal(p.err)
	}
	return 0
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

func (p *proc) stderrText() string {
	if sw, ok := p.cmd.Stderr.(*syncWriter); ok {
		sw.mu.Lock()
		defer sw.mu.Unlock()
	}
	return p.stderr.String()
}

// A wrong secret: the router rejects the signature and the agent exits 1
// with a message naming the authid and the endpoint.
func TestBinaryWrongSecretExits1(t *testing.T) {
	cloud := startCloud(t)
	dir := t.TempDir()
	fl, path, err := cloud.NewDevice(dir)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(readFile(t, path)), &raw); err != nil {
		t.Fatal(err)
	}
	raw["secret"] = "definitely-not-the-secret"
	b, _ := json.Marshal(raw)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	p := startBinary(t, path, filepath.Join(dir, "agent"))
	if code := p.wait(t, 30*time.Second); code != 1 {
		t.Fatalf("exit code %d, want 1; stderr: %s", code, p.stderrText())
	}
	msg := p.stderrText()
	t.Logf("stderr: %s", msg)
	if !strings.Contains(msg, "authid "+fl.AuthID()) || !strings.Contains(msg, cloud.RouterURL()) {
		t.Fatalf("message does not name authid %s and endpoint: %q", fl.AuthID(), msg)
	}
	if strings.Contains(msg, "definitely-not-the-secret") {
		t.Fatal("the secret is in the message")
	}
	if len(cloud.StatusHistory(fl.SerialNumber)) != 0 {
		t.Fatal("a rejected device reported a status")
	}
}

// SIGTERM ends a connected agent with exit 0 within 5 s; while it runs, a second agent with the same agent dir
// exits non-zero with a clear message.
func TestBinarySigtermAndSingleInstance(t *testing.T) {
	cloud := startCloud(t)
	dir := t.TempDir()
	fl, path, err := cloud.NewDevice(dir)
	if err != nil {
		t.Fatal(err)
	}
	agentDir := filepath.Join(dir, "agent")
	p := startBinary(t, path, agentDir)
	ctx := deadline(t, 30*time.Second)
	if err := cloud.AwaitDeviceStatus(ctx, fl.SerialNumber, "CONNECTED"); err != nil {
		t.Fatal(err)
	}

	second := startBinary(t, path, agentDir)
	if code := second.wait(t, 10*time.Second); code == 0 {
		t.Fatal("a second agent with the same agent dir exited 0")
	}
	if msg := second.stderrText(); !strings.Contains(msg, "another reagent is already running") ||
		!strings.Contains(msg, agentDir) {
		t.Fatalf("second agent's message: %q", msg)
	}
	if st, _ := cloud.DeviceStatus(fl.SerialNumber); st.Status != "CONNECTED" {
		t.Fatalf("the first agent lost its connection: %+v", st)
	}

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t, 5*time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d; stderr: %s", code, p.stderrText())
	}
	// The router publishes the testament on any session end (nexus and
	// Crossbar alike), so a stopped device shows DISCONNECTED.
	if err := cloud.AwaitDeviceStatus(ctx, fl.SerialNumber, "DISCONNECTED"); err != nil {
		t.Fatal(err)
	}
}

// kill -9: the router fires the testament the agent installed and the
// cloud marks the device DISCONNECTED.
func TestBinaryKilledFiresTestament(t *testing.T) {
	cloud := startCloud(t)
	dir := t.TempDir()
	fl, path, err := cloud.NewDevice(dir)
	if err != nil {
		t.Fatal(err)
	}
	p := startBinary(t, path, filepath.Join(dir, "agent"))
	ctx := deadline(t, 30*time.Second)
	if err := cloud.AwaitDeviceStatus(ctx, fl.SerialNumber, "CONNECTED"); err != nil {
		t.Fatal(err)
	}
	st, _ := cloud.DeviceStatus(fl.SerialNumber)
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	p.wait(t, 5*time.Second)
	if err := cloud.AwaitDeviceStatus(ctx, fl.SerialNumber, "DISCONNECTED"); err != nil {
		t.Fatal(err)
	}
	if !hasTestament(cloud, fl.SerialNumber, st.SessionID) {
		t.Fatalf("testaments %v lack session %d", cloud.Testaments(), st.SessionID)
	}
}
