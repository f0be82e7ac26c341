package store

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"reagent/src/errdefs"
)

var logKey = Key{AppKey: 42, Stage: "PROD"}

// appendN appends n lines "<prefix><i>" one second apart, starting at
// start, and returns them as stored.
func appendN(t *testing.T, s *Store, name string, start time.Time, prefix string, n int) []LogLine {
	t.Helper()
	lines := make([]LogLine, n)
	for i := range lines {
		lines[i] = LogLine{Time: start.Add(time.Duration(i) * time.Second), Stream: "stdout", Text: fmt.Sprintf("%s%d", prefix, i)}
	}
	out, err := s.AppendLogs(ctxT(t), name, logKey, lines)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func texts(lines []LogLine) []string {
	var out []string
	for _, l := range lines {
		out = append(out, l.Text)
	}
	return out
}

func TestAppendAssignsSeqAndTime(t *testing.T) {
	clk := newClock()
	s := openOpts(t, Options{Now: clk.Now})
	c := ctxT(t)
	local := time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("X", 3600))
	got, err := s.AppendLogs(c, "prod_42_app", logKey, []LogLine{
		{Stream: "stdout", Text: "a"},
		{Stream: "stderr", Text: "b", Time: local},
		{Stream: "agent", Text: ""},
		{Seq: 999, Stream: "stdout", Text: "d"}, // a given Seq is replaced
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []LogLine{
		{Seq: 1, Time: clk.Now(), Stream: "stdout", Text: "a"},
		{Seq: 2, Time: local.UTC(), Stream: "stderr", Text: "b"},
		{Seq: 3, Time: clk.Now(), Stream: "agent", Text: ""},
		{Seq: 4, Time: clk.Now(), Stream: "stdout", Text: "d"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("returned %+v\nwant %+v", got, want)
	}
	res, err := s.QueryLogs(c, "prod_42_app", LogQuery{})
	if err != nil || !reflect.DeepEqual(res.Lines, want) || res.Truncated || !res.Oldest.Equal(clk.Now()) {
		t.Fatalf("stored %+v, %v", res, err)
	}
	more, err := s.AppendLogs(c, "prod_42_app", logKey, []LogLine{{Stream: "stdout", Text: "e"}})
	if err != nil || more[0].Seq != 5 {
		t.Fatalf("next batch: %+v %v", more, err)
	}
	// Another log has its own numbering.
	other, err := s.AppendLogs(c, "dev_42_app", Key{AppKey: 42, Stage: "DEV"}, []LogLine{{Stream: "stdout", Text: "x"}})
	if err != nil || other[0].Seq != 1 {
		t.Fatalf("other log: %+v %v", other, err)
	}
	last, ok, err := s.LastLog(c, "prod_42_app")
	if err != nil || !ok || last.Seq != 5 || last.Text != "e" {
		t.Fatalf("LastLog = %+v %v %v", last, ok, err)
	}
	if _, ok, err := s.LastLog(c, "nobody"); ok || err != nil {
		t.Fatalf("LastLog of unknown log: %v %v", ok, err)
	}
	if empty, err := s.AppendLogs(c, "prod_42_app", logKey, nil); err != nil || len(empty) != 0 {
		t.Fatalf("empty append: %v %v", empty, err)
	}
}

func TestQueryLogs(t *testing.T) {
	s := openTest(t)
	t0 := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)
	appendN(t, s, "prod_42_app", t0, "l", 10) // l0 at t0 … l9 at t0+9s
	at := func(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }
	all := []string{"l0", "l1", "l2", "l3", "l4", "l5", "l6", "l7", "l8", "l9"}
	cases := []struct {
		name      string
		q         LogQuery
		want      []string
		truncated bool
	}{
		{"everything", LogQuery{}, all, false},
		{"tail", LogQuery{Tail: 3}, all[7:], false},
		{"tail larger than log", LogQuery{Tail: 50}, all, false},
		{"offset", LogQuery{Tail: 3, Offset: 2}, all[5:8], false},
		{"offset without tail", LogQuery{Offset: 8}, all[:2], false},
		{"offset beyond", LogQuery{Offset: 10}, nil, false},
		{"since inclusive", LogQuery{Since: at(7)}, all[7:], false},
		{"until exclusive", LogQuery{Until: at(2)}, all[:2], false},
		{"window", LogQuery{Since: at(3), Until: at(6)}, all[3:6], false},
		{"window one nanosecond", LogQuery{Since: at(4), Until: at(4).Add(1)}, all[4:5], false},
		{"window with tail", LogQuery{Since: at(2), Until: at(8), Tail: 2}, all[6:8], false},
		{"empty window", LogQuery{Since: at(5), Until: at(5)}, nil, false},
		{"far past since", LogQuery{Since: time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC)}, all, false},
		{"far future until", LogQuery{Until: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)}, all, false},
		{"far future since", LogQuery{Since: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)}, nil, false},
		{"far past until", LogQuery{Until: time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)}, nil, false},
		// each line "lN" costs 3 bytes with its newline
		{"max bytes exact", LogQuery{MaxBytes: 30}, all, false},
		{"max bytes drops oldest", LogQuery{MaxBytes: 10}, all[7:], true},
		{"max bytes with tail", LogQuery{Tail: 2, MaxBytes: 100}, all[8:], false},
		{"max bytes below one line", LogQuery{MaxBytes: 2}, nil, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := s.QueryLogs(ctxT(t), "prod_42_app", c.q)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(texts(res.Lines), c.want) || res.Truncated != c.truncated {
				t.Fatalf("got %v truncated=%v, want %v truncated=%v", texts(res.Lines), res.Truncated, c.want, c.truncated)
			}
			if !res.Oldest.Equal(t0) {
				t.Fatalf("Oldest = %v, want %v", res.Oldest, t0)
			}
			for i := 1; i < len(res.Lines); i++ {
				if res.Lines[i].Seq <= res.Lines[i-1].Seq {
					t.Fatalf("not oldest first: %+v", res.Lines)
				}
			}
		})
	}
	res, err := s.QueryLogs(ctxT(t), "unknown", LogQuery{Tail: 5})
	if err != nil || len(res.Lines) != 0 || !res.Oldest.IsZero() {
		t.Fatalf("unknown log: %+v %v", res, err)
	}
	for _, q := range []LogQuery{{Tail: -1}, {Offset: -1}, {MaxBytes: -1}} {
		if _, err := s.QueryLogs(ctxT(t), "prod_42_app", q); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%+v: %v", q, err)
		}
	}
}

