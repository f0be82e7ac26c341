package system

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

func hostSource() source {
	return procSource("/proc")
}

// procSource reads the counters below procDir (normally /proc).
func procSource(procDir string) source {
	return source{
		cpu: func() (cpuTimes, int, error) {
			data, err := os.ReadFile(procDir + "/stat")
			if err != nil {
				return cpuTimes{}, 0, fmt.Errorf("read cpu counters: %w", err)
			}
			return parseProcStat(data)
		},
		memory: func(p *StatsPayload) error {
			data, err := os.ReadFile(procDir + "/meminfo")
			if err != nil {
				return fmt.Errorf("read memory counters: %w", err)
			}
			return parseMeminfo(data, p)
		},
		statfs: statfs,
	}
}

// parseProcStat reads the aggregate "cpu" line of /proc/stat and counts the
// per-CPU lines. Busy is everything but idle and iowait; guest time is
// already included in user/nice, so it is not added again.
func parseProcStat(data []byte) (cpuTimes, int, error) {
	var t cpuTimes
	found := false
	count := 0
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if !bytes.HasPrefix(line, []byte("cpu")) {
			if found {
				break // the cpu lines come first; the rest (intr …) is long
			}
			continue
		}
		fields := strings.Fields(string(line))
		if fields[0] != "cpu" {
			count++
			continue
		}
		if len(fields) < 5 {
			return cpuTimes{}, 0, fmt.Errorf("parse /proc/stat: short cpu line %q", line)
		}
		for i, f := range fields[1:] {
			if i >= 8 { // guest, guest_nice are part of user, nice
				break
			}
			v, err := strconv.ParseUint(f, 10, 64)
			if err != nil {
				return cpuTimes{}, 0, fmt.Errorf("parse /proc/stat: %w", err)
			}
			t.total += v
			if i != 3 && i != 4 { // idle, iowait
				t.busy += v
			}
		}
		found = true
	}
	if !found {
		return cpuTimes{}, 0, fmt.Errorf("parse /proc/stat: no cpu line")
	}
	if count == 0 {
		count = runtime.NumCPU()
	}
	return t, count, nil
}

// parseMeminfo fills the memory fields the way gopsutil (the reference's
// source) computes them: used = total - free - buffers - cached, where
// cached includes reclaimable slab.
func parseMeminfo(data []byte, p *StatsPayload) error {
	kv := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			continue
		}
		if len(fields) > 1 && fields[1] == "kB" {
			v *= 1024
		}
		kv[name] = v
	}
	total, ok := kv["MemTotal"]
	if !ok {
		return fmt.Errorf("parse /proc/meminfo: no MemTotal")
	}
	free := kv["MemFree"]
	cached := kv["Cached"] + kv["SReclaimable"]
	avail, ok := kv["MemAvailable"]
	if !ok { // kernels before 3.14
		avail = free + kv["Buffers"] + cached
	}
	used := uint64(0)
	if s := free + kv["Buffers"] + cached; s < total {
		used = total - s
	}
	p.MemoryTotal, p.MemoryUsed, p.MemoryAvailable = total, used, min(avail, total)
	return nil
}

func statfs(path string) (fsUsage, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return fsUsage{}, fmt.Errorf("statfs %s: %w", path, err)
	}
	bs := uint64(st.Bsize)
	return fsUsage{
		total: st.Blocks * bs,
		used:  (st.Blocks - st.Bfree) * bs,
		free:  st.Bavail * bs,
	}, nil
}
