package logs

import (
	"fmt"
	"strings"
	"time"
)

// maxPublication is the most text one publication carries (the reference's
// 256 KiB per flush). A longer line is dropped and counted: a subscriber's
// log view cannot use it, and it would block the link for everyone else.
const maxPublication = 256 << 10

// dropMarker is the line that announces dropped lines in the stream, in
// the reference's words.
func dropMarker(n int) string { return fmt.Sprintf("… %d log line(s) dropped (rate limit)", n) }

// skipMarker is the line that announces a window of a container's output
// the engine may have deleted before the relay read it (its log rotation
// while the relay was behind). The engine does not say how many lines were
// in it, and an app that paused looks the same.
func skipMarker(from, to time.Time, behind time.Duration) string {
	return fmt.Sprintf("… log lines between %s and %s may be missing: the relay was %s behind the engine's log, which rotates",
		from.UTC().Format(time.RFC3339Nano), to.UTC().Format(time.RFC3339Nano), behind.Round(100*time.Millisecond))
}

// publication is one PUBLISH: its positional args and how many lines it
// stands for (those it carries and those a marker in it announces), which
// count as dropped if it cannot be sent.
type publication struct {
	args  []any
	lines int
}

// pubItem is one queued entry: a line, joined with its neighbours into one
// publication, or an agent message published on its own.
type pubItem struct {
	text  string
	msg   any // non-nil: an agent message
	size  int // bytes it costs in the queue
	lines int // 1, or the count a drop marker announces
}

// batcher queues the publications of one log between two flushes. It is
// bounded by bytes: what does not fit is dropped and counted, and the count
// is announced by a marker line once there is room again or at the next
// flush, so a subscriber sees where lines are missing. Not safe for
// concurrent use: the stream's lock guards it.
type batcher struct {
	max     int // bytes
	items   []pubItem
	bytes   int
	dropped int // lines dropped since the last marker; every queued item is older than them
}

// addLine queues a line; false when it was dropped.
func (b *batcher) addLine(text string) bool {
	return b.add(pubItem{text: text, size: len(text) + 1, lines: 1}, len(text)+1 > maxPublication)
}

// addMsg queues an agent message of about size bytes; false when dropped.
func (b *batcher) addMsg(msg any, size int) bool {
	return b.add(pubItem{msg: msg, size: size, lines: 1}, false)
}

func (b *batcher) add(it pubItem, tooBig bool) bool {
	if tooBig || b.bytes+it.size > b.max {
		b.dropped++
		return false
	}
	b.markLocked()
	b.items = append(b.items, it)
	b.bytes += it.size
	return true
}

// markLocked queues the marker for the lines dropped so far. The marker
// may take the queue a few bytes over its bound; there is at most one per
// run of drops.
func (b *batcher) markLocked() {
	if b.dropped == 0 {
		return
	}
	m := dropMarker(b.dropped)
	b.items = append(b.items, pubItem{text: m, size: len(m) + 1, lines: b.dropped})
	b.bytes += len(m) + 1
	b.dropped = 0
}

// size is the bytes queued.
func (b *batcher) size() int { return b.bytes }

// empty reports whether a flush would publish nothing.
func (b *batcher) empty() bool { return len(b.items) == 0 && b.dropped == 0 }

// take empties the queue into publications, in order: runs of lines are
// joined with "\n" into publications of at most maxPublication bytes,
// agent messages go alone, and a marker for lines dropped since the last
// one comes last.
func (b *batcher) take() []publication {
	b.markLocked()
	if len(b.items) == 0 {
		return nil
	}
	var out []publication
	var sb strings.Builder
	lines := 0
	flushText := func() {
		if lines > 0 {
			out = append(out, publication{args: []any{sb.String()}, lines: lines})
			sb = strings.Builder{}
			lines = 0
		}
	}
	for i, it := range b.items {
		if it.msg != nil {
			flushText()
			out = append(out, publication{args: []any{it.msg}, lines: it.lines})
			continue
		}
		if lines > 0 && sb.Len()+1+len(it.text) > maxPublication {
			flushText()
		}
		if lines == 0 {
			sb.Grow(min(b.textBytesFrom(i), maxPublication))
		} else {
			sb.WriteByte('\n')
		}
		sb.WriteString(it.text)
		lines += it.lines
	}
	flushText()
	clear(b.items) // let the strings go
	b.items = b.items[:0]
	if cap(b.items) > 4096 {
		b.items = nil // a burst's backing array is not kept for good
	}
	b.bytes = 0
	return out
}

// textBytesFrom is the bytes of the run of lines starting at item i.
func (b *batcher) textBytesFrom(i int) int {
	n := 0
	for _, it := range b.items[i:] {
		if it.msg != nil || n > maxPublication {
			break
		}
		n += len(it.text) + 1
	}
	return n
}

// fail records that publications standing for n lines could not be sent:
// they count as dropped and are announced with the next flush.
func (b *batcher) fail(n int) { b.dropped += n }

// discard empties the queue without announcing anything: nobody listens
// any more, so nothing was missed.
func (b *batcher) discard() {
	clear(b.items)
	b.items = nil
	b.bytes = 0
	b.dropped = 0
}

// lose empties the queue and counts what it held as dropped: a subscriber
// was there when these lines were queued and is gone when they could be
// sent (the link was down), so the next one learns about the gap.
func (b *batcher) lose() {
	for _, it := range b.items {
		b.dropped += it.lines
	}
	clear(b.items)
	b.items = nil
	b.bytes = 0
}
