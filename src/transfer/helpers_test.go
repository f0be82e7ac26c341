package transfer

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// ent is one hand-made tar entry. typ 0 means a regular file.
type ent struct {
	name string
	typ  byte
	body string
	link string
	mode int64
	pax  map[string]string
}

func file(name, body string) ent { return ent{name: name, typ: tar.TypeReg, body: body, mode: 0o644} }
func exe(name, body string) ent  { return ent{name: name, typ: tar.TypeReg, body: body, mode: 0o755} }
func dir(name string) ent        { return ent{name: name, typ: tar.TypeDir, mode: 0o755} }
func symlink(name, to string) ent {
	return ent{name: name, typ: tar.TypeSymlink, link: to, mode: 0o777}
}
func hardlink(name, to string) ent { return ent{name: name, typ: tar.TypeLink, link: to, mode: 0o644} }

// tarBytes builds a tar (gzipped when gz) from entries, exactly as given:
// archive/tar writes hostile names without complaint.
func tarBytes(t testing.TB, gz bool, entries ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	var tw *tar.Writer
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(&buf)
		tw = tar.NewWriter(zw)
	} else {
		tw = tar.NewWriter(&buf)
	}
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		hdr := &tar.Header{Name: e.name, Typeflag: typ, Linkname: e.link, Mode: e.mode, PAXRecords: e.pax}
		if typ == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("header %q: %v", e.name, err)
		}
		if typ == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// writeArchive writes a tar (or tgz) into dir and returns its path.
func writeArchive(t testing.TB, dir string, gz bool, entries ...ent) string {
	t.Helper()
	name := "src.tar"
	if gz {
		name = "src.tgz"
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, tarBytes(t, gz, entries...), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// snapshot lists every path below root (relative, with a type letter and
// for files the content length), to compare the tree before and after.
func snapshot(t testing.TB, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		kind := "f"
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			kind = "l"
		case d.IsDir():
			kind = "d"
		}
		out = append(out, kind+" "+filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// diffTrees reports what appeared in after that was not in before.
func diffTrees(before, after []string) []string {
	seen := map[string]bool{}
	for _, b := range before {
		seen[b] = true
	}
	var added []string
	for _, a := range after {
		if !seen[a] {
			added = append(added, a)
		}
	}
	return added
}

// assertOnly fails unless the new paths below root are all inside one of
// the allowed relative prefixes.
func assertOnly(t testing.TB, added []string, allowed ...string) {
	t.Helper()
	for _, a := range added {
		p := a[2:]
		ok := false
		for _, al := range allowed {
			if p == al || strings.HasPrefix(p, al+"/") {
				ok = true
			}
		}
		if !ok {
			t.Errorf("%s appeared outside %v", a, allowed)
		}
	}
}
