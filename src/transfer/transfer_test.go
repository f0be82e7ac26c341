package transfer

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"reagent/src/errdefs"
)

const chunkSize = 64 << 10

// fakeClock is the Manager's time, moved by the test.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type progressCall struct {
	name, file string
	pct        float64
}

// recorder keeps what the Manager told the log relay and the reconciler.
type recorder struct {
	mu       sync.Mutex
	progress []progressCall
	messages []string // "<name>: <text>"
	cleared  []string
	dropped  []string // "<name>: <err>"
}

func (r *recorder) snapshot() recorder {
	r.mu.Lock()
	defer r.mu.Unlock()
	return recorder{progress: append([]progressCall(nil), r.progress...), messages: append([]string(nil), r.messages...),
		cleared: append([]string(nil), r.cleared...), dropped: append([]string(nil), r.dropped...)}
}

type env struct {
	m     *Manager
	rec   *recorder
	clock *fakeClock
	apps  string // <appsDir>: the parent of Dir, watched for strays
	dir   string // <appsDir>/build
}

func newEnv(t *testing.T, tweak func(*Options)) *env {
	t.Helper()
	apps := t.TempDir()
	e := &env{rec: &recorder{}, clock: &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)},
		apps: apps, dir: filepath.Join(apps, "build")}
	opts := Options{
		Dir: e.dir,
		Progress: func(name, fileName string, pct float64) {
			e.rec.mu.Lock()
			e.rec.progress = append(e.rec.progress, progressCall{name, fileName, pct})
			e.rec.mu.Unlock()
		},
		Message: func(name, text string) {
			e.rec.mu.Lock()
			e.rec.messages = append(e.rec.messages, name+": "+text)
			e.rec.mu.Unlock()
		},
		ClearHistory: func(name string) {
			e.rec.mu.Lock()
			e.rec.cleared = append(e.rec.cleared, name)
			e.rec.mu.Unlock()
		},
		Dropped: func(name string, err error) {
			e.rec.mu.Lock()
			e.rec.dropped = append(e.rec.dropped, name+": "+err.Error())
			e.rec.mu.Unlock()
		},
		Now: e.clock.Now,
	}
	if tweak != nil {
		tweak(&opts)
	}
	m, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	e.m = m
	return e
}

// temps lists the temporary upload files in Dir.
func (e *env) temps(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir(e.dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range ents {
		if strings.Contains(d.Name(), ".part-") {
			out = append(out, d.Name())
		}
	}
	return out
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func mustNotExist(t *testing.T, p string) {
	t.Helper()
	if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s exists (%v)", p, err)
	}
}

func TestValidation(t *testing.T) {
	const okName, okFile, okID = "dev_42_myapp", "myapp.tgz", "1700000000000"
	tests := []struct {
		name              string
		container, fileNm string
		id                string
	}{
		{"fileName ../x", okName, "../x", okID},
		{"fileName /etc/x", okName, "/etc/x", okID},
		{"fileName a/b", okName, "a/b", okID},
		{"fileName ..", okName, "..", okID},
		{"fileName .", okName, ".", okID},
		{"fileName hidden", okName, ".bashrc", okID},
		{"fileName empty", okName, "", okID},
		{"fileName backslash", okName, `..\x`, okID},
		{"fileName NUL", okName, "a\x00b", okID},
		{"fileName space", okName, "my app.tgz", okID},
		{"fileName too long", okName, strings.Repeat("a", 129), okID},
		{"fileName newline", okName, "a.tgz\n", okID},
		{"container empty", "", okFile, okID},
		{"container no stage", "42_myapp", okFile, okID},
		{"container other stage", "pub_42_myapp", okFile, okID},
		{"container no key", "dev_x_myapp", okFile, okID},
		{"container upper case", "dev_42_MyApp", okFile, okID},
		{"container slash", "dev_42_my/app", okFile, okID},
		{"container dot", "dev_42_my.app", okFile, okID},
		{"container dotdot", "dev_42_..", okFile, okID},
		{"container too long", "dev_42_" + strings.Repeat("a", 250), okFile, okID},
		{"id empty", okName, okFile, ""},
		{"id too long", okName, okFile, strings.Repeat("1", 129)},
		{"id control", okName, okFile, "a\nb"},
		{"id invalid utf8", okName, okFile, "\xff"},
	}
	e := newEnv(t, nil)
	before := snapshot(t, filepath.Dir(e.apps))
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := e.m.Begin(context.Background(), tc.container, tc.fileNm, tc.id, 10)
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("Begin: %v, want an invalid argument", err)
			}
			if e.m.Active(tc.container) {
				t.Fatal("a refused BEGIN left an active transfer")
			}
		})
	}
	if added := diffTrees(before, snapshot(t, filepath.Dir(e.apps))); len(added) != 0 {
		t.Fatalf("refused uploads created %v", added)
	}
	for _, good := range []struct{ container, file, id string }{
		{okName, okFile, okID},
		{"prod_1_my-app_2", "a", "x"},
		{"dev_0_a", "App-1.2_final.tar.gz", strings.Repeat("é", 64)},
		{"dev_7_b", strings.Repeat("b", 128), "id with spaces"},
	} {
		if err := e.m.Begin(context.Background(), good.container, good.file, good.id, 0); err != nil {
			t.Errorf("Begin(%q, %q, %q): %v", good.container, good.file, good.id, err)
		}
		if !e.m.Cancel(good.container) {
			t.Errorf("no transfer for %q", good.container)
		}
	}
}

