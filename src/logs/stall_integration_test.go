package logs_test

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"reagent/src/devcloud"
	"reagent/src/docker"
	"reagent/src/logs"
)

// An app printing as fast as it can while the router is gone for 30 s:
// storing goes on, the app keeps its rate (the engine's log file sits
// between it and the relay), memory stays flat, and once the router is
// back the subscriber is told how many lines it missed.
func TestRelayStalledRouter(t *testing.T) {
	d := newDevice(t, deviceOptions{})
	name := fmt.Sprintf("prod_%d_flood", randKey(t))
	topic := logs.Topic(d.serial, name)
	id := d.runContainer(name, `i=0; while :; do i=$((i+1)); echo "$i abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz"; done`, false)
	if err := d.currentRelay().PostStart(d.ctx(10*time.Second), name, id); err != nil {
		t.Fatal(err)
	}
	sub := d.tapLog(topic)
	waitFor(t, 30*time.Second, "lines received", func() bool { return sub.Lines() > 1000 })

	// Phase A: the router is up.
	a0 := d.appCounter(id)
	waitFor(t, 30*time.Second, "8 s of phase A", func() bool { return time.Since(a0.seen) >= 8*time.Second })
	a1 := d.appCounter(id)
	rateA := a1.rate(a0)
	storedA := d.storedCounter(name)

	// Phase B: the router is gone.
	if err := d.cloud.StopRouter(); err != nil {
		t.Fatal(err)
	}
	b0 := d.appCounter(id)
	var mem []memSample
	var at5 memSample
	for time.Since(b0.seen) < 30*time.Second {
		m := sampleMemory(t)
		mem = append(mem, m)
		if at5.heap == 0 && time.Since(b0.seen) >= 5*time.Second {
			at5 = m
		}
		waitFor(t, 5*time.Second, "a second", func() bool { return time.Since(m.at) >= time.Second })
	}
	b1 := d.appCounter(id)
	rateB := b1.rate(b0)
	storedB := d.storedCounter(name)
	end := sampleMemory(t)

	// The router comes back; so does a subscriber.
	if err := d.cloud.StartRouter(); err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	sess := d.sess
	d.mu.Unlock()
	if err := sess.WaitConnected(d.ctx(30 * time.Second)); err != nil {
		t.Fatalf("the device did not reconnect: %v", err)
	}
	sub2 := d.tapLog(topic)
	var marker string
	waitFor(t, 30*time.Second, "the drops announced", func() bool { marker = sub2.FirstMarker(); return marker != "" })

	peakHeap, peakRSS := uint64(0), uint64(0)
	for _, m := range mem {
		peakHeap, peakRSS = max(peakHeap, m.heap), max(peakRSS, m.rss)
	}
	t.Logf("app rate: %.0f lines/s with the router up, %.0f lines/s with it gone", rateA, rateB)
	t.Logf("stored counter: %d at the stall (app at %d), %d after 30 s of it (app at %d)", storedA, a1.n, storedB, b1.n)
	t.Logf("test process during the stall: heap %s at 5 s, %s at 30 s, peak %s; RSS %s at 5 s, %s at 30 s, peak %s",
		mib(at5.heap), mib(end.heap), mib(peakHeap), mib(at5.rss), mib(end.rss), mib(peakRSS))
	t.Logf("after the router returned: %q", marker)

	if rateB < 0.5*rateA {
		t.Errorf("the app slowed from %.0f to %.0f lines/s while the router was gone", rateA, rateB)
	}
	if storedB <= storedA+int(rateB) {
		t.Errorf("storing stalled with the router: stored counter %d → %d", storedA, storedB)
	}
	if end.heap > at5.heap+16<<20 {
		t.Errorf("heap grew from %s to %s during the stall", mib(at5.heap), mib(end.heap))
	}
}

// appSample is the app's own counter as the engine saw it.
type appSample struct {
	n    int
	at   time.Time // the engine's timestamp of the line
	seen time.Time // when the test read it
}

func (s appSample) rate(from appSample) float64 {
	return float64(s.n-from.n) / s.at.Sub(from.at).Seconds()
}

// appCounter reads the app's newest line from the engine.
func (d *device) appCounter(id string) appSample {
	d.t.Helper()
	var s appSample
	err := d.engine.Logs(d.ctx(30*time.Second), id, docker.LogsOptions{Tail: 1}, func(le docker.LogEntry) error {
		n, err := strconv.Atoi(strings.Fields(le.Text)[0])
		s = appSample{n: n, at: le.Time, seen: time.Now()}
		return err
	})
	if err != nil || s.n == 0 {
		d.t.Fatalf("read the app's counter: %v (%+v)", err, s)
	}
	return s
}

// storedCounter is the app's counter in the newest stored line.
func (d *device) storedCounter(name string) int {
	d.t.Helper()
	l, ok, err := d.currentStore().LastLog(d.ctx(30*time.Second), name)
	if err != nil || !ok {
		d.t.Fatalf("last stored line: %v", err)
	}
	n, _ := strconv.Atoi(strings.Fields(l.Text)[0])
	return n
}

type memSample struct {
	at   time.Time
	heap uint64 // live heap after a GC
	rss  uint64
}

func sampleMemory(t *testing.T) memSample {
	t.Helper()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSample{at: time.Now(), heap: ms.HeapAlloc, rss: rss(t)}
}

// rss reads VmRSS of this process.
func rss(t *testing.T) uint64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// tapLog subscribes to a log topic for the rest of the test.
func (d *device) tapLog(topic string) *devcloud.LogTap {
	d.t.Helper()
	tap, err := d.cloud.TapLog(d.ctx(30*time.Second), topic)
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(tap.Close)
	return tap
}
