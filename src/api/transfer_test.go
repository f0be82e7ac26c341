package api

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"reagent/src/config"
	"reagent/src/errdefs"
	"reagent/src/transfer"
	"reagent/src/wamp"
)

// newTransferTest builds the handlers with a real transfer.Manager whose
// build dir is <tmp>/apps/build; it returns the registered procedures and
// the apps dir (the parent the tests watch for strays).
func newTransferTest(t *testing.T) (*recorder, *transfer.Manager, string) {
	t.Helper()
	apps := filepath.Join(t.TempDir(), "apps")
	m, err := transfer.New(transfer.Options{Dir: filepath.Join(apps, "build")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	_, reg := newTest(t, Deps{Transfers: m})
	return reg(), m, apps
}

func TestWriteDataRegistration(t *testing.T) {
	r, _, _ := newTransferTest(t)
	p, ok := r.procs[ProcWriteData]
	if !ok || p.priv != wamp.Develop || p.dyn != nil {
		t.Fatalf("write_data registered %v with %q, want DEVELOP", ok, p.priv)
	}
	_, reg := newTest(t, Deps{})
	if _, ok := reg().procs[ProcWriteData]; ok {
		t.Fatal("write_data registered without a transfer owner")
	}
}

func TestDecodeWriteData(t *testing.T) {
	ok := []any{"BEGIN", "myapp.tgz", "dev_42_myapp", uint64(10), "1700000000000"}
	with := func(i int, v any) []any {
		a := append([]any(nil), ok...)
		a[i] = v
		return a
	}
	tests := []struct {
		name string
		args []any
		want string // "" → accepted
	}{
		{"reference shape", ok, ""},
		{"no args", nil, "write_data takes 5 arguments"},
		{"four args", ok[:4], "write_data takes 5 arguments"},
		{"one arg", ok[:1], "write_data takes 5 arguments"},
		{"extra args ignored", append(append([]any(nil), ok...), "x"), ""},
		{"chunk not a string", with(0, 7), "failed to parse chunk argument"},
		{"chunk null", with(0, nil), "failed to parse chunk argument"},
		{"name not a string", with(1, []any{"a"}), "failed to parse name argument"},
		{"containerName not a string", with(2, 42), "failed to parse containerName argument"},
		{"total a string", with(3, "10"), "failed to parse total argument"},
		{"total negative", with(3, int64(-1)), "failed to parse total argument"},
		{"total fractional", with(3, 1.5), "failed to parse total argument"},
		{"total null", with(3, nil), "failed to parse total argument"},
		{"total int64", with(3, int64(10)), ""},
		{"total whole float", with(3, 10.0), ""},
		{"total json.Number", with(3, json.Number("10")), ""},
		{"total uint8 (msgpack)", with(3, uint8(10)), ""},
		{"id not a string", with(4, false), "failed to parse id argument"},
		{"fileName ../x", with(1, "../x"), "invalid file name"},
		{"fileName /etc/x", with(1, "/etc/x"), "invalid file name"},
		{"fileName a/b", with(1, "a/b"), "invalid file name"},
		{"fileName ..", with(1, ".."), "invalid file name"},
		{"containerName traversal", with(2, "dev_42_../x"), "invalid containerName"},
		{"containerName foreign", with(2, "postgres"), "invalid containerName"},
		{"id empty", with(4, ""), "invalid transfer id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := DecodeWriteData(&wamp.Call{Args: tc.args})
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if a.Chunk != "BEGIN" || a.FileName != "myapp.tgz" || a.ContainerName != "dev_42_myapp" || a.Total != 10 || a.ID != "1700000000000" {
					t.Fatalf("decoded %+v", a)
				}
				return
			}
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("err %v, want an invalid argument starting %q", err, tc.want)
			}
		})
	}
}

