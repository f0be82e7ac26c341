package transfer

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"reagent/src/errdefs"
)

// Archives that must be refused, by Inspect and by Extract, each as tar
// and as tgz. Extract must leave nothing behind, neither at the
// destination nor anywhere else below the test's directory.
func TestHostileArchivesRefused(t *testing.T) {
	long := strings.Repeat("d/", 2100) + "f"
	tests := []struct {
		name    string
		lim     Limits
		entries []ent
		reason  string
	}{
		{"dotdot escape", Limits{}, []ent{file("../../escape", "pwned")}, "contains .."},
		{"dotdot inside", Limits{}, []ent{file("a/../../x", "pwned")}, "contains .."},
		{"dotdot dir", Limits{}, []ent{dir("../up/")}, "contains .."},
		{"absolute", Limits{}, []ent{file("/abs", "pwned")}, "absolute path"},
		{"absolute dir", Limits{}, []ent{dir("/tmp/x/")}, "absolute path"},
		{"symlink to /etc/passwd, then a file through it",
			Limits{}, []ent{symlink("passwd", "/etc/passwd"), file("passwd", "root::0:0::/:/bin/sh")}, "is absolute"},
		{"symlinked dir to /etc, then a file through it",
			Limits{}, []ent{symlink("etc", "/etc"), file("etc/cron.d/x", "* * * * * root sh")}, "is absolute"},
		{"relative symlink out", Limits{}, []ent{symlink("up", "../../..")}, "leads outside"},
		{"relative symlink out from a subdir", Limits{}, []ent{dir("a/"), symlink("a/up", "../..")}, "leads outside"},
		{"symlink chain out", Limits{}, []ent{dir("sub/"), symlink("a", "sub/.."), symlink("b", "a/..")}, "leads outside"},
		{"symlink chain out, declared backwards", Limits{}, []ent{symlink("b", "a/.."), dir("sub/"), symlink("a", "sub/..")}, "leads outside"},
		{"symlink loop", Limits{}, []ent{symlink("a", "b"), symlink("b", "a")}, "leads outside"},
		{"exponential symlinks", Limits{}, exponentialLinks(45), "leads outside"},
		{"file through an inner symlink", Limits{}, []ent{dir("sub/"), symlink("lnk", "sub"), file("lnk/x", "y")}, "behind a symlink"},
		{"symlink over a written dir", Limits{}, []ent{file("d/x", "y"), symlink("d", "/tmp")}, "is absolute"},
		{"symlink over a written dir, relative", Limits{}, []ent{file("d/x", "y"), symlink("d", ".")}, "appears twice"},
		{"file replaced by a symlink", Limits{}, []ent{file("f", "y"), symlink("f", "g")}, "appears twice"},
		{"hardlink outside", Limits{}, []ent{hardlink("h", "../../etc/passwd")}, "points outside"},
		{"hardlink absolute", Limits{}, []ent{hardlink("h", "/etc/passwd")}, "points outside"},
		{"hardlink to nothing", Limits{}, []ent{hardlink("h", "missing")}, "earlier regular file"},
		{"hardlink through a symlink", Limits{}, []ent{dir("d/"), file("d/f", "x"), symlink("l", "d"), hardlink("h", "l/f")}, "earlier regular file"},
		{"hardlink to a symlink", Limits{}, []ent{file("f", "x"), symlink("l", "f"), hardlink("h", "l")}, "earlier regular file"},
		{"char device", Limits{}, []ent{{name: "null", typ: tar.TypeChar, mode: 0o666}}, "device or fifo"},
		{"block device", Limits{}, []ent{{name: "sda", typ: tar.TypeBlock, mode: 0o660}}, "device or fifo"},
		{"fifo", Limits{}, []ent{{name: "p", typ: tar.TypeFifo, mode: 0o644}}, "device or fifo"},
		{"too many entries", Limits{MaxEntries: 3}, []ent{dir("a/"), dir("b/"), dir("c/"), file("d", "")}, "more than 3 entries"},
		{"too large", Limits{MaxBytes: 1000}, []ent{file("a", strings.Repeat("x", 600)), file("b", strings.Repeat("y", 401))}, "more than 1000 bytes"},
		{"metadata bomb", Limits{MaxEntries: 1, MaxBytes: 10},
			[]ent{{name: "a", typ: tar.TypeReg, mode: 0o644, pax: map[string]string{"comment": strings.Repeat("z", 64<<10)}}}, "more data than the limits"},
		{"name too long", Limits{}, []ent{file(long, "x")}, "longer than 4096"},
		{"root as a file", Limits{}, []ent{file(".", "x")}, "root entry"},
	}
	for _, tc := range tests {
		for _, gz := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/gz=%v", tc.name, gz), func(t *testing.T) {
				base := t.TempDir()
				arch := writeArchive(t, base, gz, tc.entries...)
				before := snapshot(t, base)
				_, err := Inspect(arch, tc.lim)
				if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.reason) {
					t.Fatalf("Inspect: %v, want an invalid argument about %q", err, tc.reason)
				}
				dest := filepath.Join(base, "apps", "build", "myapp")
				if err := os.MkdirAll(dest, 0o755); err != nil { // an old extraction
					t.Fatal(err)
				}
				err = Extract(context.Background(), arch, dest, tc.lim)
				if !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Fatalf("Extract: %v", err)
				}
				mustNotExist(t, dest)
				after := snapshot(t, base)
				if added := diffTrees(before, after); fmt.Sprint(added) != "[d apps d apps/build]" {
					t.Fatalf("Extract left %v", added)
				}
			})
		}
	}
}

