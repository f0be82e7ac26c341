package main

import (
	"testing"

	"github.com/gammazero/nexus/v3/wamp"
)

func TestLineCounter(t *testing.T) {
	tests := []struct {
		name   string
		events [][]any // the positional args of each event
		want   counts
	}{
		{
			name:   "consecutive batches",
			events: [][]any{{"1\n2\n3"}, {"4\r\n5"}},
			want:   counts{events: 2, lines: 5, last: 5},
		},
		{
			name:   "announced drop",
			events: [][]any{{"1\n2"}, {"… 3 log line(s) dropped (rate limit)\n6\n7"}},
			want:   counts{events: 2, lines: 4, announced: 3, gaps: 3, gapRuns: 1, largestGap: 3, last: 7},
		},
		{
			name:   "silent loss",
			events: [][]any{{"10\n11\n15\n16\n18"}},
			want:   counts{events: 1, lines: 5, gaps: 4, gapRuns: 2, largestGap: 3, last: 18},
		},
		{
			name:   "agent messages and a repeated line",
			events: [][]any{{"Starting chatty...\n1\n2\n2\n3"}, {map[string]any{"type": "progress"}}},
			want:   counts{events: 2, lines: 4, other: 2, disordered: 1, last: 3},
		},
		{
			name: "a window marked where lines are missing, and a gap elsewhere",
			events: [][]any{{"1\n2\n… log lines between 2026-11-28T09:00:01.5Z and 2026-11-28T09:00:03Z may be missing: the relay was 12s behind the engine's log, which rotates\n9"},
				{"10\n12"}},
			want: counts{events: 2, lines: 5, windows: 1, inWindows: 6, gaps: 7, gapRuns: 2, largestGap: 6, last: 12},
		},
		{
			name:   "first number is not a gap",
			events: [][]any{{"5000\n5001"}},
			want:   counts{events: 1, lines: 2, last: 5001},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &lineCounter{}
			for _, args := range tt.events {
				c.onEvent(&wamp.Event{Arguments: wamp.List(args)})
			}
			got := c.snapshot()
			got.at = tt.want.at
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}
