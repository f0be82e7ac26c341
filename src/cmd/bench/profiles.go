package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// readAgentMem reads the running agent's memory and, with -pprof, saves its
// profiles under the same label, so a reading can be explained afterwards.
func (b *bench) readAgentMem(label string) (memInfo, error) {
	if b.agent == nil || b.agent.exited() {
		return memInfo{}, b.agentFailure(fmt.Errorf("no agent running to read %s", label))
	}
	m, err := readMem(b.agent.pid())
	if err != nil {
		return memInfo{}, err
	}
	if b.cfg.pprofDir != "" {
		// The memory map first: fetching profiles allocates in the agent.
		for _, f := range []string{"smaps_rollup", "smaps"} {
			if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", b.agent.pid(), f)); err == nil {
				_ = os.WriteFile(filepath.Join(b.cfg.pprofDir, label+"."+f), data, 0o644)
			}
		}
	}
	b.saveProfiles(label)
	return m, nil
}

func memDetails(m memInfo) map[string]any {
	return map[string]any{"rss_anon_bytes": m.RSSAnon, "rss_file_bytes": m.RSSFile, "peak_rss_bytes": m.HWM}
}

// saveProfiles fetches heap, allocs and goroutine profiles from the agent's
// loopback pprof (only with -pprof). Failures are reported, not fatal: the
// profiles explain figures, they are not figures.
func (b *bench) saveProfiles(label string) {
	if b.cfg.pprofDir == "" || b.pprofPort == 0 {
		return
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	for _, p := range []struct{ name, query string }{
		{"heap.pprof", "heap"}, {"allocs.pprof", "allocs"}, {"goroutines.txt", "goroutine?debug=1"},
		{"memstats.txt", "heap?debug=1"}, // the text form ends with runtime.MemStats
	} {
		url := fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/%s", b.pprofPort, p.query)
		path := filepath.Join(b.cfg.pprofDir, label+"."+p.name)
		if err := fetch(hc, url, path); err != nil {
			b.logf("profile %s: %v", p.name, err)
		}
	}
}

func fetch(hc *http.Client, url, path string) error {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// cpuProfile records a CPU profile of the agent over the next d (only with
// -pprof) into label.cpu.pprof; the returned func waits for it.
func (b *bench) cpuProfile(label string, d time.Duration) (wait func()) {
	if b.cfg.pprofDir == "" || b.pprofPort == 0 {
		return func() {}
	}
	secs := max(1, int(d.Round(time.Second)/time.Second))
	done := make(chan struct{})
	go func() {
		defer close(done)
		hc := &http.Client{Timeout: time.Duration(secs)*time.Second + 30*time.Second}
		url := fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=%d", b.pprofPort, secs)
		if err := fetch(hc, url, filepath.Join(b.cfg.pprofDir, label+".cpu.pprof")); err != nil {
			b.logf("CPU profile %s: %v", label, err)
		}
	}()
	return func() { <-done }
}
