package docker

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// Unit tests of the log stream parsers on byte streams laid out the way the
// engine writes them (the integration tests in logs_test.go read real ones).

const ts1 = "2024-05-01T10:00:00.000000001Z"
const ts2 = "2024-05-01T10:00:00.000000002Z"

func frame(stream byte, payload string) []byte {
	h := make([]byte, 8, 8+len(payload))
	h[0] = stream
	binary.BigEndian.PutUint32(h[4:], uint32(len(payload)))
	return append(h, payload...)
}

type collected []LogEntry

func (c *collected) builder(stream string, keepTS bool) *lineBuilder {
	return &lineBuilder{stream: stream, keepTS: keepTS, emit: func(e LogEntry) error {
		*c = append(*c, e)
		return nil
	}}
}

func flush(t *testing.T, bs ...*lineBuilder) {
	t.Helper()
	for _, b := range bs {
		if err := b.end(); err != nil {
			t.Fatal(err)
		}
	}
}

func texts(es []LogEntry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Stream + ":" + e.Text
	}
	return out
}

func TestParseMultiplexed(t *testing.T) {
	long := strings.Repeat("a", partialChunk) + strings.Repeat("b", partialChunk) + "tail"
	cases := []struct {
		name   string
		frames [][]byte
		keepTS bool
		want   []string
	}{
		{"lines of both streams", [][]byte{frame(1, ts1+" out1\n"), frame(2, ts2+" err1\n"), frame(1, ts2+" out2\n")}, false,
			[]string{"stdout:out1", "stderr:err1", "stdout:out2"}},
		{"empty line", [][]byte{frame(1, ts1+" \n")}, false, []string{"stdout:"}},
		{"keep timestamps", [][]byte{frame(1, ts1+" x\n")}, true, []string{"stdout:" + ts1 + " x"}},
		{"long line in pieces with repeated timestamp", [][]byte{
			frame(1, ts1+" "+long[:partialChunk]),
			frame(2, ts2+" interleaved\n"),
			frame(1, ts1+" "+long[partialChunk:2*partialChunk]),
			frame(1, ts1+" "+long[2*partialChunk:]+"\n"),
		}, false, []string{"stderr:interleaved", "stdout:" + long}},
		{"last line without newline", [][]byte{frame(1, ts1+" done")}, false, []string{"stdout:done"}},
		{"stdin frames ignored", [][]byte{frame(0, "junk"), frame(1, ts1+" ok\n")}, false, []string{"stdout:ok"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got collected
			out, errb := got.builder("stdout", c.keepTS), got.builder("stderr", c.keepTS)
			if err := parseMultiplexed(bytes.NewReader(bytes.Join(c.frames, nil)), out, errb); err != nil {
				t.Fatal(err)
			}
			flush(t, out, errb)
			if g := texts(got); strings.Join(g, "|") != strings.Join(c.want, "|") {
				t.Fatalf("got %.200q\nwant %.200q", g, c.want)
			}
			if got[0].Time.IsZero() {
				t.Fatal("time not filled")
			}
		})
	}
}

func TestParseMultiplexedTimesAndCut(t *testing.T) {
	var got collected
	out, errb := got.builder("stdout", false), got.builder("stderr", false)
	huge := strings.Repeat("z", MaxLogLine+5000)
	var stream []byte
	for off := 0; off < len(huge); off += partialChunk {
		end := min(off+partialChunk, len(huge))
		stream = append(stream, frame(1, ts1+" "+huge[off:end])...)
	}
	stream = append(stream, frame(1, ts1+" \n")...)
	stream = append(stream, frame(1, ts2+" next\n")...)
	if err := parseMultiplexed(bytes.NewReader(stream), out, errb); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || len(got[0].Text) != MaxLogLine || got[1].Text != "next" {
		t.Fatalf("got %d entries, first %d bytes", len(got), len(got[0].Text))
	}
	want1, _ := time.Parse(time.RFC3339Nano, ts1)
	want2, _ := time.Parse(time.RFC3339Nano, ts2)
	if !got[0].Time.Equal(want1) || !got[1].Time.Equal(want2) {
		t.Fatalf("times %v %v", got[0].Time, got[1].Time)
	}
}

func TestParseMultiplexedStreamError(t *testing.T) {
	var got collected
	err := parseMultiplexed(bytes.NewReader(frame(3, "boom\n")), got.builder("stdout", false), got.builder("stderr", false))
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("err %v", err)
	}
	err = parseMultiplexed(bytes.NewReader(frame(1, ts1+" cut")[:12]), got.builder("stdout", false), got.builder("stderr", false))
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated frame: %v", err)
	}
}

func TestParseRaw(t *testing.T) {
	long := strings.Repeat("a", partialChunk) + strings.Repeat("b", partialChunk) + "tail"
	cases := []struct {
		name   string
		stream string
		want   []string
	}{
		{"crlf lines", ts1 + " one\r\n" + ts2 + " two\r\n", []string{"stdout:one", "stdout:two"}},
		{"spaces in content", ts1 + " a b  c\n", []string{"stdout:a b  c"}},
		{"long line pieces", ts1 + " " + long[:partialChunk] + ts1 + " " + long[partialChunk:2*partialChunk] + ts1 + " " + long[2*partialChunk:] + "\n" + ts2 + " after\n",
			[]string{"stdout:" + long, "stdout:after"}},
		{"exact piece then newline piece", ts1 + " " + long[:partialChunk] + ts1 + " \n", []string{"stdout:" + long[:partialChunk]}},
		{"last line without newline", ts1 + " x\n" + ts2 + " end", []string{"stdout:x", "stdout:end"}},
		{"no timestamp kept as content", "plain text\n", []string{"stdout:plain text"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got collected
			out := got.builder("stdout", false)
			if err := parseRaw(strings.NewReader(c.stream), out); err != nil {
				t.Fatal(err)
			}
			flush(t, out)
			if g := texts(got); strings.Join(g, "|") != strings.Join(c.want, "|") {
				t.Fatalf("got %.200q\nwant %.200q", g, c.want)
			}
		})
	}
}

// A short message must come out before more output arrives (following a
// quiet container), so the parser may not wait for a fixed-size read.
func TestParseRawDeliversWithoutMoreInput(t *testing.T) {
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.Close() })
	got := make(chan LogEntry, 1)
	b := &lineBuilder{stream: "stdout", emit: func(e LogEntry) error { got <- e; return nil }}
	done := make(chan error, 1)
	go func() { done <- parseRaw(pr, b) }()
	if _, err := io.WriteString(pw, ts1+" hi\r\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-got:
		if e.Text != "hi" {
			t.Fatalf("text %q", e.Text)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("line not delivered while the stream stays open")
	}
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestConsumerErrorStopsParsing(t *testing.T) {
	stopErr := errors.New("enough")
	n := 0
	b := &lineBuilder{stream: "stdout", emit: func(LogEntry) error { n++; return stopErr }}
	err := parseRaw(strings.NewReader(ts1+" a\n"+ts1+" b\n"), b)
	var ce consumerError
	if !errors.As(err, &ce) || !errors.Is(err, stopErr) || n != 1 {
		t.Fatalf("err %v after %d lines", err, n)
	}
}