func TestChunkValidation(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	for _, tc := range []struct{ name, hex string }{
		{"odd length", "abc"},
		{"not hex", "zz"},
		{"half valid", "00ff0g"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := e.m.Begin(ctx, "dev_1_a", "a.tgz", "t1", 100); err != nil {
				t.Fatal(err)
			}
			err := e.m.Chunk(ctx, "dev_1_a", "t1", tc.hex)
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.HasPrefix(err.Error(), "failed to decode chunk") {
				t.Fatalf("Chunk: %v", err)
			}
			// The data is lost: the upload cannot be completed any more.
			if e.m.Active("dev_1_a") || len(e.temps(t)) != 0 {
				t.Fatalf("a corrupt chunk left the transfer active (%v)", e.temps(t))
			}
		})
	}
	for _, bad := range [][2]string{{"dev_1_a/..", "t1"}, {"dev_1_a", ""}} {
		if err := e.m.Chunk(ctx, bad[0], bad[1], "00"); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Chunk(%q, %q): %v", bad[0], bad[1], err)
		}
		if _, err := e.m.End(ctx, bad[0], bad[1]); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("End(%q, %q): %v", bad[0], bad[1], err)
		}
	}
	if err := e.m.Chunk(ctx, "dev_2_b", "t1", "00"); err == nil || err.Error() != textNoTransfer {
		t.Fatalf("chunk without a transfer: %v", err)
	}
	if _, err := e.m.End(ctx, "dev_2_b", "t1"); err == nil || err.Error() != textNoTransfer {
		t.Fatalf("END without a transfer: %v", err)
	}
}

