package memtrim

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Trim unmaps the resident pages of the executable's read-only mappings
// (code, read-only data, the symbol tables the runtime reads) from this
// process. Writable mappings — data, bss, heap — are never touched: their
// pages may differ from the file.
func Trim() (Stats, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return Stats{}, fmt.Errorf("find the executable: %w", err)
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return Stats{}, fmt.Errorf("read mappings: %w", err)
	}
	var st Stats
	for _, m := range readOnlyMappings(maps, exe) {
		// The raw syscall: the range is an address, not Go memory.
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, m.start, m.end-m.start, unix.MADV_DONTNEED); errno != 0 {
			return st, fmt.Errorf("madvise %x-%x: %w", m.start, m.end, errno)
		}
		st.Mappings++
		st.Bytes += int64(m.end - m.start)
	}
	return st, nil
}

type mapping struct{ start, end uintptr }

// readOnlyMappings parses /proc/self/maps ("start-end perms offset dev
// inode path") and returns the private, non-writable mappings of path.
// An executable replaced by a self-update shows as "path (deleted)"; it
// is matched too, since its pages still come from the old file.
func readOnlyMappings(maps []byte, path string) []mapping {
	var out []mapping
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) < 6 {
			continue
		}
		name := string(bytes.Join(f[5:], []byte(" ")))
		if name != path && name != path+" (deleted)" {
			continue
		}
		perms := f[1]
		if len(perms) != 4 || perms[0] != 'r' || perms[1] != '-' || perms[3] != 'p' {
			continue
		}
		lo, hi, ok := bytes.Cut(f[0], []byte("-"))
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(string(lo), 16, 64)
		end, err2 := strconv.ParseUint(string(hi), 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		out = append(out, mapping{uintptr(start), uintptr(end)})
	}
	return out
}