func TestLogsAreTrimmedOldestFirst(t *testing.T) {
	t0 := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)
	cases := []struct {
		name     string
		opts     Options
		batches  [][]int // text lengths of the lines of each batch
		wantSeqs [2]uint64
	}{
		{"by lines", Options{LogMaxLines: 5}, [][]int{{1, 1, 1}, {1, 1, 1}}, [2]uint64{2, 6}},
		{"by lines, batch larger than the bound", Options{LogMaxLines: 3}, [][]int{{1, 1}, {1, 1, 1, 1, 1}}, [2]uint64{5, 7}},
		{"by bytes", Options{LogMaxBytes: 10}, [][]int{{4, 4}, {3}}, [2]uint64{2, 3}},
		{"by bytes, exact fit", Options{LogMaxBytes: 10}, [][]int{{4, 3}, {3}}, [2]uint64{1, 3}},
		{"by bytes, batch alone too big", Options{LogMaxBytes: 10}, [][]int{{2, 2}, {6, 6}}, [2]uint64{4, 4}},
		{"a line larger than the bound", Options{LogMaxBytes: 10}, [][]int{{2, 2}, {11}}, [2]uint64{0, 0}},
		{"both bounds, lines bite", Options{LogMaxLines: 2, LogMaxBytes: 100}, [][]int{{1, 1, 1}}, [2]uint64{2, 3}},
		{"both bounds, bytes bite after lines", Options{LogMaxLines: 3, LogMaxBytes: 10}, [][]int{{1, 5, 5}, {4}}, [2]uint64{3, 4}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := openOpts(t, c.opts)
			cx := ctxT(t)
			var all []LogLine
			for _, b := range c.batches {
				var lines []LogLine
				for _, n := range b {
					lines = append(lines, LogLine{Time: t0, Stream: "stdout", Text: strings.Repeat("x", n)})
				}
				got, err := s.AppendLogs(cx, "prod_42_app", logKey, lines)
				if err != nil {
					t.Fatal(err)
				}
				all = append(all, got...)
			}
			res, err := s.QueryLogs(cx, "prod_42_app", LogQuery{})
			if err != nil {
				t.Fatal(err)
			}
			var want []LogLine
			if c.wantSeqs[0] != 0 {
				want = all[c.wantSeqs[0]-1 : c.wantSeqs[1]]
			}
			if !reflect.DeepEqual(res.Lines, want) {
				t.Fatalf("kept %+v\nwant %+v", res.Lines, want)
			}
			checkStreamAccounting(t, s, "prod_42_app")
			// Numbering goes on after trimming.
			next, err := s.AppendLogs(cx, "prod_42_app", logKey, []LogLine{{Stream: "agent", Text: ""}})
			if err != nil || next[0].Seq != uint64(len(all))+1 {
				t.Fatalf("seq after trimming: %+v %v", next, err)
			}
		})
	}
}

