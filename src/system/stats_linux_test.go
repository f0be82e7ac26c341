package system

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestParseProcStat(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		want      cpuTimes
		wantCount int
		wantErr   bool
	}{
		{
			name: "two cpus, guest not counted twice",
			in: "cpu  100 10 50 800 40 5 5 0 30 0\ncpu0 50 5 25 400 20 2 3 0 15 0\n" +
				"cpu1 50 5 25 400 20 3 2 0 15 0\nintr 1 2 3\nctxt 99\n",
			want:      cpuTimes{busy: 100 + 10 + 50 + 5 + 5, total: 100 + 10 + 50 + 800 + 40 + 5 + 5},
			wantCount: 2,
		},
		{
			name:      "old kernel with four fields",
			in:        "cpu 10 0 10 80\ncpu0 10 0 10 80\n",
			want:      cpuTimes{busy: 20, total: 100},
			wantCount: 1,
		},
		{name: "no cpu line", in: "intr 1\n", wantErr: true},
		{name: "garbage number", in: "cpu 1 x 3 4 5\n", wantErr: true},
		{name: "short line", in: "cpu 1 2\n", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, n, err := parseProcStat([]byte(tc.in))
			if tc.wantErr {
				if err == nil {
					t.Fatalf("want error, got %+v", got)
				}
				return
			}
			if err != nil || got != tc.want || n != tc.wantCount {
				t.Fatalf("got %+v %d %v, want %+v %d", got, n, err, tc.want, tc.wantCount)
			}
		})
	}
}

func TestParseMeminfo(t *testing.T) {
	const kib = 1024
	tests := []struct {
		name    string
		in      string
		want    StatsPayload
		wantErr bool
	}{
		{
			name: "modern kernel",
			in: "MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    600 kB\n" +
				"Buffers:          50 kB\nCached:          300 kB\nSReclaimable:     50 kB\n",
			want: StatsPayload{MemoryTotal: 1000 * kib, MemoryUsed: 500 * kib, MemoryAvailable: 600 * kib},
		},
		{
			name: "no MemAvailable",
			in:   "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 100 kB\nCached: 100 kB\n",
			want: StatsPayload{MemoryTotal: 1000 * kib, MemoryUsed: 700 * kib, MemoryAvailable: 300 * kib},
		},
		{
			name: "inconsistent counters never underflow",
			in:   "MemTotal: 100 kB\nMemFree: 90 kB\nCached: 90 kB\nMemAvailable: 500 kB\n",
			want: StatsPayload{MemoryTotal: 100 * kib, MemoryUsed: 0, MemoryAvailable: 100 * kib},
		},
		{name: "no total", in: "MemFree: 1 kB\n", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got StatsPayload
			err := parseMeminfo([]byte(tc.in), &got)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("got %+v %v, want %+v", got, err, tc.want)
			}
		})
	}
}

// fakeProc writes a /proc/stat and /proc/meminfo into a temp dir.
func fakeProc(t *testing.T, stat string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "meminfo"), []byte("MemTotal: 4 kB\nMemFree: 1 kB\nMemAvailable: 2 kB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestSamplerUsesDeltaSincePreviousCall(t *testing.T) {
	dir := fakeProc(t, "cpu 10 0 0 90 0\ncpu0 10 0 0 90 0\n")
	s := &Sampler{appsDir: filepath.Join(dir, "missing"), src: procSource(dir)}
	setStat := func(stat string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		stat string // "" → unchanged
		want float64
	}{
		{"", 10}, // first call: the average since boot, no waiting
		{"cpu 40 0 0 160 0\ncpu0 40 0 0 160 0\n", 30}, // 30 busy of 100 jiffies since the previous call
		{"cpu 41 0 0 170 0\ncpu0 41 0 0 170 0\n", 30}, // 11 jiffies is too short a window: the last figure
		{"cpu 90 0 0 210 0\ncpu0 90 0 0 210 0\n", 50}, // measured from the last figure's reading: 50 of 100
	}
	for i, st := range steps {
		if st.stat != "" {
			setStat(st.stat)
		}
		p, err := s.Stats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if p.CPUUsage != st.want || p.CPUCount != 1 {
			t.Fatalf("step %d: usage %v count %d, want %v", i, p.CPUUsage, p.CPUCount, st.want)
		}
		if p.MemoryTotal != 4096 || p.MemoryUsed != 3072 || p.MemoryAvailable != 2048 {
			t.Fatalf("memory %+v", p)
		}
		if p.DockerAppsTotal != 0 || p.DockerAppsMounted || p.StorageTotal == 0 {
			t.Fatalf("a missing apps dir must read as zeros, not mounted: %+v", p)
		}
	}
}

func TestStatsHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Stats(ctx, ""); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
	s := &Sampler{src: procSource(fakeProc(t, "cpu 1 0 0 1 0\n"))}
	if _, err := s.Stats(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("sampler err %v", err)
	}
}

func TestSamplerFailsWithoutCounters(t *testing.T) {
	s := &Sampler{src: procSource(t.TempDir())}
	if _, err := s.Stats(context.Background()); err == nil {
		t.Fatal("no /proc/stat must be an error")
	}
}

func TestStatsOfThisMachine(t *testing.T) {
	apps := t.TempDir()
	p, err := Stats(context.Background(), apps)
	if err != nil {
		t.Fatal(err)
	}
	if p.CPUCount < 1 || p.CPUUsage < 0 || p.CPUUsage > 100 {
		t.Errorf("cpu %d %.2f", p.CPUCount, p.CPUUsage)
	}
	if p.MemoryTotal == 0 || p.MemoryUsed > p.MemoryTotal || p.MemoryAvailable > p.MemoryTotal {
		t.Errorf("memory %+v", p)
	}
	root, err := statfs("/")
	if err != nil {
		t.Fatal(err)
	}
	if p.StorageTotal != root.total || p.StorageTotal == 0 || p.StorageUsed > p.StorageTotal || p.StorageFree > p.StorageTotal {
		t.Errorf("storage %+v, statfs / %+v", p, root)
	}
	a, err := statfs(apps)
	if err != nil {
		t.Fatal(err)
	}
	if p.DockerAppsTotal != a.total || p.DockerAppsMounted != (a.total != root.total) {
		t.Errorf("apps %+v, statfs %s %+v", p, apps, a)
	}
}

func TestCPUPercent(t *testing.T) {
	tests := []struct {
		a, b cpuTimes
		want float64
	}{
		{cpuTimes{0, 0}, cpuTimes{50, 100}, 50},
		{cpuTimes{10, 100}, cpuTimes{10, 100}, 0},   // no time passed
		{cpuTimes{50, 100}, cpuTimes{40, 200}, 0},   // counter went back (hotplug)
		{cpuTimes{0, 100}, cpuTimes{200, 200}, 100}, // capped
	}
	for _, tc := range tests {
		if got := cpuPercent(tc.a, tc.b); got != tc.want {
			t.Errorf("cpuPercent(%v, %v) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

// BenchmarkSamplerStats is the cost of one heartbeat's stats (no waiting).
func BenchmarkSamplerStats(b *testing.B) {
	s := NewSampler(b.TempDir())
	ctx := context.Background()
	for b.Loop() {
		if _, err := s.Stats(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
