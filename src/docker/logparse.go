package docker

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

const (
	// MaxLogLine is the longest line Logs delivers; the rest of a longer
	// line is dropped, so one runaway line cannot exhaust memory.
	MaxLogLine = 1 << 20
	// partialChunk is the json-file driver's line buffer: longer lines are
	// stored as 16 KiB pieces that all carry the timestamp of the first
	// piece, and the engine replays each piece with that timestamp in front.
	partialChunk = 16 * 1024
	// maxFrame caps how much of one multiplexed frame is held in memory.
	maxFrame = MaxLogLine + 64*1024
	// rawBuffer is the read buffer of a TTY stream, one per followed
	// container. Lines longer than it are assembled piece by piece, and
	// the HTTP transport below hands over at most 4 KiB per read, so a
	// larger buffer would only cost memory.
	rawBuffer = 8 * 1024
)

// LogEntry is one line of container output.
type LogEntry struct {
	Time   time.Time
	Stream string // "stdout" or "stderr"
	Text   string // one line, without the trailing newline
}

// consumerError carries the error of the consumer callback out of the
// parser, so Logs can tell it from a broken stream.
type consumerError struct{ err error }

func (e consumerError) Error() string { return e.err.Error() }
func (e consumerError) Unwrap() error { return e.err }

// lineBuilder assembles the lines of one stream from the engine's log
// messages, joining the pieces of long lines and cutting them at MaxLogLine.
type lineBuilder struct {
	stream string
	keepTS bool // keep the engine's timestamp in front of Text
	emit   func(LogEntry) error
	buf    []byte
	ts     time.Time
	tsRaw  []byte // the engine's timestamp text of the line being built
	open   bool   // a line has begun and awaits more pieces
}

// begin starts a daemon message carrying timestamp tsRaw. A message that
// continues an open line keeps the line's first timestamp.
func (b *lineBuilder) begin(ts time.Time, tsRaw []byte) {
	if b.open {
		return
	}
	b.open = true
	b.ts = ts
	b.tsRaw = append(b.tsRaw[:0], tsRaw...)
	b.buf = b.buf[:0]
}

// add appends content (without newlines) to the open line.
func (b *lineBuilder) add(p []byte) {
	if room := MaxLogLine - len(b.buf); room > 0 {
		if len(p) > room {
			p = p[:room]
		}
		b.buf = append(b.buf, p...)
	}
}

// end completes the open line.
func (b *lineBuilder) end() error {
	if !b.open {
		return nil
	}
	b.open = false
	text := bytes.TrimSuffix(b.buf, []byte{'\r'}) // TTY output ends lines with \r\n
	var s string
	if b.keepTS && len(b.tsRaw) > 0 {
		s = string(b.tsRaw) + " " + string(text)
	} else {
		s = string(text)
	}
	if err := b.emit(LogEntry{Time: b.ts, Stream: b.stream, Text: s}); err != nil {
		return consumerError{err}
	}
	return nil
}

// splitTimestamp separates the engine's "<RFC3339Nano> " prefix from msg.
// Without a parseable prefix the whole msg is content.
func splitTimestamp(msg []byte) (time.Time, []byte, []byte) {
	head := msg
	if len(head) > 64 {
		head = head[:64]
	}
	i := bytes.IndexByte(head, ' ')
	if i <= 0 {
		return time.Time{}, nil, msg
	}
	t, err := time.Parse(time.RFC3339Nano, string(msg[:i]))
	if err != nil {
		return time.Time{}, nil, msg
	}
	return t, msg[:i], msg[i+1:]
}

// feedMessage handles one complete engine message (a multiplexed frame).
func (b *lineBuilder) feedMessage(msg []byte) error {
	ts, raw, content := splitTimestamp(msg)
	b.begin(ts, raw)
	for {
		i := bytes.IndexByte(content, '\n')
		if i < 0 {
			b.add(content) // the line continues in a later message
			return nil
		}
		b.add(content[:i])
		if err := b.end(); err != nil {
			return err
		}
		content = content[i+1:]
		if len(content) == 0 {
			return nil
		}
		b.begin(ts, raw) // a message with several lines (not json-file)
	}
}