func TestWriteDataUpload(t *testing.T) {
	r, m, apps := newTransferTest(t)
	data := make([]byte, 300<<10)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	call := func(chunk string) (wamp.Result, error) {
		return r.call(t, ProcWriteData, []any{chunk, "myapp.tgz", "dev_42_myapp", uint64(len(data)), "t-1"}, nil)
	}
	for _, chunk := range append(append([]string{"BEGIN"}, hexChunks(data, 64<<10)...), "END") {
		res, err := call(chunk)
		if err != nil {
			t.Fatalf("%.10s: %v", chunk, err)
		}
		if res.Args != nil || res.Kwargs != nil {
			t.Fatalf("answer %+v, want empty", res)
		}
	}
	got, err := os.ReadFile(filepath.Join(apps, "build", "myapp.tgz"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("stored %d bytes (%v)", len(got), err)
	}
	if m.Active("dev_42_myapp") {
		t.Fatal("still active after END")
	}
	// Errors of the manager come back as they are.
	if _, err := call("00"); err == nil || err.Error() != "We received a chunk without an active transfer" {
		t.Fatalf("chunk after END: %v", err)
	}
	if _, err := call("BEGIN"); err != nil {
		t.Fatal(err)
	}
	if _, err := call("abc"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("odd hex: %v", err)
	}
}

// The acceptance case of issue #7: the names are refused and nothing
// appears anywhere near the build dir, whatever the chunk.
func TestWriteDataRefusesPaths(t *testing.T) {
	r, _, apps := newTransferTest(t)
	parent := filepath.Dir(apps)
	before := listTree(t, parent)
	for _, name := range []string{"../x", "/etc/x", "a/b", "..", "../../../../tmp/pwned", "build/../../x"} {
		for _, chunk := range []string{"BEGIN", "00", "END"} {
			_, err := r.call(t, ProcWriteData, []any{chunk, name, "dev_42_myapp", uint64(1), "t"}, nil)
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("%s %q: %v, want an invalid argument", chunk, name, err)
			}
		}
	}
	if after := listTree(t, parent); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Fatalf("refused uploads changed the tree:\nbefore %v\nafter  %v", before, after)
	}
}

func hexChunks(data []byte, size int) []string {
	var out []string
	for off := 0; off < len(data); off += size {
		out = append(out, hex.EncodeToString(data[off:min(off+size, len(data))]))
	}
	return out
}

// listTree lists every path below root, relative.
func listTree(t testing.TB, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out = append(out, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// FuzzWriteData feeds arbitrary positional args to write_data, through
// one manager whose state carries over between inputs: it must never
// panic, refusals must be invalid arguments or the reference's state
// errors, and nothing may appear anywhere but as a plain file directly in
// the build dir.
//
//	go test -run XXX -fuzz FuzzWriteData ./src/api
func FuzzWriteData(f *testing.F) {
	f.Add("BEGIN", "myapp.tgz", "dev_42_myapp", uint64(3), "t", uint8(5))
	f.Add("00ff", "myapp.tgz", "dev_42_myapp", uint64(3), "t", uint8(5))
	f.Add("END", "myapp.tgz", "dev_42_myapp", uint64(3), "t", uint8(5))
	f.Add("BEGIN", "../x", "dev_42_myapp", uint64(3), "t", uint8(5))
	f.Add("BEGIN", "/etc/x", "dev_42_myapp", uint64(3), "t", uint8(4))
	f.Add("zz", "a/b", "dev_1_../..", uint64(0), "", uint8(2))
	f.Add("BEGIN", "..", "prod_9_x", uint64(1<<62), "\x00", uint8(6))
	parent := f.TempDir()
	build := filepath.Join(parent, "apps", "build")
	m, err := transfer.New(transfer.Options{Dir: build, MaxSize: 1 << 20})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = m.Close() })
	h, err := newHandlers(Deps{Flock: &config.Flock{SerialNumber: testSerial, SwarmKey: 1, DeviceKey: 2}, Runner: &recordingRunner{}, Transfers: m})
	if err != nil {
		f.Fatal(err)
	}
	r := &recorder{procs: map[string]registered{}}
	h.register(r)
	f.Fuzz(func(t *testing.T, chunk, name, container string, total uint64, id string, n uint8) {
		args := []any{chunk, name, container, total, id, "extra"}[:min(int(n), 6)]
		_, err := r.call(t, ProcWriteData, args, nil)
		if err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) && !errors.Is(err, errdefs.ErrConflict) {
			t.Fatalf("%q: unexpected error class: %v", args, err)
		}
		for _, p := range listTree(t, parent) {
			dir, base := filepath.Split(p)
			if p == "." || p == "apps" || p == filepath.Join("apps", "build") || dir == filepath.Join("apps", "build")+"/" && !strings.Contains(base, "/") {
				continue
			}
			t.Fatalf("%q created %s", args, p)
		}
	})
}
