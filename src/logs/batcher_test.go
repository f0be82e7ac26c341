package logs

import (
	"reflect"
	"strings"
	"testing"
)

// op is one step on a batcher in a table test.
type op struct {
	line string
	msg  any
	take bool
	fail int
}

func TestBatcher(t *testing.T) {
	big := strings.Repeat("x", maxPublication-10)
	tests := []struct {
		name string
		max  int
		ops  []op
		want [][]any // the args of every publication taken, in order
	}{
		{
			name: "lines join into one publication",
			max:  1 << 20,
			ops:  []op{{line: "a"}, {line: "b"}, {line: ""}, {line: "c"}, {take: true}},
			want: [][]any{{"a\nb\n\nc"}},
		},
		{
			name: "agent messages go alone, in order",
			max:  1 << 20,
			ops:  []op{{line: "a"}, {msg: "M"}, {line: "b"}, {line: "c"}, {take: true}},
			want: [][]any{{"a"}, {"M"}, {"b\nc"}},
		},
		{
			name: "a publication holds at most maxPublication bytes",
			max:  1 << 20,
			ops:  []op{{line: big}, {line: "0123456789"}, {take: true}},
			want: [][]any{{big}, {"0123456789"}},
		},
		{
			name: "nothing queued, nothing taken",
			max:  100,
			ops:  []op{{take: true}},
			want: nil,
		},
		{
			name: "full: dropped and announced at the end of the flush",
			max:  6, // three one-letter lines
			ops:  []op{{line: "a"}, {line: "b"}, {line: "c"}, {line: "d"}, {line: "e"}, {take: true}},
			want: [][]any{{"a\nb\nc\n" + dropMarker(2)}},
		},
		{
			name: "drops announced where they happened once there is room",
			max:  4,
			ops: []op{{line: "a"}, {line: "b"}, {line: "c"}, {take: true},
				{line: "d"}, {take: true}},
			want: [][]any{{"a\nb\n" + dropMarker(1)}, {"d"}},
		},
		{
			name: "a line longer than a publication is dropped",
			max:  4 << 20,
			ops:  []op{{line: strings.Repeat("y", maxPublication)}, {line: "after"}, {take: true}},
			want: [][]any{{dropMarker(1) + "\nafter"}},
		},
		{
			name: "failed publications are announced with the next flush",
			max:  1 << 20,
			ops:  []op{{line: "a"}, {take: true}, {fail: 3}, {line: "b"}, {take: true}},
			want: [][]any{{"a"}, {dropMarker(3) + "\nb"}},
		},
		{
			name: "an announcement alone",
			max:  1 << 20,
			ops:  []op{{fail: 1}, {take: true}},
			want: [][]any{{dropMarker(1)}},
		},
		{
			name: "messages count as dropped lines too",
			max:  40,
			ops:  []op{{msg: "M1"}, {msg: "M2"}, {take: true}},
			want: [][]any{{"M1"}, {dropMarker(1)}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := batcher{max: tc.max}
			var got [][]any
			for _, o := range tc.ops {
				switch {
				case o.take:
					for _, p := range b.take() {
						got = append(got, p.args)
					}
				case o.fail > 0:
					b.fail(o.fail)
				case o.msg != nil:
					b.addMsg(o.msg, 30)
				default:
					b.addLine(o.line)
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("publications\n got  %q\n want %q", got, tc.want)
			}
		})
	}
}

// A publication's line count covers what a marker in it announces, so a
// failed one is announced again in full.
func TestBatcherLineCounts(t *testing.T) {
	b := batcher{max: 4}
	for _, l := range []string{"a", "b", "c", "d"} {
		b.addLine(l)
	}
	pubs := b.take()
	if len(pubs) != 1 || pubs[0].lines != 4 {
		t.Fatalf("publications %+v, want one standing for 4 lines", pubs)
	}
	b.fail(pubs[0].lines)
	if p := b.take(); len(p) != 1 || p[0].args[0] != dropMarker(4) {
		t.Fatalf("after the failure: %+v", p)
	}
}

func TestBatcherDiscardAndLose(t *testing.T) {
	b := batcher{max: 4}
	for _, l := range []string{"a", "b", "c"} { // c is dropped
		b.addLine(l)
	}
	b.discard()
	if !b.empty() || b.take() != nil {
		t.Fatal("discard left something to publish")
	}
	for _, l := range []string{"a", "b", "c"} {
		b.addLine(l)
	}
	b.lose()
	if p := b.take(); len(p) != 1 || p[0].args[0] != dropMarker(3) {
		t.Fatalf("after lose: %+v, want the three lines announced", p)
	}
}

// However many lines come in, the queue stays within its bound (plus one
// marker line) and every line is either queued or counted.
func TestBatcherBoundedMemory(t *testing.T) {
	const max = 10 << 10
	b := batcher{max: max}
	line := strings.Repeat("z", 99)
	accepted, sent := 0, 0
	for i := range 100000 {
		if b.addLine(line) {
			accepted++
		}
		if b.size() > max+len(dropMarker(1<<30))+1 {
			t.Fatalf("queue %d bytes after %d lines, bound %d", b.size(), i+1, max)
		}
		if i%20000 == 19999 {
			for _, p := range b.take() {
				sent += p.lines
			}
		}
	}
	for _, p := range b.take() {
		sent += p.lines
	}
	if sent != 100000 || accepted >= 100000 {
		t.Fatalf("%d lines accounted for (sent or announced), %d accepted; want 100000 and drops", sent, accepted)
	}
}

// BenchmarkBatcher queues container lines of about 80 bytes and takes a
// publication every 64 KiB, like the publisher at full speed.
func BenchmarkBatcher(b *testing.B) {
	line := strings.Repeat("log text ", 9)
	q := batcher{max: DefaultMaxPending}
	b.ReportAllocs()
	b.SetBytes(int64(len(line) + 1))
	for b.Loop() {
		q.addLine(line)
		if q.size() >= DefaultFlushBytes {
			_ = q.take()
		}
	}
}