// checkStreamAccounting verifies the invariants of a stream row: stored
// seqs are exactly [first_seq, next_seq) and bytes is their size sum, within
// the bounds.
func checkStreamAccounting(t *testing.T, s *Store, name string) {
	t.Helper()
	var id, next, first, bytes, count, minSeq, maxSeq, sum int64
	if err := s.db.QueryRow(`SELECT id, next_seq, first_seq, bytes FROM log_streams WHERE name = ?`, name).
		Scan(&id, &next, &first, &bytes); err != nil {
		t.Fatal(err)
	}
	err := s.db.QueryRow(`
		SELECT COUNT(*), COALESCE(MIN(key), ?3) - ?1, COALESCE(MAX(key), ?3 - 1) - ?1,
		       COALESCE(SUM(LENGTH(CAST(text AS BLOB))), 0)
		FROM log_lines WHERE key >= ?1 AND key < ?2`,
		lineKey(id, 0), lineKey(id+1, 0), lineKey(id, next)).Scan(&count, &minSeq, &maxSeq, &sum)
	if err != nil {
		t.Fatal(err)
	}
	if minSeq != first || maxSeq != next-1 || count != next-first || bytes != sum {
		t.Fatalf("stream %s: next=%d first=%d bytes=%d; lines count=%d min=%d max=%d sum=%d",
			name, next, first, bytes, count, minSeq, maxSeq, sum)
	}
	if count > int64(s.opts.LogMaxLines) || sum > s.opts.LogMaxBytes {
		t.Fatalf("stream %s over its bounds: %d lines, %d bytes", name, count, sum)
	}
}

func TestClearAndDeleteLogsKeepNumbering(t *testing.T) {
	s := openTest(t)
	c := ctxT(t)
	t0 := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)
	devKey := Key{AppKey: 42, Stage: "DEV"}
	otherKey := Key{AppKey: 43, Stage: "PROD"}
	appendN(t, s, "prod_42_app", t0, "p", 3)
	if _, err := s.AppendLogs(c, "dev_42_app", devKey, []LogLine{{Stream: "stdout", Text: "d"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendLogs(c, "pub_42_app", devKey, []LogLine{{Stream: "stdout", Text: "pub"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendLogs(c, "prod_43_b", otherKey, []LogLine{{Stream: "stdout", Text: "b"}}); err != nil {
		t.Fatal(err)
	}

	if err := s.ClearLogs(c, "prod_42_app"); err != nil {
		t.Fatal(err)
	}
	if err := s.ClearLogs(c, "never_seen"); err != nil {
		t.Fatal(err)
	}
	res, err := s.QueryLogs(c, "prod_42_app", LogQuery{})
	if err != nil || len(res.Lines) != 0 || !res.Oldest.IsZero() {
		t.Fatalf("after clear: %+v %v", res, err)
	}
	got := appendN(t, s, "prod_42_app", t0, "q", 1)
	if got[0].Seq != 4 {
		t.Fatalf("seq after clear = %d, want 4", got[0].Seq)
	}
	checkStreamAccounting(t, s, "prod_42_app")

	if err := s.DeleteLogsOf(c, devKey); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int{"dev_42_app": 0, "pub_42_app": 0, "prod_42_app": 1, "prod_43_b": 1} {
		res, err := s.QueryLogs(c, name, LogQuery{})
		if err != nil || len(res.Lines) != want {
			t.Fatalf("%s after DeleteLogsOf(DEV): %d lines, %v; want %d", name, len(res.Lines), err, want)
		}
	}
	again, err := s.AppendLogs(c, "dev_42_app", devKey, []LogLine{{Stream: "stdout", Text: "d2"}})
	if err != nil || again[0].Seq != 2 {
		t.Fatalf("dev seq after DeleteLogsOf: %+v %v", again, err)
	}
}

func TestAppendLogsValidates(t *testing.T) {
	s := openTest(t)
	c := ctxT(t)
	cases := []struct {
		name  string
		log   string
		key   Key
		lines []LogLine
	}{
		{"no name", "", logKey, []LogLine{{Stream: "stdout"}}},
		{"bad key", "x", Key{AppKey: 1, Stage: "dev"}, []LogLine{{Stream: "stdout"}}},
		{"bad stream", "x", logKey, []LogLine{{Stream: "stdout"}, {Stream: "STDOUT"}}},
		{"time out of range", "x", logKey, []LogLine{{Stream: "stdout", Time: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.AppendLogs(c, tc.log, tc.key, tc.lines); !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("err = %v, want invalid argument", err)
			}
		})
	}
	if l, ok, err := s.LastLog(c, "x"); ok || err != nil {
		t.Fatalf("a rejected batch stored %+v (%v)", l, err)
	}
	if _, _, err := s.LastLog(c, ""); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatal(err)
	}
	if err := s.ClearLogs(c, ""); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatal(err)
	}
	if err := s.DeleteLogsOf(c, Key{}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatal(err)
	}
}