// exponentialLinks makes l0 -> ".", l(k) -> "l(k-1)/l(k-1)": resolving
// the last doubles the work per level. The kernel gives up after 40
// links; so must the check, instead of walking 2^n paths.
func exponentialLinks(n int) []ent {
	out := []ent{symlink("l0", ".")}
	for k := 1; k < n; k++ {
		out = append(out, symlink(fmt.Sprintf("l%d", k), fmt.Sprintf("l%d/l%d", k-1, k-1)))
	}
	return out
}

// goodEntries is a build context with everything a legitimate one has.
func goodEntries() []ent {
	return []ent{
		dir("./"),
		file("./Dockerfile", "FROM scratch\nCOPY . /app\n"),
		file("Dockerfile.armv7", "FROM scratch\n"),
		dir("src/"),
		file("src/main.go", "package main\n"),
		exe("bin/run.sh", "#!/bin/sh\necho hi\n"), // parent not declared
		{name: "src/setuid", typ: tar.TypeReg, body: "s", mode: 0o4755},
		{name: "src/private", typ: tar.TypeReg, body: "p", mode: 0o600},
		dir("lib/tool/"),
		file("lib/tool/cli.js", "console.log(1)\n"),
		dir("node_modules/.bin/"),
		symlink("node_modules/.bin/cli", "../../lib/tool/cli.js"),
		symlink("current", "src"),
		symlink("self", "."),
		symlink("dangling", "nowhere/at/all"),
		hardlink("src/main-copy.go", "src/main.go"),
		file("src/main.go", "package main // v2\n"), // a repeated file: the last one wins
		{name: "empty", typ: tar.TypeReg, mode: 0o644},
	}
}

