package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/docker/docker/client"
	"golang.org/x/sys/unix"
)

// describeMachine collects what a reader needs to compare figures across
// machines. Missing pieces stay empty; none of them is worth failing for.
func describeMachine(ctx context.Context, dc *client.Client) Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		m.CPU = cpuModel(string(b))
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		m.MemoryBytes = memTotal(f)
		f.Close()
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		m.OS = osPrettyName(string(b))
	}
	if dc != nil {
		if v, err := dc.ServerVersion(ctx); err == nil {
			m.Docker, m.DockerAPI = v.Version, v.APIVersion
		}
		if info, err := dc.Info(ctx); err == nil {
			m.StorageDriver = info.Driver
		}
	}
	return m
}

// cpuModel is the first "model name" of /proc/cpuinfo.
func cpuModel(cpuinfo string) string {
	for l := range strings.SplitSeq(cpuinfo, "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// memTotal is MemTotal of /proc/meminfo in bytes, 0 if absent.
func memTotal(f *os.File) int64 {
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			n, err := parseKB(v)
			if err != nil {
				return 0
			}
			return n
		}
	}
	return 0
}

func osPrettyName(osRelease string) string {
	for l := range strings.SplitSeq(osRelease, "\n") {
		if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}

// loadAvg is the 1-minute load average: other work on the machine skews
// every figure, so the report says how busy it was.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}

// machineCPU is the idle and total time of all CPUs (the "cpu" line of
// /proc/stat), in clock ticks.
type machineCPU struct{ idle, total uint64 }

func readMachineCPU() (machineCPU, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineCPU{}, err
	}
	return parseMachineCPU(string(b))
}

func parseMachineCPU(stat string) (machineCPU, error) {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return machineCPU{}, fmt.Errorf("unexpected first line of /proc/stat: %q", line)
	}
	var m machineCPU
	for i, s := range f[1:] {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return machineCPU{}, fmt.Errorf("/proc/stat field %d: %w", i+1, err)
		}
		if i < 8 { // user … steal; guest time is already in user
			m.total += n
		}
		if i == 3 || i == 4 { // idle, iowait
			m.idle += n
		}
	}
	return m, nil
}

// idlePercent is the share of all CPUs that was idle between m0 and m.
func (m machineCPU) idlePercent(m0 machineCPU) float64 {
	if m.total <= m0.total {
		return -1
	}
	return 100 * float64(m.idle-m0.idle) / float64(m.total-m0.total)
}
