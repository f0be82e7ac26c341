package config

import (
	"bytes"
	"errors"
	"flag"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The 21 flags of the reference agent, each of which -help must list.
var allFlags = []string{"agentDir", "appsDir", "arch", "compressedBuildExtension", "config", "connTimeout",
	"dbFileName", "debug", "debugMessaging", "env", "logFile", "nmw", "offline", "ppTimeout", "prettyLogging",
	"profiling", "profilingPort", "remoteUpdateURL", "respTimeout", "update", "version"}

func TestHelpListsEveryFlag(t *testing.T) {
	var out bytes.Buffer
	_, err := ParseFlags([]string{"-help"}, &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err %v", err)
	}
	for _, name := range allFlags {
		if !strings.Contains(out.String(), "  -"+name) {
			t.Errorf("-help does not list -%s", name)
		}
	}
	if n := strings.Count(out.String(), "\n  -"); n != len(allFlags) {
		t.Errorf("-help lists %d flags, want %d", n, len(allFlags))
	}
}

func TestDefaults(t *testing.T) {
	f, err := ParseFlags([]string{"-config", "x.flock"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if f.AgentDir != DefaultAgentDir() || f.AppsDir != filepath.Join(DefaultAgentDir(), "apps") ||
		f.DBFileName != filepath.Join(DefaultAgentDir(), "reagent.db") || f.LogFile != DefaultLogFile() {
		t.Fatalf("paths %+v", f)
	}
	if f.ConnTimeout != 1250*time.Millisecond || f.ResponseTimeout != 5*time.Second || f.PingPongTimeout != 0 {
		t.Fatalf("timeouts %v %v %v", f.ConnTimeout, f.ResponseTimeout, f.PingPongTimeout)
	}
	if !f.Debug || !f.NMW || !f.Update || f.Offline || f.Profiling || f.ProfilingPort != 80 ||
		f.Env != "production" || f.CompressedBuildExtension != "tgz" || f.RemoteUpdateURL != "https://storage.googleapis.com" {
		t.Fatalf("defaults %+v", f)
	}
}

func TestDerivedPathsFollowAgentDir(t *testing.T) {
	f, err := ParseFlags([]string{"-config", "x", "-agentDir", "/srv/ag"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if f.AppsDir != "/srv/ag/apps" || f.DBFileName != "/srv/ag/reagent.db" {
		t.Fatalf("derived %q %q", f.AppsDir, f.DBFileName)
	}
	f, _ = ParseFlags([]string{"-config", "x", "-agentDir", "/srv/ag", "-appsDir", "/apps", "-dbFileName", "/db/r.db"}, &bytes.Buffer{})
	if f.AppsDir != "/apps" || f.DBFileName != "/db/r.db" {
		t.Fatalf("explicit %q %q", f.AppsDir, f.DBFileName)
	}
	if got := f.Paths().AppDataDir("PROD", "MyApp"); got != "/apps/prod/myapp" {
		t.Fatalf("app data dir %q", got)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"-env", "staging", "-config", "x"}, {"-nope"}, {"-config", "x", "extra"}} {
		var out bytes.Buffer
		if _, err := ParseFlags(args, &out); !errors.Is(err, ErrUsage) {
			t.Errorf("%v: err %v", args, err)
		}
		if out.Len() == 0 {
			t.Errorf("%v: nothing printed", args)
		}
	}
	var out bytes.Buffer
	_, _ = ParseFlags(nil, &out)
	if strings.Count(out.String(), "\n") != 1 {
		t.Errorf("no -config should print one line, got %q", out.String())
	}
	for _, args := range [][]string{{"-version"}, {"-arch"}, {"-version", "-config", "x"}} {
		if f, err := ParseFlags(args, &bytes.Buffer{}); err != nil || !(f.Version || f.Arch) {
			t.Errorf("%v: %v", args, err)
		}
	}
}

func TestChannel(t *testing.T) {
	f := &Flags{Env: "test"}
	if Channel(f, &Flock{}) != "test" || Channel(f, &Flock{Environment: "local"}) != "local" {
		t.Fatal("channel")
	}
}
