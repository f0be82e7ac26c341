package docker

import (
	"bytes"
	"io"
	"strconv"
	"testing"
	"time"
)

// The log readers' CPU per line, on streams laid out as the engine sends
// them for an app printing consecutive numbers (the bench's chatty app),
// read in the 4 KiB pieces the HTTP transport hands over.

const benchLines = 4096

func benchStream(tty bool) []byte {
	var b bytes.Buffer
	t0 := time.Date(2026, 11, 28, 8, 0, 0, 0, time.UTC)
	for i := range benchLines {
		ts := t0.Add(time.Duration(i) * 13 * time.Microsecond).Format("2006-01-02T15:04:05.000000000Z07:00")
		line := ts + " " + strconv.Itoa(1000000+i)
		if tty {
			b.WriteString(line + "\r\n")
		} else {
			b.Write(frame(1, line+"\n"))
		}
	}
	return b.Bytes()
}

// pieces reads at most n bytes per Read, like the transport's buffer.
type pieces struct {
	r *bytes.Reader
	n int
}

func (p *pieces) Read(b []byte) (int, error) { return p.r.Read(b[:min(len(b), p.n)]) }

func benchParse(b *testing.B, tty bool) {
	data := benchStream(tty)
	lines := 0
	out := &lineBuilder{stream: "stdout", emit: func(e LogEntry) error {
		if e.Time.IsZero() {
			b.Fatal("no time")
		}
		lines++
		return nil
	}}
	errb := &lineBuilder{stream: "stderr", emit: out.emit}
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		var err error
		r := &pieces{r: bytes.NewReader(data), n: 4096}
		if tty {
			err = parseRaw(r, out)
		} else {
			err = parseMultiplexed(r, out, errb)
		}
		if err != nil && err != io.EOF {
			b.Fatal(err)
		}
	}
	if lines != b.N*benchLines {
		b.Fatalf("%d lines parsed, want %d", lines, b.N*benchLines)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(lines), "ns/line")
}

// One op is a stream of benchLines lines.
func BenchmarkParseRaw(b *testing.B)         { benchParse(b, true) }
func BenchmarkParseMultiplexed(b *testing.B) { benchParse(b, false) }
