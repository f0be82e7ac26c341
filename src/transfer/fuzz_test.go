package transfer

import (
	"archive/tar"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"reagent/src/errdefs"
)

// FuzzInspect feeds arbitrary bytes to Inspect and, when it accepts them,
// to Extract: neither may panic, and nothing may appear outside the
// destination, nor may any extracted symlink resolve outside it.
//
//	go test -run XXX -fuzz FuzzInspect ./src/transfer
func FuzzInspect(f *testing.F) {
	seeds := [][]ent{
		goodEntries(),
		{file("../../escape", "x")},
		{file("/abs", "x")},
		{symlink("l", "/etc/passwd"), file("l", "x")},
		{dir("sub/"), symlink("a", "sub/.."), symlink("b", "a/..")},
		{file("f", "x"), hardlink("h", "../f")},
		{{name: "p", typ: tar.TypeFifo}},
		{dir("a/"), symlink("a/l", ".."), file("a/l/x", "y")},
	}
	for _, s := range seeds {
		f.Add(tarBytes(f, false, s...))
		f.Add(tarBytes(f, true, s...))
	}
	f.Add([]byte{})
	f.Add([]byte{0x1f, 0x8b})
	f.Fuzz(func(t *testing.T, data []byte) {
		base := t.TempDir()
		arch := filepath.Join(base, "in.tar")
		if err := os.WriteFile(arch, data, 0o600); err != nil {
			t.Fatal(err)
		}
		lim := Limits{MaxEntries: 200, MaxBytes: 1 << 20}
		info, err := Inspect(arch, lim)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("Inspect failed with an error that is not about the input: %v", err)
			}
			return
		}
		for _, p := range info.Files {
			if p == "" || strings.HasPrefix(p, "/") || p != filepath.ToSlash(filepath.Clean(p)) || strings.HasPrefix(p, "..") {
				t.Fatalf("Inspect listed %q", p)
			}
		}
		dest := filepath.Join(base, "sandbox", "out")
		// Extract may still fail (a name that is a file in one entry and
		// a directory in another), but never write outside dest.
		err = Extract(context.Background(), arch, dest, lim)
		outside := snapshot(t, base)
		for _, p := range outside {
			rel := p[2:]
			if rel == "." || rel == "in.tar" || rel == "sandbox" || rel == "sandbox/out" || strings.HasPrefix(rel, "sandbox/out/") {
				continue
			}
			t.Fatalf("Extract (err %v) wrote %s outside its destination", err, p)
		}
		if err != nil {
			if _, serr := os.Lstat(dest); serr == nil {
				t.Fatalf("a failed Extract (%v) left its destination", err)
			}
			return
		}
		realDest, _ := filepath.EvalSymlinks(dest)
		_ = filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.Type()&fs.ModeSymlink == 0 {
				return nil
			}
			if r, err := filepath.EvalSymlinks(p); err == nil && r != realDest && !strings.HasPrefix(r, realDest+string(filepath.Separator)) {
				t.Fatalf("symlink %s resolves to %s, outside %s", p, r, realDest)
			}
			return nil
		})
	})
}
