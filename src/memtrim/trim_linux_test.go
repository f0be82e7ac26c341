package memtrim

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestReadOnlyMappings(t *testing.T) {
	maps := []byte(`00400000-00c6e000 r-xp 00000000 fd:01 131 /opt/reagent/reagent
00c6e000-01400000 r--p 0086e000 fd:01 131 /opt/reagent/reagent
01400000-01460000 rw-p 01000000 fd:01 131 /opt/reagent/reagent
01460000-014a0000 rw-p 00000000 00:00 0
7f0000000000-7f0000010000 r--p 00000000 fd:01 200 /opt/reagent/reagent.db-shm
7f0000020000-7f0000030000 r-xs 00000000 fd:01 131 /opt/reagent/reagent
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
`)
	got := readOnlyMappings(maps, "/opt/reagent/reagent")
	want := []mapping{{0x400000, 0xc6e000}, {0xc6e000, 0x1400000}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("mappings %x, want %x", got, want)
	}
	// After a self-update replaced the file.
	deleted := []byte("00400000-00c6e000 r-xp 00000000 fd:01 131 /opt/reagent/my agent (deleted)\n")
	if got := readOnlyMappings(deleted, "/opt/reagent/my agent"); len(got) != 1 {
		t.Fatalf("deleted executable: %x", got)
	}
}

// rssFile is RssFile of /proc/self/status in KiB.
func rssFile(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "RssFile:"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Skip("no RssFile in /proc/self/status")
	return 0
}

// Trimming this test binary's own read-only pages releases resident
// memory, and the code keeps running: its pages come back on use.
func TestTrimReleasesExecutablePages(t *testing.T) {
	before := rssFile(t)
	st, err := Trim()
	if err != nil {
		t.Fatal(err)
	}
	after := rssFile(t)
	if st.Mappings < 2 || st.Bytes == 0 {
		t.Fatalf("trimmed %+v: want the code and read-only data mappings", st)
	}
	if after >= before {
		t.Fatalf("RssFile %d kB before, %d kB after the trim", before, after)
	}
	t.Logf("RssFile %d → %d kB (%+v)", before, after, st)
	if _, err := Trim(); err != nil { // runs again after its pages left
		t.Fatal(err)
	}
}
