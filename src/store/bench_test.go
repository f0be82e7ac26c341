package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The machine running benchmarks is often shared; cpuTime reports the
// process's CPU time per operation next to the wall time, which other load
// inflates.
func cpuTime(b *testing.B) func() {
	b.Helper()
	start := rusage(b)
	return func() {
		b.ReportMetric(float64((rusage(b)-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

func rusage(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchStore(b *testing.B, opts Options) (*Store, context.Context) {
	b.Helper()
	return openOpts(b, opts), context.Background()
}

func BenchmarkPutRequested(b *testing.B) {
	s, c := benchStore(b, Options{})
	r := fullRequested()
	r.Environment = json.RawMessage(`{"A":{"value":"1"},"B":{"value":"2"},"C":{"value":"3"}}`)
	b.ReportAllocs()
	defer cpuTime(b)()
	for i := 0; b.Loop(); i++ {
		r.Version = fmt.Sprint(i)
		if _, err := s.PutRequested(c, r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPutActual(b *testing.B) {
	s, c := benchStore(b, Options{})
	states := []string{"STARTING", "RUNNING"}
	b.ReportAllocs()
	defer cpuTime(b)()
	for i := 0; b.Loop(); i++ {
		if _, err := s.PutActual(c, Actual{Key: logKey, AppName: "a", State: states[i%2]}); err != nil {
			b.Fatal(err)
		}
	}
}

// benchLines are 1000 lines of 40 to 140 bytes, like container output.
func benchLines() []LogLine {
	lines := make([]LogLine, 1000)
	for i := range lines {
		lines[i] = LogLine{Stream: "stdout", Text: fmt.Sprintf("%06d %s", i, strings.Repeat("log text ", 4+i%12))}
	}
	return lines
}

// BenchmarkAppendLogs1000 appends batches of 1000 lines to a log that is
// kept at its default bound, so most batches also trim 1000 old lines.
func BenchmarkAppendLogs1000(b *testing.B) {
	s, c := benchStore(b, Options{})
	lines := benchLines()
	b.ReportAllocs()
	defer cpuTime(b)()
	for b.Loop() {
		if _, err := s.AppendLogs(c, "prod_42_app", logKey, lines); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkQueryLast500 reads the newest 500 lines of a full log
// (20 000 lines).
func BenchmarkQueryLast500(b *testing.B) {
	s, c := benchStore(b, Options{})
	lines := benchLines()
	for range 20 {
		if _, err := s.AppendLogs(c, "prod_42_app", logKey, lines); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	defer cpuTime(b)()
	for b.Loop() {
		res, err := s.QueryLogs(c, "prod_42_app", LogQuery{Tail: 500})
		if err != nil || len(res.Lines) != 500 {
			b.Fatalf("%d lines, %v", len(res.Lines), err)
		}
	}
}

// BenchmarkOutbox is one report's life: enqueue, peek, ack.
func BenchmarkOutbox(b *testing.B) {
	s, c := benchStore(b, Options{})
	payload := json.RawMessage(`{"app_key":42,"stage":"PROD","state":"RUNNING","version":"1.2.0","release_key":7}`)
	b.ReportAllocs()
	defer cpuTime(b)()
	for b.Loop() {
		id, err := s.Enqueue(c, "reswarm.containers.update_app_on_device", payload)
		if err != nil {
			b.Fatal(err)
		}
		out, err := s.PeekOutbox(c, 1)
		if err != nil || len(out) != 1 || out[0].ID != id {
			b.Fatalf("peek %+v %v", out, err)
		}
		if err := s.AckOutbox(c, id); err != nil {
			b.Fatal(err)
		}
	}
}