func TestChunkedUpload(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	data := randomBytes(t, 1<<20)
	final := filepath.Join(e.dir, "myapp.tgz")
	before := snapshot(t, e.apps)

	if err := e.m.Begin(ctx, "dev_42_myapp", "myapp.tgz", "up-1", uint64(len(data))); err != nil {
		t.Fatal(err)
	}
	if !e.m.Active("dev_42_myapp") {
		t.Fatal("not active after BEGIN")
	}
	tmps := e.temps(t)
	if len(tmps) != 1 || !regexp.MustCompile(`^\.myapp\.tgz\.part-[0-9]+$`).MatchString(tmps[0]) {
		t.Fatalf("temporary files %v", tmps)
	}
	if fi, err := os.Stat(filepath.Join(e.dir, tmps[0])); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("temporary file %v %v, want mode 0600", fi, err)
	}
	for off := 0; off < len(data); off += chunkSize {
		mustNotExist(t, final) // nothing where a build would read before END
		e.clock.Add(30 * time.Millisecond)
		if err := e.m.Chunk(ctx, "dev_42_myapp", "up-1", hex.EncodeToString(data[off:min(off+chunkSize, len(data))])); err != nil {
			t.Fatalf("chunk at %d: %v", off, err)
		}
	}
	mustNotExist(t, final)
	path, err := e.m.End(ctx, "dev_42_myapp", "up-1")
	if err != nil {
		t.Fatal(err)
	}
	if path != final {
		t.Fatalf("End returned %q, want %q", path, final)
	}
	got, err := os.ReadFile(final)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("stored %d bytes (%v), want the %d uploaded", len(got), err, len(data))
	}
	if e.m.Active("dev_42_myapp") || len(e.temps(t)) != 0 {
		t.Fatalf("after END: active %v, temps %v", e.m.Active("dev_42_myapp"), e.temps(t))
	}
	assertOnly(t, diffTrees(before, snapshot(t, e.apps)), "build/myapp.tgz")

	r := e.rec.snapshot()
	wantMsgs := []string{"dev_42_myapp: " + MsgFirstPackage, "dev_42_myapp: " + MsgFinished}
	if fmt.Sprint(r.messages) != fmt.Sprint(wantMsgs) || fmt.Sprint(r.cleared) != "[dev_42_myapp]" || len(r.dropped) != 0 {
		t.Fatalf("messages %q cleared %q dropped %q", r.messages, r.cleared, r.dropped)
	}
	// 16 chunks 30 ms apart: ~480 ms → at most one message per 100 ms plus
	// the first and the final 100 %.
	if n := len(r.progress); n < 3 || n > 7 {
		t.Fatalf("%d progress messages: %v", n, r.progress)
	}
	last := -1.0
	for _, p := range r.progress {
		if p.name != "dev_42_myapp" || p.file != "myapp.tgz" || p.pct <= last || p.pct > 100 {
			t.Fatalf("progress %v", r.progress)
		}
		last = p.pct
	}
	if last != 100 {
		t.Fatalf("the final progress is %v, want 100", last)
	}
}

