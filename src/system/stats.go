package system

import (
	"context"
	"sync"
	"time"
)

// StatsPayload is the resource snapshot of the heartbeat (`stats` of
// update_device_status) and of get_storage_data. Sizes are bytes; storage_*
// is the filesystem of "/", docker_apps_* the one of the apps dir.
//
//	{"cpu_count": 2, "cpu_usage": 3.5, "memory_total": 4123000832, "memory_used": 1062000640,
//	 "memory_available": 2900000768, "storage_total": 63000000000, "storage_used": 21000000000,
//	 "storage_free": 39000000000, "docker_apps_total": 63000000000, "docker_apps_used": 21000000000,
//	 "docker_apps_free": 39000000000, "docker_apps_mounted": false}
type StatsPayload struct {
	CPUCount          int     `json:"cpu_count"`
	CPUUsage          float64 `json:"cpu_usage"` // percent of all CPUs, 0..100
	MemoryTotal       uint64  `json:"memory_total"`
	MemoryUsed        uint64  `json:"memory_used"`
	MemoryAvailable   uint64  `json:"memory_available"`
	StorageTotal      uint64  `json:"storage_total"`
	StorageUsed       uint64  `json:"storage_used"`
	StorageFree       uint64  `json:"storage_free"`
	DockerAppsTotal   uint64  `json:"docker_apps_total"`
	DockerAppsUsed    uint64  `json:"docker_apps_used"`
	DockerAppsFree    uint64  `json:"docker_apps_free"`
	DockerAppsMounted bool    `json:"docker_apps_mounted"`
}

// SampleInterval is how long Stats (and a Sampler's first call) watches
// the CPU counters.
const SampleInterval = 250 * time.Millisecond

// Stats measures the device once, watching the CPU for SampleInterval.
// appsDir is the configured apps dir (the reference hard-codes
// /opt/reagent/docker-apps); when it does not exist its fields are 0.
func Stats(ctx context.Context, appsDir string) (StatsPayload, error) {
	s := NewSampler(appsDir)
	if _, err := s.Stats(ctx); err != nil {
		return StatsPayload{}, err
	}
	t := time.NewTimer(SampleInterval)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return StatsPayload{}, ctx.Err()
	case <-t.C:
	}
	return s.Stats(ctx)
}

// Sampler measures the device repeatedly without ever waiting: CPU usage
// is the average since the previous call (since boot on the first), so a
// heartbeat every 30 s reports the last 30 s. Calls closer together than
// minCPUWindow repeat the last figure instead of measuring noise. Safe for
// concurrent use.
type Sampler struct {
	appsDir string
	src     source // where the counters come from; tests point it at files

	mu        sync.Mutex // guards the fields below
	prev      cpuTimes   // the reading the next figure is measured from; zero = boot
	lastUsage float64
	measured  bool // lastUsage holds a figure
}

// minCPUWindow is the least CPU time (jiffies, summed over all CPUs, so
// 0.25 s on one CPU at 100 Hz) a usage figure is computed over.
const minCPUWindow = 25

// cpuTimes are cumulative CPU counters (jiffies) of all CPUs together.
type cpuTimes struct {
	busy, total uint64
}

// NewSampler returns a Sampler for the given apps dir. It does no I/O.
func NewSampler(appsDir string) *Sampler {
	return &Sampler{appsDir: appsDir, src: hostSource()}
}

// Stats measures the device. Only when a counter cannot be read at all
// does it fail.
func (s *Sampler) Stats(ctx context.Context) (StatsPayload, error) {
	if err := ctx.Err(); err != nil {
		return StatsPayload{}, err
	}
	usage, count, err := s.cpu()
	if err != nil {
		return StatsPayload{}, err
	}
	p := StatsPayload{CPUCount: count, CPUUsage: usage}
	if err := s.src.memory(&p); err != nil {
		return StatsPayload{}, err
	}
	root, err := s.src.statfs("/")
	if err != nil {
		return StatsPayload{}, err
	}
	p.StorageTotal, p.StorageUsed, p.StorageFree = root.total, root.used, root.free
	if s.appsDir != "" {
		if apps, err := s.src.statfs(s.appsDir); err == nil {
			p.DockerAppsTotal, p.DockerAppsUsed, p.DockerAppsFree = apps.total, apps.used, apps.free
			p.DockerAppsMounted = apps.total != root.total
		}
	}
	return p, nil
}

// cpu returns the usage since the previous reading.
func (s *Sampler) cpu() (usage float64, count int, err error) {
	now, count, err := s.src.cpu()
	if err != nil {
		return 0, 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.measured && (now.total < s.prev.total || now.total-s.prev.total < minCPUWindow) {
		return s.lastUsage, count, nil
	}
	s.lastUsage, s.measured, s.prev = cpuPercent(s.prev, now), true, now
	return s.lastUsage, count, nil
}

// cpuPercent is the busy share between two readings, in percent.
func cpuPercent(a, b cpuTimes) float64 {
	if b.total <= a.total || b.busy < a.busy {
		return 0
	}
	p := float64(b.busy-a.busy) / float64(b.total-a.total) * 100
	if p > 100 {
		p = 100
	}
	return p
}

// fsUsage is the usage of one filesystem, computed like `df`: free is what
// an unprivileged user may still write, used excludes the reserve.
type fsUsage struct {
	total, used, free uint64
}

// source reads the raw counters; the Linux one reads /proc and statfs.
type source struct {
	cpu    func() (cpuTimes, int, error)
	memory func(p *StatsPayload) error
	statfs func(path string) (fsUsage, error)
}