func TestInspectGoodArchive(t *testing.T) {
	for _, gz := range []bool{false, true} {
		t.Run(fmt.Sprintf("gz=%v", gz), func(t *testing.T) {
			arch := writeArchive(t, t.TempDir(), gz, goodEntries()...)
			info, err := Inspect(arch, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			want := []string{"Dockerfile", "Dockerfile.armv7", "src/main.go", "bin/run.sh", "src/setuid", "src/private",
				"lib/tool/cli.js", "src/main-copy.go", "empty"}
			if fmt.Sprint(info.Files) != fmt.Sprint(want) {
				t.Fatalf("files %v, want %v", info.Files, want)
			}
			if info.Entries != len(goodEntries()) {
				t.Fatalf("entries %d", info.Entries)
			}
			var size int64
			for _, e := range goodEntries() {
				size += int64(len(e.body))
			}
			if info.Bytes != size {
				t.Fatalf("bytes %d, want %d", info.Bytes, size)
			}
			if got := DockerfileFor(info, "armv7"); got != "Dockerfile.armv7" {
				t.Fatalf("armv7: %q", got)
			}
			if got := DockerfileFor(info, "amd64"); got != "Dockerfile" {
				t.Fatalf("amd64: %q", got)
			}
		})
	}
}

func TestExtractGoodArchive(t *testing.T) {
	base := t.TempDir()
	arch := writeArchive(t, base, true, goodEntries()...)
	dest := filepath.Join(base, "build", "myapp")
	// An old extraction is replaced, not merged into.
	if err := os.MkdirAll(filepath.Join(dest, "stale"), 0o755); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, base)
	if err := Extract(context.Background(), arch, dest, Limits{}); err != nil {
		t.Fatal(err)
	}
	wantFiles := map[string]struct {
		body string
		mode os.FileMode
	}{
		"Dockerfile":       {"FROM scratch\nCOPY . /app\n", 0o644},
		"Dockerfile.armv7": {"FROM scratch\n", 0o644},
		"src/main.go":      {"package main // v2\n", 0o644},
		"src/main-copy.go": {"package main\n", 0o644}, // linked to the first main.go, replaced afterwards
		"bin/run.sh":       {"#!/bin/sh\necho hi\n", 0o755},
		"src/setuid":       {"s", 0o755},
		"src/private":      {"p", 0o644},
		"lib/tool/cli.js":  {"console.log(1)\n", 0o644},
		"empty":            {"", 0o644},
	}
	for name, w := range wantFiles {
		p := filepath.Join(dest, filepath.FromSlash(name))
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(p)
		if !fi.Mode().IsRegular() || fi.Mode() != w.mode || string(b) != w.body {
			t.Errorf("%s: mode %v content %q, want %v %q", name, fi.Mode(), b, w.mode, w.body)
		}
	}
	for name, target := range map[string]string{
		"node_modules/.bin/cli": "../../lib/tool/cli.js", "current": "src", "self": ".", "dangling": "nowhere/at/all",
	} {
		got, err := os.Readlink(filepath.Join(dest, filepath.FromSlash(name)))
		if err != nil || got != target {
			t.Errorf("%s -> %q %v, want %q", name, got, err, target)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dest, "node_modules", ".bin", "cli")); err != nil || string(b) != "console.log(1)\n" {
		t.Errorf("through the inner symlink: %q %v", b, err)
	}
	for _, d := range []string{".", "src", "bin", "lib", "lib/tool", "node_modules", "node_modules/.bin"} {
		fi, err := os.Lstat(filepath.Join(dest, filepath.FromSlash(d)))
		if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o755 {
			t.Errorf("dir %s: %v %v", d, fi, err)
		}
	}
	mustNotExist(t, filepath.Join(dest, "stale"))
	assertOnly(t, diffTrees(before, snapshot(t, base)), "build/myapp")
	// No temporary directory is left next to dest.
	if ents, _ := os.ReadDir(filepath.Dir(dest)); len(ents) != 1 {
		t.Fatalf("next to dest: %v", ents)
	}
}

func TestExtractPlainTarAndEmpty(t *testing.T) {
	base := t.TempDir()
	arch := writeArchive(t, base, false, file("a/b/c.txt", "abc"))
	dest := filepath.Join(base, "out")
	if err := Extract(context.Background(), arch, dest, Limits{}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "a", "b", "c.txt")); string(b) != "abc" {
		t.Fatalf("%q", b)
	}
	empty := filepath.Join(base, "empty.tar")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if info, err := Inspect(empty, Limits{}); err != nil || info.Entries != 0 {
		t.Fatalf("empty archive: %+v %v", info, err)
	}
}

func TestMalformedArchives(t *testing.T) {
	good := tarBytes(t, false, file("a", strings.Repeat("x", 2000)))
	goodGz := tarBytes(t, true, file("a", strings.Repeat("x", 2000)))
	for name, data := range map[string][]byte{
		"garbage":           []byte("this is not an archive at all, not even close, but it is long enough for a header....." + strings.Repeat("!", 600)),
		"truncated tar":     good[:1000],
		"truncated gzip":    goodGz[:len(goodGz)/2],
		"bad gzip header":   {0x1f, 0x8b, 0, 0, 0},
		"corrupt gzip data": append(append([]byte(nil), goodGz[:12]...), make([]byte, 64)...),
	} {
		t.Run(name, func(t *testing.T) {
			base := t.TempDir()
			p := filepath.Join(base, "x.tgz")
			if err := os.WriteFile(p, data, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Inspect(p, Limits{}); !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("Inspect: %v", err)
			}
			dest := filepath.Join(base, "out")
			if err := Extract(context.Background(), p, dest, Limits{}); !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("Extract: %v", err)
			}
			mustNotExist(t, dest)
		})
	}
	if _, err := Inspect(filepath.Join(t.TempDir(), "missing.tgz"), Limits{}); err == nil || errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("a missing file is our problem, not an invalid argument: %v", err)
	}
}

