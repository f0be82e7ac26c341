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
// which batches it and appends it to the real SQLite history (the store's
// default bounds, so old lines are trimmed as well). The follower waits
// whenever the store is behind, so the rate measured is what the history
// sustains.
func BenchmarkHistoryAppend(b *testing.B) {
	st := storetest.Open(b)
	r, err := NewRelay(RelayOptions{Store: st})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
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
	}
	if err := r.storeStream(ctx, s, true); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "lines/s")
	last, ok, err := st.LastLog(ctx, app)
	if err != nil || !ok || !last.Time.Equal(t0.Add(time.Duration(n)).UTC()) {
		b.Fatalf("last stored line %+v %v %v, want line %d", last, ok, err, n)
	}
}
