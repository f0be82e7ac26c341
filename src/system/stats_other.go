//go:build !linux

package system

import "runtime"

// hostSource reports the CPU count and zeros: the counters come from /proc
// and statfs, which only the Linux build reads. The heartbeat still goes
// out on the other targets.
func hostSource() source {
	return source{
		cpu:    func() (cpuTimes, int, error) { return cpuTimes{}, runtime.NumCPU(), nil },
		memory: func(*StatsPayload) error { return nil },
		statfs: func(string) (fsUsage, error) { return fsUsage{}, nil },
	}
}
