package system

import (
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

func TestParseOSRelease(t *testing.T) {
	in := "# comment\nNAME=\"Debian GNU/Linux\"\nVERSION_ID='12'\nID=debian\n\nPRETTY_NAME=\"a=b\"\nBROKEN\n  VERSION = \"12 (bookworm)\" \n"
	want := map[string]string{"NAME": "Debian GNU/Linux", "VERSION_ID": "12", "ID": "debian", "PRETTY_NAME": "a=b", "VERSION": "12 (bookworm)"}
	if got := parseOSRelease([]byte(in)); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v", got)
	}
}

func TestReleaseOf(t *testing.T) {
	tests := []struct {
		name, version, buildTime string
		want                     Release
	}{
		{"ReswarmOS", "v2.5.1-rc-20240301T1015", "", Release{"ReswarmOS", "2.5.1", "20240301T1015"}},
		{"ReswarmOS", "2.5.1-x-1", "explicit", Release{"ReswarmOS", "2.5.1", "explicit"}},
		{"Debian", "12 (bookworm)", "", Release{"Debian", "12 (bookworm)", ""}},
		{"x", "v1.0-beta", "", Release{"x", "1.0-beta", ""}},
		{"", "", "", Release{}},
	}
	for _, tc := range tests {
		if got := releaseOf(tc.name, tc.version, tc.buildTime); got != tc.want {
			t.Errorf("releaseOf(%q, %q, %q) = %+v, want %+v", tc.name, tc.version, tc.buildTime, got, tc.want)
		}
	}
}

func TestOSReleaseFiles(t *testing.T) {
	write := func(t *testing.T, dir, name, content string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const current = "NAME=\"ReswarmOS\"\nVERSION=\"v2.5.1-rc-20240301T1015\"\nID=reswarmos\n"
	tests := []struct {
		name          string
		current       string // "" → file missing
		latest        string
		wantOK        bool
		wantErr       bool
		wantCur, want Release
	}{
		{
			name: "both files", current: current,
			latest:  `{"name": "ReswarmOS", "version": "v2.6.0-rc-20240601T0800"}`,
			wantOK:  true,
			wantCur: Release{"ReswarmOS", "2.5.1", "20240301T1015"},
			want:    Release{"ReswarmOS", "2.6.0", "20240601T0800"},
		},
		{
			name: "upper-case keys and explicit build time", current: current,
			latest:  `{"NAME": "ReswarmOS", "VERSION": "2.6.0", "BUILD_TIME": "20240601"}`,
			wantOK:  true,
			wantCur: Release{"ReswarmOS", "2.5.1", "20240301T1015"},
			want:    Release{"ReswarmOS", "2.6.0", "20240601"},
		},
		{name: "no latest file", current: current},
		{name: "no os-release", latest: `{}`},
		{name: "broken latest file", current: current, latest: `{"name":`, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cur, lat := filepath.Join(dir, "os-release"), filepath.Join(dir, "latest.json")
			if tc.current != "" {
				write(t, dir, "os-release", tc.current)
			}
			if tc.latest != "" {
				write(t, dir, "latest.json", tc.latest)
			}
			r, ok, err := osReleaseFrom(cur, lat)
			if (err != nil) != tc.wantErr || ok != tc.wantOK {
				t.Fatalf("ok %v err %v", ok, err)
			}
			if ok && (r.Current != tc.wantCur || r.Latest != tc.want) {
				t.Fatalf("got %+v", r)
			}
		})
	}
}

func TestDetailedOS(t *testing.T) {
	got := DetailedOS()
	if !strings.HasPrefix(got, runtime.GOOS) || strings.Contains(got, "  ") {
		t.Fatalf("DetailedOS %q", got)
	}
	if runtime.GOOS != "linux" {
		return
	}
	kernel, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(got, " "+strings.TrimSpace(string(kernel))) {
		t.Errorf("DetailedOS %q does not end with the kernel release %q", got, kernel)
	}
	if data, err := os.ReadFile("/etc/os-release"); err == nil {
		kv := parseOSRelease(data)
		if want := joinNonEmpty("linux", kv["ID"], kv["VERSION_ID"]); !strings.HasPrefix(got, want+" ") {
			t.Errorf("DetailedOS %q, want prefix %q", got, want)
		}
	}
}