func TestProgressThrottle(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	if err := e.m.Begin(ctx, "dev_1_a", "a.tgz", "t", 1000); err != nil {
		t.Fatal(err)
	}
	// 999 one-byte chunks at the same instant: one message, then the final 100.
	for range 999 {
		if err := e.m.Chunk(ctx, "dev_1_a", "t", "00"); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(e.rec.snapshot().progress); n != 1 {
		t.Fatalf("%d progress messages without time passing, want 1", n)
	}
	e.clock.Add(100 * time.Millisecond)
	// The last byte is the final one: 100 % is sent however recent the last was.
	if err := e.m.Chunk(ctx, "dev_1_a", "t", "00"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.End(ctx, "dev_1_a", "t"); err != nil {
		t.Fatal(err)
	}
	p := e.rec.snapshot().progress
	if len(p) != 2 || p[0].pct != 0.1 || p[1].pct != 100 {
		t.Fatalf("progress %v, want 0.1 then 100 once", p)
	}
}

func TestEmptyUpload(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	if err := e.m.Begin(ctx, "dev_1_a", "a.tgz", "t", 0); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Chunk(ctx, "dev_1_a", "t", "00"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("a byte into an empty upload: %v", err)
	}
	if err := e.m.Begin(ctx, "dev_1_a", "a.tgz", "t", 0); err != nil {
		t.Fatal(err)
	}
	p, err := e.m.End(ctx, "dev_1_a", "t")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(p); err != nil || fi.Size() != 0 {
		t.Fatalf("%v %v", fi, err)
	}
	if pr := e.rec.snapshot().progress; len(pr) != 1 || pr[0].pct != 100 {
		t.Fatalf("progress %v, want one 100", pr)
	}
}

func TestCancel(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	final := filepath.Join(e.dir, "myapp.tgz")
	if err := os.WriteFile(final, []byte("the previous upload"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Begin(ctx, "dev_42_myapp", "myapp.tgz", "t", 4); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Chunk(ctx, "dev_42_myapp", "t", "0102"); err != nil {
		t.Fatal(err)
	}
	if !e.m.Cancel("dev_42_myapp") {
		t.Fatal("Cancel found no transfer")
	}
	if e.m.Active("dev_42_myapp") || len(e.temps(t)) != 0 {
		t.Fatalf("after Cancel: active %v, temps %v", e.m.Active("dev_42_myapp"), e.temps(t))
	}
	if b, err := os.ReadFile(final); err != nil || string(b) != "the previous upload" {
		t.Fatalf("the final path changed: %q %v", b, err)
	}
	if err := e.m.Chunk(ctx, "dev_42_myapp", "t", "0304"); err == nil || err.Error() != textNoTransfer {
		t.Fatalf("chunk after Cancel: %v", err)
	}
	if e.m.Cancel("dev_42_myapp") {
		t.Fatal("a second Cancel found a transfer")
	}
	if d := e.rec.snapshot().dropped; len(d) != 0 {
		t.Fatalf("Cancel reported as dropped: %v", d)
	}
}

func TestNewBeginSupersedes(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	if err := e.m.Begin(ctx, "dev_1_a", "a.tgz", "old", 3); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Chunk(ctx, "dev_1_a", "old", "aaaa"); err != nil {
		t.Fatal(err)
	}
	oldTemps := e.temps(t)
	if err := e.m.Begin(ctx, "dev_1_a", "a.tgz", "new", 3); err != nil {
		t.Fatal(err)
	}
	temps := e.temps(t)
	if len(temps) != 1 || temps[0] == oldTemps[0] {
		t.Fatalf("temps %v after superseding %v", temps, oldTemps)
	}
	// A late chunk and END of the old upload are ignored.
	if err := e.m.Chunk(ctx, "dev_1_a", "old", "aa"); err != nil {
		t.Fatalf("late chunk: %v", err)
	}
	if p, err := e.m.End(ctx, "dev_1_a", "old"); err != nil || p != "" {
		t.Fatalf("late END: %q %v", p, err)
	}
	mustNotExist(t, filepath.Join(e.dir, "a.tgz"))
	if err := e.m.Chunk(ctx, "dev_1_a", "new", "626364"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.End(ctx, "dev_1_a", "new"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(e.dir, "a.tgz")); string(b) != "bcd" {
		t.Fatalf("stored %q, want the new upload only", b)
	}
	if len(e.temps(t)) != 0 {
		t.Fatalf("temps left: %v", e.temps(t))
	}
	// Another container's transfer is independent.
	if err := e.m.Begin(ctx, "dev_2_b", "b.tgz", "x", 1); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Begin(ctx, "dev_3_c", "c.tgz", "x", 1); err != nil {
		t.Fatal(err)
	}
	if !e.m.Active("dev_2_b") || !e.m.Active("dev_3_c") || len(e.temps(t)) != 2 {
		t.Fatal("transfers of two containers must coexist")
	}
}

func TestWrongIDIgnored(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	if err := e.m.Begin(ctx, "dev_1_a", "a.tgz", "right", 2); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Chunk(ctx, "dev_1_a", "wrong", "ffff"); err != nil {
		t.Fatalf("chunk of another id: %v", err)
	}
	// The other id's bytes did not count: two more fill the upload.
	if err := e.m.Chunk(ctx, "dev_1_a", "right", "0102"); err != nil {
		t.Fatal(err)
	}
	if p, err := e.m.End(ctx, "dev_1_a", "wrong"); err != nil || p != "" || !e.m.Active("dev_1_a") {
		t.Fatalf("END of another id: %q %v", p, err)
	}
	if _, err := e.m.End(ctx, "dev_1_a", "right"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(e.dir, "a.tgz")); !bytes.Equal(b, []byte{1, 2}) {
		t.Fatalf("stored %x", b)
	}
}

func TestOversize(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxSize = 1000 })
	ctx := context.Background()
	final := filepath.Join(e.dir, "a.tgz")

	t.Run("announced total above MaxSize", func(t *testing.T) {
		err := e.m.Begin(ctx, "dev_1_a", "a.tgz", "t", 1001)
		if !errors.Is(err, errdefs.ErrInvalidArgument) || e.m.Active("dev_1_a") || len(e.temps(t)) != 0 {
			t.Fatalf("Begin: %v, temps %v", err, e.temps(t))
		}
	})
	t.Run("more data than announced", func(t *testing.T) {
		if err := e.m.Begin(ctx, "dev_1_a", "a.tgz", "t", 3); err != nil {
			t.Fatal(err)
		}
		if err := e.m.Chunk(ctx, "dev_1_a", "t", "0102"); err != nil {
			t.Fatal(err)
		}
		err := e.m.Chunk(ctx, "dev_1_a", "t", "0304")
		if !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Fatalf("overflowing chunk: %v", err)
		}
		if e.m.Active("dev_1_a") || len(e.temps(t)) != 0 {
			t.Fatal("the transfer must be dropped")
		}
		mustNotExist(t, final)
		if err := e.m.Chunk(ctx, "dev_1_a", "t", "05"); err == nil || err.Error() != textNoTransfer {
			t.Fatalf("chunk after the drop: %v", err)
		}
	})
	t.Run("less data than announced", func(t *testing.T) {
		if err := e.m.Begin(ctx, "dev_1_a", "a.tgz", "t", 3); err != nil {
			t.Fatal(err)
		}
		if err := e.m.Chunk(ctx, "dev_1_a", "t", "0102"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.m.End(ctx, "dev_1_a", "t"); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Fatalf("incomplete END: %v", err)
		}
		if e.m.Active("dev_1_a") || len(e.temps(t)) != 0 {
			t.Fatal("the transfer must be dropped")
		}
		mustNotExist(t, final)
	})
	if d := e.rec.snapshot().dropped; len(d) != 2 || !strings.HasPrefix(d[0], "dev_1_a: ") {
		t.Fatalf("dropped %q, want the two broken uploads", d)
	}
}

func TestStaleTempFilesRemovedAtNew(t *testing.T) {
	apps := t.TempDir()
	dir := filepath.Join(apps, "build")
	if err := os.MkdirAll(filepath.Join(dir, ".kept.part-1"), 0o700); err != nil { // a directory: not ours
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		".myapp.tgz.part-123456": "half an upload",
		".b.part-9":              "another",
		".myapp.tgz.part-x":      "not our pattern",
		"myapp.tgz":              "a finished upload",
		"myapp.tgz.part-1":       "not hidden: not ours",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/nonexistent", filepath.Join(dir, ".link.part-1")); err != nil {
		t.Fatal(err)
	}
	m, err := New(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	got := snapshot(t, dir)
	want := []string{"d .", "d .kept.part-1", "f .myapp.tgz.part-x", "l .link.part-1", "f myapp.tgz", "f myapp.tgz.part-1"}
	if fmt.Sprint(got) != fmt.Sprint(slices.Sorted(slices.Values(want))) {
		t.Fatalf("after New: %v, want %v", got, want)
	}
}

func TestNewCreatesDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "apps", "build")
	m, err := New(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Fatalf("%v %v", fi, err)
	}
	if _, err := New(Options{}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("New without Dir: %v", err)
	}
}

func TestIdleTransferDropped(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.IdleTimeout = 10 * time.Minute })
	ctx := context.Background()
	if err := e.m.Begin(ctx, "dev_1_a", "a.tgz", "t", 10); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(9 * time.Minute)
	if err := e.m.Chunk(ctx, "dev_1_a", "t", "00"); err != nil { // keeps it alive
		t.Fatal(err)
	}
	e.clock.Add(9 * time.Minute)
	if err := e.m.Begin(ctx, "dev_2_b", "b.tgz", "t", 10); err != nil {
		t.Fatal(err)
	}
	if !e.m.Active("dev_1_a") {
		t.Fatal("a transfer used 9 minutes ago was dropped")
	}
	e.clock.Add(11 * time.Minute)
	if err := e.m.Begin(ctx, "dev_3_c", "c.tgz", "t", 10); err != nil {
		t.Fatal(err)
	}
	if e.m.Active("dev_1_a") || e.m.Active("dev_2_b") || !e.m.Active("dev_3_c") {
		t.Fatal("idle transfers must be dropped at the next BEGIN")
	}
	if temps := e.temps(t); len(temps) != 1 || !strings.HasPrefix(temps[0], ".c.tgz.part-") {
		t.Fatalf("temps %v", temps)
	}
	if d := e.rec.snapshot().dropped; len(d) != 2 {
		t.Fatalf("dropped %v", d)
	}
}

