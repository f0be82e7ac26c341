package logs

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"reagent/src/store"
)

// appendLines stores n lines "<prefix><i>" one second apart from t0.
func appendLines(t *testing.T, st *store.Store, name, prefix string, n int, t0 time.Time, pad int) {
	t.Helper()
	k, err := KeyOf(name)
	if err != nil {
		t.Fatal(err)
	}
	lines := make([]store.LogLine, n)
	for i := range lines {
		lines[i] = store.LogLine{Time: t0.Add(time.Duration(i) * time.Second), Stream: "stdout",
			Text: fmt.Sprintf("%s%d%s", prefix, i, strings.Repeat("p", pad))}
	}
	if _, err := st.AppendLogs(context.Background(), name, k, lines); err != nil {
		t.Fatal(err)
	}
}

func TestQuery(t *testing.T) {
	e := newRelayEnv(t, RelayOptions{}, true)
	t0 := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	appendLines(t, e.st, app, "l", 6000, t0, 0)
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Second) }
	tests := []struct {
		name      string
		q         Query
		first     string // oldest line returned
		n         int
		truncated bool
	}{
		{"default tail", Query{}, "l5800", DefaultQueryTail, false},
		{"tail", Query{Tail: 3}, "l5997", 3, false},
		{"tail and offset", Query{Tail: 3, Offset: 10}, "l5987", 3, false},
		{"tail is capped", Query{Tail: 100000}, "l1000", MaxQueryLines, false},
		{"tail plus offset is capped", Query{Tail: 300, Offset: 4800}, "l1000", 200, false},
		{"offset beyond the cap", Query{Tail: 10, Offset: MaxQueryLines}, "", 0, false},
		{"since (inclusive)", Query{Since: at(5990)}, "l5990", 10, false},
		{"until (exclusive)", Query{Until: at(10), Tail: 5}, "l5", 5, false},
		{"since and until", Query{Since: at(100), Until: at(103)}, "l100", 3, false},
		{"an empty window", Query{Since: at(7000)}, "", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := e.r.Query(context.Background(), app, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Lines) != tc.n || tc.n > 0 && res.Lines[0] != tc.first || res.Truncated != tc.truncated {
				t.Fatalf("%d lines from %q truncated %v; want %d from %q", len(res.Lines), first(res.Lines), res.Truncated, tc.n, tc.first)
			}
			if res.Source != "history" || !res.Oldest.Equal(t0) || res.DeviceTime.IsZero() || res.Lines == nil {
				t.Fatalf("source %q oldest %v device time %v", res.Source, res.Oldest, res.DeviceTime)
			}
		})
	}

	res, err := e.r.Query(context.Background(), app, Query{Tail: 2, Timestamps: true})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"2024-05-01T11:39:58.000000000Z l5998", "2024-05-01T11:39:59.000000000Z l5999"}
	if !slices.Equal(res.Lines, want) {
		t.Fatalf("with timestamps %q, want %q", res.Lines, want)
	}

	res, err = e.r.Query(context.Background(), "prod_9_unknown", Query{})
	if err != nil || len(res.Lines) != 0 || !res.Oldest.IsZero() {
		t.Fatalf("unknown log: %+v, %v", res, err)
	}
	if _, err := e.r.Query(context.Background(), "nope", Query{}); err == nil {
		t.Fatal("invalid name accepted")
	}
}

// The answer stays within 4 MiB, timestamps included; the oldest lines go.
func TestQueryByteCap(t *testing.T) {
	st, err := store.Open(context.Background(), t.TempDir()+"/big.db", store.Options{LogMaxBytes: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := newRelayEnv(t, RelayOptions{Store: st}, true)
	t0 := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	appendLines(t, st, app, "big", 100, t0, 100<<10) // 100 lines of 100 KiB
	for _, ts := range []bool{false, true} {
		res, err := e.r.Query(context.Background(), app, Query{Tail: 100, Timestamps: ts})
		if err != nil {
			t.Fatal(err)
		}
		total := 0
		for _, l := range res.Lines {
			total += len(l) + 1
		}
		if !res.Truncated || total > MaxQueryBytes || len(res.Lines) != 40 || !strings.Contains(res.Lines[39], "big99") {
			t.Fatalf("timestamps %v: %d lines, %d bytes, truncated %v", ts, len(res.Lines), total, res.Truncated)
		}
	}
}

func TestHistory(t *testing.T) {
	e := newRelayEnv(t, RelayOptions{FlushInterval: time.Hour}, true)
	t0 := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	appendLines(t, e.st, app, "l", 150, t0, 0)
	// Buffered, not yet stored (the storer ticks once an hour): a query
	// stores it first.
	e.r.Write(app, "agent says hi")
	got, err := e.r.History(context.Background(), app, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := append(numbered("l", 51, 149), "agent says hi")
	if !slices.Equal(got, want) {
		t.Fatalf("history\n got  %q\n want %q", got, want)
	}
	got, err = e.r.History(context.Background(), "prod_9_none", 10)
	if err != nil || got == nil || len(got) != 0 {
		t.Fatalf("empty history: %q, %v", got, err)
	}
}

func first(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return lines[0]
}
