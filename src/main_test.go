package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"reagent/src/release"
)

func TestVersionAndArchWithOrWithoutConfig(t *testing.T) {
	for _, args := range [][]string{{"-version"}, {"-version", "-config", "missing.flock"}} {
		var out, errOut bytes.Buffer
		if code := run(args, &out, &errOut); code != 0 || strings.TrimSpace(out.String()) != release.Version() {
			t.Fatalf("%v: code %d, out %q, err %q", args, code, out.String(), errOut.String())
		}
	}
	for _, args := range [][]string{{"-arch"}, {"-arch", "-config", "missing.flock"}} {
		var out bytes.Buffer
		if code := run(args, &out, &bytes.Buffer{}); code != 0 || strings.TrimSpace(out.String()) != release.Arch() {
			t.Fatalf("%v: code %d, out %q", args, code, out.String())
		}
	}
}

func TestCommandLineErrorsExit2(t *testing.T) {
	var errOut bytes.Buffer
	if code := run(nil, &bytes.Buffer{}, &errOut); code != 2 {
		t.Fatalf("no -config: code %d", code)
	}
	if lines := strings.Count(errOut.String(), "\n"); lines != 1 {
		t.Fatalf("want a one-line hint, got %q", errOut.String())
	}
	if code := run([]string{"-help"}, &bytes.Buffer{}, &bytes.Buffer{}); code != 0 {
		t.Fatalf("-help: code %d", code)
	}
}

// Each broken .flock makes the agent exit 1 with one line naming the file,
// the field and the problem, and leaves the file byte-identical.
func TestBadFlockExits1AndLeavesFileAlone(t *testing.T) {
	good, err := os.ReadFile(filepath.Join("..", "test-config.flock"))
	if err != nil {
		t.Fatal(err)
	}
	replace := func(old, new string) string {
		s := strings.Replace(string(good), old, new, 1)
		if s == string(good) {
			t.Fatalf("fixture does not contain %q", old)
		}
		return s
	}
	cases := []struct {
		name, content, want string
		noFile              bool
	}{
		{name: "missing file", noFile: true, want: "file does not exist"},
		{name: "invalid json", content: string(good[:len(good)/2]), want: "invalid JSON"},
		{name: "no secret", content: replace(`"secret": "devcloud-device-secret-change-me",`, ""), want: `field "secret": is missing`},
		{name: "device_key string", content: replace(`"device_key": 1`, `"device_key": "1"`), want: `field "device_key": expected a number`},
		{name: "http endpoint", content: replace(`"ws://localhost:8080/ws-re-dev"`, `"http://x"`), want: `field "device_endpoint_url"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "device.flock")
			if !c.noFile {
				if err := os.WriteFile(p, []byte(c.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var errOut bytes.Buffer
			code := run([]string{"-config", p, "-agentDir", t.TempDir(), "-logFile", filepath.Join(t.TempDir(), "r.log")}, &bytes.Buffer{}, &errOut)
			msg := errOut.String()
			if code != 1 || strings.Count(msg, "\n") != 1 || !strings.Contains(msg, p) || !strings.Contains(msg, c.want) {
				t.Fatalf("code %d, message %q; want exit 1, one line with %q and %q", code, msg, p, c.want)
			}
			if !c.noFile {
				after, _ := os.ReadFile(p)
				if string(after) != c.content {
					t.Fatal("the .flock was changed")
				}
			}
		})
	}
}

// The agent binary links no test code: no testing package (a test helper
// in a production package drags it in), no test peers or test images.
func TestBinaryLinksNoTestCode(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	forbidden := []string{"testing", "net/http/httptest", "reagent/src/devcloud", "reagent/src/testimage", "reagent/src/store/storetest"}
	deps := strings.Fields(string(out))
	if len(deps) < 50 || !slices.Contains(deps, "reagent/src/agent") {
		t.Fatalf("go list -deps gave an implausible list: %q", deps)
	}
	for _, d := range deps {
		if slices.Contains(forbidden, d) || strings.HasPrefix(d, "testing/") {
			t.Errorf("the agent binary links %s", d)
		}
	}
}