func TestClose(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	if err := e.m.Begin(ctx, "dev_1_a", "a.tgz", "t", 10); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Close(); err != nil {
		t.Fatal(err)
	}
	if len(e.temps(t)) != 0 || e.m.Active("dev_1_a") {
		t.Fatal("Close must discard active transfers")
	}
	if err := e.m.Begin(ctx, "dev_1_a", "a.tgz", "t", 10); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("Begin after Close: %v", err)
	}
	if err := e.m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestContextEnds(t *testing.T) {
	e := newEnv(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.m.Begin(ctx, "dev_1_a", "a.tgz", "t", 10); !errors.Is(err, context.Canceled) {
		t.Fatalf("Begin: %v", err)
	}
	if len(e.temps(t)) != 0 {
		t.Fatal("a cancelled BEGIN created a file")
	}
}

// Concurrent uploads, cancels and superseding BEGINs (run with -race):
// every completed upload holds exactly its own bytes and no temporary
// file survives.
func TestConcurrentUploads(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	var wg sync.WaitGroup
	const uploads = 8
	datas := make([][]byte, uploads)
	for i := range uploads {
		datas[i] = randomBytes(t, 200<<10)
	}
	errs := make(chan error, uploads*2)
	for i := range uploads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name, file := fmt.Sprintf("dev_%d_app", i), fmt.Sprintf("app%d.tgz", i)
			d := datas[i]
			if err := e.m.Begin(ctx, name, file, "t", uint64(len(d))); err != nil {
				errs <- err
				return
			}
			for off := 0; off < len(d); off += chunkSize {
				if err := e.m.Chunk(ctx, name, "t", hex.EncodeToString(d[off:min(off+chunkSize, len(d))])); err != nil {
					errs <- err
					return
				}
			}
			if _, err := e.m.End(ctx, name, "t"); err != nil {
				errs <- err
			}
		}()
	}
	// Meanwhile a container whose uploads keep being cancelled and replaced.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 50 {
			id := fmt.Sprint(i)
			if err := e.m.Begin(ctx, "dev_99_churn", "churn.tgz", id, 1<<20); err != nil {
				errs <- err
				return
			}
			_ = e.m.Chunk(ctx, "dev_99_churn", id, "00ff")
			if i%2 == 0 {
				e.m.Cancel("dev_99_churn")
			}
		}
		e.m.Cancel("dev_99_churn")
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := range uploads {
		b, err := os.ReadFile(filepath.Join(e.dir, fmt.Sprintf("app%d.tgz", i)))
		if err != nil || !bytes.Equal(b, datas[i]) {
			t.Errorf("upload %d: %d bytes, %v", i, len(b), err)
		}
	}
	if len(e.temps(t)) != 0 {
		t.Fatalf("temps left: %v", e.temps(t))
	}
	mustNotExist(t, filepath.Join(e.dir, "churn.tgz"))
}