// parseMultiplexed reads a non-TTY log stream: 8-byte frame headers
// (stream, 0, 0, 0, big-endian size) each followed by one engine message.
func parseMultiplexed(r io.Reader, stdout, stderr *lineBuilder) error {
	// Two reads per frame (header, message) go through the HTTP body's
	// layers; buffered, most of them are a copy. bufio reads what is there
	// and does not wait to fill its buffer, so a frame is handled at once.
	r = bufio.NewReaderSize(r, rawBuffer)
	var hdr [8]byte
	var buf []byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		size := int64(binary.BigEndian.Uint32(hdr[4:]))
		keep := min(size, int64(maxFrame))
		if int64(cap(buf)) < keep {
			buf = make([]byte, max(keep, 4096))
		}
		buf = buf[:keep]
		if _, err := io.ReadFull(r, buf); err != nil {
			return err
		}
		if size > keep {
			if _, err := io.CopyN(io.Discard, r, size-keep); err != nil {
				return err
			}
		}
		var b *lineBuilder
		switch hdr[0] {
		case 1:
			b = stdout
		case 2:
			b = stderr
		case 3: // the engine reports a failure inside the stream
			return fmt.Errorf("engine log stream: %s", bytes.TrimSpace(buf))
		default:
			continue
		}
		if err := b.feedMessage(buf); err != nil {
			return err
		}
	}
}

// parseRaw reads a TTY log stream, where messages follow each other without
// frames: "<ts> <content>\n". The pieces of a long line are recognised by
// their position (every partialChunk bytes) and their repeated timestamp.
func parseRaw(r io.Reader, out *lineBuilder) error {
	br := bufio.NewReaderSize(r, rawBuffer)
	var prefix []byte
	for {
		// ReadSlice, not Peek(n): a short message must be delivered at once
		// while following, not after more output arrives.
		tok, err := br.ReadSlice(' ')
		switch {
		case err == nil:
		case errors.Is(err, io.EOF) && len(tok) == 0:
			return nil
		case errors.Is(err, io.EOF), errors.Is(err, bufio.ErrBufferFull):
		default:
			return err
		}
		ts, raw, rest := splitTimestamp(tok)
		if raw == nil {
			// No timestamp although we always ask for them: keep the
			// bytes as content rather than lose them.
			out.begin(time.Time{}, nil)
			for {
				i := bytes.IndexByte(rest, '\n')
				if i < 0 {
					out.add(rest)
					break
				}
				out.add(rest[:i])
				if err := out.end(); err != nil {
					return err
				}
				rest = rest[i+1:]
				out.begin(time.Time{}, nil)
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err := readContent(br, out, nil); err != nil {
				return err
			}
			continue
		}
		prefix = append(append(prefix[:0], raw...), ' ')
		out.begin(ts, raw)
		if err := readContent(br, out, prefix); err != nil {
			return err
		}
	}
}

// readContent reads the content of one message up to its newline. With a
// prefix (the message's "<ts> "), a piece boundary followed by the same
// prefix continues the line.
func readContent(br *bufio.Reader, out *lineBuilder, prefix []byte) error {
	seg := 0 // content bytes since the current piece began
	for {
		if _, err := br.Peek(1); err != nil {
			if errors.Is(err, io.EOF) {
				return nil // the caller flushes the open line
			}
			return err
		}
		chunk, _ := br.Peek(br.Buffered())
		if prefix != nil && seg+len(chunk) > partialChunk {
			chunk = chunk[:partialChunk-seg]
		}
		if i := bytes.IndexByte(chunk, '\n'); i >= 0 {
			out.add(chunk[:i])
			_, _ = br.Discard(i + 1)
			return out.end()
		}
		out.add(chunk)
		_, _ = br.Discard(len(chunk))
		seg += len(chunk)
		if prefix != nil && seg == partialChunk {
			seg = 0
			// Peek blocks until the prefix is there or the stream ends;
			// the engine writes a piece and its successor back to back.
			if next, _ := br.Peek(len(prefix)); bytes.Equal(next, prefix) {
				_, _ = br.Discard(len(prefix))
			}
		}
	}
}