func TestDefaultLimits(t *testing.T) {
	base := t.TempDir()
	entries := make([]ent, DefaultMaxEntries)
	for i := range entries {
		entries[i] = dir(fmt.Sprintf("d%05d/", i))
	}
	ok := writeArchive(t, base, true, entries...)
	if info, err := Inspect(ok, Limits{}); err != nil || info.Entries != DefaultMaxEntries {
		t.Fatalf("%d entries: %+v %v", DefaultMaxEntries, info.Entries, err)
	}
	over := writeArchive(t, base, false, append(entries, dir("one-more/"))...)
	if _, err := Inspect(over, Limits{}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("%d entries: %v", DefaultMaxEntries+1, err)
	}
	// A header claiming more than 2 GiB is refused before any of it is read.
	huge := filepath.Join(base, "huge.tar")
	f, err := os.Create(huge)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	if err := tw.WriteHeader(&tar.Header{Name: "big", Typeflag: tar.TypeReg, Size: DefaultMaxBytes + 1, Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	f.Close() // no data, no trailer: the size alone must be enough
	if _, err := Inspect(huge, Limits{}); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("2 GiB + 1: %v", err)
	}
}

// countCtx is a context whose Err starts failing after a number of calls:
// it ends an extraction at a chosen point of the second pass.
type countCtx struct {
	context.Context
	calls, failAfter atomic.Int64
}

func (c *countCtx) Err() error {
	if n := c.calls.Add(1); c.failAfter.Load() > 0 && n > c.failAfter.Load() {
		return context.Canceled
	}
	return nil
}

func TestExtractFailureLeavesNothing(t *testing.T) {
	base := t.TempDir()
	var entries []ent
	for i := range 50 {
		entries = append(entries, file(fmt.Sprintf("d%d/f%d", i%5, i), strings.Repeat("x", 100)))
	}
	arch := writeArchive(t, base, true, entries...)
	dest := filepath.Join(base, "build", "app")
	probe := &countCtx{Context: context.Background()}
	if err := Extract(probe, arch, dest, Limits{}); err != nil {
		t.Fatal(err)
	}
	total := probe.calls.Load()
	before := snapshot(t, base)
	for _, at := range []int64{total / 2, total - 3, total - 1} {
		ctx := &countCtx{Context: context.Background()}
		ctx.failAfter.Store(at)
		if err := Extract(ctx, arch, dest, Limits{}); !errors.Is(err, context.Canceled) {
			t.Fatalf("Extract stopped after %d of %d checks: %v", at, total, err)
		}
		mustNotExist(t, dest)
		added := diffTrees(before, snapshot(t, base))
		if len(added) != 0 {
			t.Fatalf("a failed extraction left %v", added)
		}
	}
}

func TestDockerfileFor(t *testing.T) {
	tests := []struct {
		files []string
		arch  string
		want  string
	}{
		{nil, "amd64", "Dockerfile"},
		{[]string{"Dockerfile"}, "amd64", "Dockerfile"},
		{[]string{"Dockerfile", "Dockerfile.amd64"}, "amd64", "Dockerfile.amd64"},
		{[]string{"Dockerfile", "Dockerfile.arm64"}, "amd64", "Dockerfile"},
		{[]string{"Dockerfile", "docker/Dockerfile.armv7"}, "armv7", "docker/Dockerfile.armv7"},
		{[]string{"x/y/Dockerfile.armv7", "docker/Dockerfile.armv7", "Dockerfile.armv7"}, "armv7", "Dockerfile.armv7"},
		{[]string{"z/Dockerfile.armv7", "b/Dockerfile.armv7", "a/b/Dockerfile.armv7"}, "armv7", "b/Dockerfile.armv7"},
		{[]string{"Dockerfile.armv7.bak", "Dockerfile.armv"}, "armv7", "Dockerfile"},
	}
	for _, tc := range tests {
		if got := DockerfileFor(Info{Files: tc.files}, tc.arch); got != tc.want {
			t.Errorf("DockerfileFor(%v, %s) = %q, want %q", tc.files, tc.arch, got, tc.want)
		}
	}
}
