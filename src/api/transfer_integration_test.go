package api

// Integration test of write_data through a real router: devcloud (nexus
// router with wampcra, the backend procedures, check_privilege) and a real
// wamp.Session of a device with the procedures registered by Register, the
// way src/agent wires them. Studio calls go over JSON as the cloud's do.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gammazero/nexus/v3/client"
	nx "github.com/gammazero/nexus/v3/wamp"
	"github.com/rs/zerolog"

	"reagent/src/backend"
	"reagent/src/config"
	"reagent/src/devcloud"
	"reagent/src/system"
	"reagent/src/transfer"
	"reagent/src/wamp"
)

// logRecorder stands in for the log relay's TransferProgress and Write.
type logRecorder struct {
	mu       sync.Mutex
	progress []float64
	messages []string
}

func (l *logRecorder) get() ([]float64, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.progress), slices.Clone(l.messages)
}

type transferDevice struct {
	cloud  *devcloud.Cloud
	serial string
	apps   string // <appsDir>; uploads land in <appsDir>/build
	logs   *logRecorder
}

// startTransferDevice starts devcloud and a connected device session
// serving the api procedures with a real transfer.Manager.
func startTransferDevice(t *testing.T) *transferDevice {
	t.Helper()
	cloud := devcloud.StartTest(t, devcloud.Options{Log: zerolog.Nop(),
		Users: []devcloud.User{{AuthID: "101", Secret: "reader-secret", Privileges: []string{"READ"}}}})
	fl, _, err := cloud.NewDevice(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	d := &transferDevice{cloud: cloud, serial: fl.SerialNumber, apps: filepath.Join(t.TempDir(), "apps"), logs: &logRecorder{}}
	m, err := transfer.New(transfer.Options{
		Dir: filepath.Join(d.apps, "build"),
		Progress: func(name, fileName string, pct float64) {
			d.logs.mu.Lock()
			d.logs.progress = append(d.logs.progress, pct)
			d.logs.mu.Unlock()
		},
		Message: func(name, text string) {
			d.logs.mu.Lock()
			d.logs.messages = append(d.logs.messages, name+": "+text)
			d.logs.mu.Unlock()
		},
		Log: zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	sess, err := wamp.New(wamp.Options{Flock: fl, Log: zerolog.Nop(), HeartbeatInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	sess.SetBackend(backend.New(sess, fl, wamp.DefaultCallTimeout).ForSession(func() string { return "linux test" }))
	Register(sess, Deps{
		Flock:     fl,
		Flags:     &config.Flags{AppsDir: d.apps},
		Runner:    &recordingRunner{},
		Stats:     func(context.Context) (system.StatsPayload, error) { return system.StatsPayload{}, nil },
		Transfers: m,
		Log:       zerolog.Nop(),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sess.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("the session did not stop")
		}
	})
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := sess.WaitConnected(wctx); err != nil {
		t.Fatalf("the device did not connect: %v", err)
	}
	return d
}

func (d *transferDevice) call(ctx context.Context, authid string, args ...any) (*nx.Result, error) {
	return d.cloud.CallDevice(ctx, authid, d.serial, ProcWriteData, nx.List(args), nil)
}

// wampError returns the URI and text of an ERROR in the reference shape.
func wampError(t *testing.T, err error) (string, string) {
	t.Helper()
	var rpc client.RPCError
	if !errors.As(err, &rpc) || rpc.Err == nil {
		t.Fatalf("want a WAMP ERROR, got %v", err)
	}
	if len(rpc.Err.Arguments) != 1 || len(rpc.Err.ArgumentsKw) != 0 {
		t.Fatalf("error args %v kwargs %v, want [{error: text}]", rpc.Err.Arguments, rpc.Err.ArgumentsKw)
	}
	m, _ := rpc.Err.Arguments[0].(map[string]any)
	text, _ := m["error"].(string)
	if text == "" {
		t.Fatalf("error args %#v, want [{error: text}]", rpc.Err.Arguments)
	}
	return string(rpc.Err.Error), text
}

func TestWriteDataThroughRouter(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a router")
	}
	d := startTransferDevice(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	parent := filepath.Dir(d.apps)

	t.Run("upload in 64 KiB chunks as system", func(t *testing.T) {
		// A real source archive, incompressible, a bit over 1 MiB.
		blob := make([]byte, 1<<20)
		if _, err := rand.Read(blob); err != nil {
			t.Fatal(err)
		}
		tgz := buildTgz(t, map[string][]byte{"Dockerfile": []byte("FROM scratch\nCOPY blob /blob\n"), "blob": blob})
		const container, file, id = "dev_42_myapp", "myapp.tgz", "1700000000000"
		final := filepath.Join(d.apps, "build", file)
		chunks := append(append([]string{"BEGIN"}, hexChunks(tgz, 64<<10)...), "END")
		for i, chunk := range chunks {
			if chunk == "END" {
				if _, err := os.Stat(final); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("%s exists before END (%v)", final, err)
				}
			}
			// total as a JSON number, as Studio sends it.
			res, err := d.call(ctx, "system", chunk, file, container, len(tgz), id)
			if err != nil {
				t.Fatalf("call %d of %d: %v", i+1, len(chunks), err)
			}
			if len(res.Arguments) != 0 || len(res.ArgumentsKw) != 0 {
				t.Fatalf("answer %v %v, want empty", res.Arguments, res.ArgumentsKw)
			}
		}
		got, err := os.ReadFile(final)
		if err != nil || !bytes.Equal(got, tgz) {
			t.Fatalf("stored %d bytes (%v), want the %d uploaded", len(got), err, len(tgz))
		}
		progress, messages := d.logs.get()
		if len(progress) == 0 || progress[len(progress)-1] != 100 {
			t.Fatalf("progress %v, want it to end at 100", progress)
		}
		want := []string{container + ": " + transfer.MsgFirstPackage, container + ": " + transfer.MsgFinished}
		if fmt.Sprint(messages) != fmt.Sprint(want) {
			t.Fatalf("messages %q", messages)
		}
		// What the build step will do with it.
		info, err := transfer.Inspect(final, transfer.Limits{})
		if err != nil || transfer.DockerfileFor(info, "amd64") != "Dockerfile" {
			t.Fatalf("inspect the upload: %+v %v", info, err)
		}
		dest := filepath.Join(d.apps, "build", "myapp")
		if err := transfer.Extract(ctx, final, dest, transfer.Limits{}); err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(filepath.Join(dest, "blob")); err != nil || !bytes.Equal(b, blob) {
			t.Fatalf("extracted blob: %d bytes, %v", len(b), err)
		}
	})

	t.Run("refused names", func(t *testing.T) {
		before := listTree(t, parent)
		cases := []struct {
			args []any
			text string
		}{
			{[]any{"BEGIN", "../x", "dev_42_myapp", 1, "t"}, "invalid file name"},
			{[]any{"BEGIN", "/etc/x", "dev_42_myapp", 1, "t"}, "invalid file name"},
			{[]any{"BEGIN", "a/b", "dev_42_myapp", 1, "t"}, "invalid file name"},
			{[]any{"00", "../../../../tmp/x", "dev_42_myapp", 1, "t"}, "invalid file name"},
			{[]any{"BEGIN", "x.tgz", "../../etc", 1, "t"}, "invalid containerName"},
			{[]any{"BEGIN", "x.tgz", "dev_42_x", -1, "t"}, "failed to parse total argument"},
			{[]any{"BEGIN", "x.tgz", "dev_42_x", 1}, "write_data takes 5 arguments"},
			{nil, "write_data takes 5 arguments"},
		}
		for _, tc := range cases {
			_, err := d.call(ctx, "system", tc.args...)
			uri, text := wampError(t, err)
			if uri != "wamp.error.invalid_argument" || !strings.HasPrefix(text, tc.text) {
				t.Errorf("%v: %s %q, want wamp.error.invalid_argument %q…", tc.args, uri, text, tc.text)
			}
		}
		if after := listTree(t, parent); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Fatalf("refused calls changed the files:\nbefore %v\nafter  %v", before, after)
		}
	})

	t.Run("state errors keep the reference's texts", func(t *testing.T) {
		_, err := d.call(ctx, "system", "00", "x.tgz", "dev_7_none", 1, "t")
		uri, text := wampError(t, err)
		if uri != "wamp.error.canceled" || text != "We received a chunk without an active transfer" {
			t.Fatalf("%s %q", uri, text)
		}
	})

	t.Run("DEVELOP is required", func(t *testing.T) {
		_, err := d.call(ctx, "101", "BEGIN", "x.tgz", "dev_42_x", 1, "t")
		if uri, _ := wampError(t, err); uri != "wamp.error.not_authorized" {
			t.Fatalf("a READ-only user got %s", uri)
		}
		for _, p := range listTree(t, filepath.Join(d.apps, "build")) {
			if strings.HasPrefix(p, ".x.tgz") {
				t.Fatalf("a refused caller started an upload: %s", p)
			}
		}
	})
}

// buildTgz makes a gzipped tar of the files, in name order.
func buildTgz(t *testing.T, files map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	names := slices.Sorted(maps.Keys(files))
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(files[n]))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(files[n]); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
