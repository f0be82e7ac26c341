package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// memInfo is the memory of a process as the kernel counts it, in bytes.
// RSS is VmRSS of /proc/<pid>/status: what the budget is about. The split
// into anonymous and file-backed pages says where it went (the binary's
// text is file-backed and shared with the page cache; the Go heap and
// stacks are anonymous).
type memInfo struct {
	RSS     int64 `json:"rss"`
	RSSAnon int64 `json:"rss_anon"`
	RSSFile int64 `json:"rss_file"`
	HWM     int64 `json:"hwm"` // peak RSS over the life of the process
}

// parseStatus reads VmRSS, RssAnon, RssFile and VmHWM ("…:   1234 kB")
// from the text of /proc/<pid>/status.
func parseStatus(r io.Reader) (memInfo, error) {
	var m memInfo
	found := false
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *int64
		switch key {
		case "VmRSS":
			dst, found = &m.RSS, true
		case "RssAnon":
			dst = &m.RSSAnon
		case "RssFile":
			dst = &m.RSSFile
		case "VmHWM":
			dst = &m.HWM
		default:
			continue
		}
		n, err := parseKB(val)
		if err != nil {
			return memInfo{}, fmt.Errorf("%s: %w", key, err)
		}
		*dst = n
	}
	if err := sc.Err(); err != nil {
		return memInfo{}, err
	}
	if !found {
		return memInfo{}, fmt.Errorf("no VmRSS line (a kernel thread or a zombie?)")
	}
	return m, nil
}

// parseKB reads "   1234 kB" as bytes.
func parseKB(s string) (int64, error) {
	f := strings.Fields(s)
	if len(f) != 2 || f[1] != "kB" {
		return 0, fmt.Errorf("unexpected value %q", strings.TrimSpace(s))
	}
	n, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("unexpected value %q: %w", strings.TrimSpace(s), err)
	}
	return n << 10, nil
}

// readMem reads the memory of process pid.
func readMem(pid int) (memInfo, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memInfo{}, fmt.Errorf("read memory of pid %d: %w", pid, err)
	}
	defer f.Close()
	m, err := parseStatus(f)
	if err != nil {
		return memInfo{}, fmt.Errorf("read memory of pid %d: %w", pid, err)
	}
	return m, nil
}

// parseCPUTicks reads utime + stime (fields 14 and 15, in clock ticks) from
// the text of /proc/<pid>/stat. The command name (field 2) is in
// parentheses and may itself hold spaces and parentheses, so fields are
// counted from the last ')'.
func parseCPUTicks(stat []byte) (uint64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("no ')' in %q", stat)
	}
	// After ")": field 3 (state) is the first; utime is field 14.
	f := strings.Fields(string(stat[i+1:]))
	const utime, stime = 14 - 3, 15 - 3
	if len(f) <= stime {
		return 0, fmt.Errorf("only %d fields after the command name", len(f))
	}
	u, err := strconv.ParseUint(f[utime], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("utime %q: %w", f[utime], err)
	}
	s, err := strconv.ParseUint(f[stime], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stime %q: %w", f[stime], err)
	}
	return u + s, nil
}

// readCPUTicks reads the CPU time process pid has used, in clock ticks.
func readCPUTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read CPU time of pid %d: %w", pid, err)
	}
	n, err := parseCPUTicks(b)
	if err != nil {
		return 0, fmt.Errorf("read CPU time of pid %d: %w", pid, err)
	}
	return n, nil
}

// atClkTck is the auxiliary vector entry that carries sysconf(_SC_CLK_TCK).
const atClkTck = 17

// defaultClockTicks is USER_HZ on every Linux architecture we build for;
// used when the auxiliary vector cannot be read.
const defaultClockTicks = 100

// clockTicks is the kernel's clock ticks per second, the unit of
// /proc/<pid>/stat. Without cgo there is no sysconf, but the kernel hands
// every process the value in its auxiliary vector.
func clockTicks() (int, bool) {
	b, err := os.ReadFile("/proc/self/auxv")
	if err != nil {
		return defaultClockTicks, false
	}
	return parseAuxvClockTicks(b, strconv.IntSize/8, binary.NativeEndian)
}

// parseAuxvClockTicks finds AT_CLKTCK in an auxiliary vector of
// (type, value) words of wordSize bytes.
func parseAuxvClockTicks(auxv []byte, wordSize int, order binary.ByteOrder) (int, bool) {
	word := func(b []byte) uint64 {
		if wordSize == 4 {
			return uint64(order.Uint32(b))
		}
		return order.Uint64(b)
	}
	for i := 0; i+2*wordSize <= len(auxv); i += 2 * wordSize {
		typ, val := word(auxv[i:]), word(auxv[i+wordSize:])
		if typ == 0 { // AT_NULL ends the vector
			break
		}
		if typ == atClkTck && val > 0 {
			return int(val), true
		}
	}
	return defaultClockTicks, false
}
