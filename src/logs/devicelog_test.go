package logs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"reagent/src/errdefs"
)

// writeAgentLogs lays out an agent log with two lumberjack backups and
// files that only look like backups.
func writeAgentLogs(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"reagent-2024-05-01T08-00-00.000.log": `{"level":"info","time":"2024-05-01T08:00:00Z","message":"starting"}
{"level":"debug","time":"2024-05-01T08:00:01Z","message":"dbg"}
`,
		"reagent-2024-05-01T09-00-00.000.log": `{"level":"error","time":"2024-05-01T09:00:00+02:00","message":"boom","error":"disk full"}
panic: something
goroutine 1 [running]:
`,
		"reagent.log": `{"level":"warn","time":"2024-05-01T10:00:00Z","message":"slow","component":"x","error":{"code":3}}
{"level":"info","time":"2024-05-01T10:00:01Z","message":"connected"}
{"time":"2024-05-01T10:00:02Z","message":"no level"}`, // no newline at the end
		"reagent-old.log":                     `{"level":"info","time":"2024-05-01T07:00:00Z","message":"not a backup"}` + "\n",
		"other-2024-05-01T08-00-00.000.log":   `{"level":"info","time":"2024-05-01T07:00:00Z","message":"another log"}` + "\n",
		"reagent-2024-05-01T07-00-00.000.txt": `{"level":"info","time":"2024-05-01T07:00:00Z","message":"another ext"}` + "\n",
	}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "reagent.log")
}

func TestQueryDeviceLogs(t *testing.T) {
	file := writeAgentLogs(t)
	ts := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	all := []string{
		"2024-05-01T08:00:00Z INFO starting",
		"2024-05-01T07:00:00Z ERROR boom: disk full",
		"panic: something",
		"goroutine 1 [running]:",
		`2024-05-01T10:00:00Z WARN slow: {"code":3}`,
		"2024-05-01T10:00:01Z INFO connected",
		"2024-05-01T10:00:02Z ??? no level",
	}
	tests := []struct {
		name string
		q    DeviceQuery
		want []string
	}{
		{"defaults: info and up, every file oldest first", DeviceQuery{}, all},
		{"debug", DeviceQuery{Level: "debug"}, append(all[:1:1], append([]string{"2024-05-01T08:00:01Z DEBUG dbg"}, all[1:]...)...)},
		{"unknown level means info", DeviceQuery{Level: "loud"}, all},
		{"upper-case level", DeviceQuery{Level: "ERROR"}, all[1:4]},
		{"non-JSON lines inherit the level before them", DeviceQuery{Level: "error"}, all[1:4]},
		{"tail", DeviceQuery{Tail: 2}, all[5:]},
		{"since", DeviceQuery{Since: ts("2024-05-01T10:00:00Z")}, all[4:]},
		{"until (exclusive)", DeviceQuery{Until: ts("2024-05-01T08:00:00Z")}, all[1:4]},
		{"since and until", DeviceQuery{Since: ts("2024-05-01T08:00:00Z"), Until: ts("2024-05-01T10:00:01Z")}, append(all[:1:1], all[4])},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := QueryDeviceLogs(context.Background(), file, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(res.Lines, tc.want) {
				t.Fatalf("lines\n got  %q\n want %q", res.Lines, tc.want)
			}
			if res.FilesScanned != 3 || res.Truncated || !res.Oldest.Equal(ts("2024-05-01T08:00:00Z")) || res.DeviceTime.IsZero() {
				t.Fatalf("files %d truncated %v oldest %v device time %v", res.FilesScanned, res.Truncated, res.Oldest, res.DeviceTime)
			}
		})
	}
}

func TestQueryDeviceLogsMissing(t *testing.T) {
	_, err := QueryDeviceLogs(context.Background(), "", DeviceQuery{})
	if err == nil || err.Error() != "no agent log path configured" || !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("no path: %v", err)
	}
	res, err := QueryDeviceLogs(context.Background(), filepath.Join(t.TempDir(), "none", "reagent.log"), DeviceQuery{})
	if err != nil || len(res.Lines) != 0 || res.Lines == nil || res.FilesScanned != 0 || !res.Oldest.IsZero() {
		t.Fatalf("no file: %+v, %v", res, err)
	}
}

// The newest lines are kept within 4 MiB; tail never goes beyond 5000.
func TestQueryDeviceLogsCaps(t *testing.T) {
	file := filepath.Join(t.TempDir(), "reagent.log")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("p", 1000)
	for i := range 6000 {
		fmt.Fprintf(f, `{"level":"info","time":"2024-05-01T10:00:00Z","message":"%05d %s"}`+"\n", i, pad)
	}
	fmt.Fprintf(f, "%s\n", strings.Repeat("L", 3<<20)) // one long non-JSON line, cut at 1 MiB
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	res, err := QueryDeviceLogs(context.Background(), file, DeviceQuery{Tail: 100000})
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, l := range res.Lines {
		total += len(l) + 1
	}
	last := res.Lines[len(res.Lines)-1]
	if !res.Truncated || total > MaxQueryBytes || total < MaxQueryBytes-2000 || len(last) != maxDeviceLine || last[0] != 'L' {
		t.Fatalf("%d lines, %d bytes, truncated %v, last line %d bytes", len(res.Lines), total, res.Truncated, len(last))
	}
	if !strings.Contains(res.Lines[len(res.Lines)-2], "05999 ") {
		t.Fatalf("newest JSON line missing: %.40q", res.Lines[len(res.Lines)-2])
	}

	res, err = QueryDeviceLogs(context.Background(), file, DeviceQuery{Tail: 3})
	if err != nil || len(res.Lines) != 3 || res.Truncated {
		t.Fatalf("tail 3: %d lines, truncated %v, %v", len(res.Lines), res.Truncated, err)
	}
}

// What NewAgentLogger writes is what QueryDeviceLogs reads.
func TestQueryDeviceLogsOfAgentLogger(t *testing.T) {
	file := filepath.Join(t.TempDir(), "log", "reagent.log")
	log, closer, err := NewAgentLogger(AgentLogOptions{File: file})
	if err != nil {
		t.Fatal(err)
	}
	log.Info().Str("component", "x").Msg("hello")
	log.Error().Err(errors.New("it broke")).Msg("step failed")
	if err := closer.Close(); err != nil {
		t.Fatal(err)
	}
	res, err := QueryDeviceLogs(context.Background(), file, DeviceQuery{})
	if err != nil || len(res.Lines) != 2 {
		t.Fatalf("%q, %v", res.Lines, err)
	}
	for i, suffix := range []string{" INFO hello", " ERROR step failed: it broke"} {
		stamp, rest, _ := strings.Cut(res.Lines[i], " ")
		if _, err := time.Parse(time.RFC3339, stamp); err != nil || " "+rest != suffix {
			t.Fatalf("line %d %q, want <time>%s", i, res.Lines[i], suffix)
		}
	}
}

func TestQueryDeviceLogsCanceled(t *testing.T) {
	file := writeAgentLogs(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := QueryDeviceLogs(ctx, file, DeviceQuery{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
}
