package agent

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"reagent/src/config"
)

// -offline: no socket at all. The agent builds no cloud link, never dials
// the endpoint, runs until its context ends and returns nil.
func TestOfflineNeverDials(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })

	dir := t.TempDir()
	raw := `{"secret":"s","swarm_key":1,"device_key":2,"serial_number":"offline-1","device_endpoint_url":"ws://` +
		ln.Addr().String() + `/ws-re-dev"}`
	fl, err := config.ParseFlock([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "device.flock")
	if err := fl.Save(path); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(dir, "reagent.log")
	flags, err := config.ParseFlags([]string{"-config", path, "-agentDir", filepath.Join(dir, "agent"),
		"-logFile", logFile, "-offline"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}

	b, err := buildParts(Options{Flags: flags, Flock: fl}, flags.Paths(), zerolog.Nop(), func() {})
	if err != nil {
		t.Fatal(err)
	}
	b.close()
	for _, p := range b.parts {
		if _, ok := p.(*cloudLink); ok {
			t.Fatal("-offline built a cloud link")
		}
	}

	for round := 0; round < 2; round++ { // the second run proves the lock was released
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- Run(ctx, Options{Flags: flags, Flock: fl, Stdout: io.Discard, runner: &recRunner{}}) }()
		wait := deadline(t, 10*time.Second)
		if err := await(wait, func() bool {
			b, _ := readFileErr(logFile)
			return strings.Count(b, "offline: no connection to the cloud") > round
		}); err != nil {
			cancel()
			t.Fatal("the offline agent did not start")
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Run = %v", err)
			}
		case <-time.After(ShutdownTimeout + time.Second):
			t.Fatal("Run did not return after cancel")
		}
	}
	if n := accepted.Load(); n != 0 {
		t.Fatalf("the offline agent opened %d connections", n)
	}
}
