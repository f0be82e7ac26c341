package logs

import (
	"context"
	"strings"
	"testing"
	"time"

	"reagent/src/docker"
	"reagent/src/store/storetest"
)

// BenchmarkHistoryAppend is the storing path of a follower at full speed:
// each op is one container line of about 80 bytes handed to the relay,
// which buffers it, and whenever a batch is complete (FlushBytes) the
// batch is appended to the real SQLite history as the storer does it (the
// store's default bounds, so old lines are trimmed as well). Both run on
// the benchmark's goroutine, so ns/op is the CPU the relay spends per line
// besides reading the engine's stream, and lines/s what one core sustains.
func BenchmarkHistoryAppend(b *testing.B) {
	st := storetest.Open(b)
	r, err := NewRelay(RelayOptions{Store: st})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	s := r.streamFor(app)
	text := strings.Repeat("log text ", 9)
	t0 := time.Now()
	n := 0
	b.ReportAllocs()
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		n++
		if err := r.acceptLine(ctx, s, docker.LogEntry{Time: t0.Add(time.Duration(n)), Stream: "stdout", Text: text}); err != nil {
			b.Fatal(err)
		}
		if s.pendCost >= r.flushBytes {
			if err := r.storeStream(ctx, s, true); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := r.storeStream(ctx, s, true); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "lines/s")
	if s.dropped != 0 {
		b.Fatalf("%d lines dropped", s.dropped)
	}
	last, ok, err := st.LastLog(ctx, app)
	if err != nil || !ok || !last.Time.Equal(t0.Add(time.Duration(n)).UTC()) {
		b.Fatalf("last stored line %+v %v %v, want line %d", last, ok, err, n)
	}
}
