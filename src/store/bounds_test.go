package store

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestLogBoundsUnder100000Lines appends 100 000 lines of varying length in
// batches of varying size; after every batch the log holds exactly the
// newest lines that fit both bounds.
func TestLogBoundsUnder100000Lines(t *testing.T) {
	const (
		total    = 100_000
		maxLines = 5_000
		maxBytes = 150_000 // lines average ~50 bytes, so both bounds bite by turns
	)
	s := openOpts(t, Options{LogMaxLines: maxLines, LogMaxBytes: maxBytes})
	c := ctxT(t)
	t0 := time.Date(2026, 5, 4, 0, 0, 0, 0, time.UTC)
	sizes := map[uint64]int{}
	appended := 0
	for b := 0; appended < total; b++ {
		n := min([]int{1000, 1, 137, 2500, 10}[b%5], total-appended)
		lines := make([]LogLine, n)
		for i := range lines {
			j := appended + i
			// Short lines for a while, then long ones: the bytes bound
			// bites during the long stretches, the lines bound otherwise.
			size := 5 + j%13
			if (j/20_000)%2 == 1 {
				size = 20 + j%90
			}
			lines[i] = LogLine{Time: t0.Add(time.Duration(j) * time.Millisecond), Stream: "stdout",
				Text: strings.Repeat(string(rune('a'+j%26)), size)}
		}
		out, err := s.AppendLogs(c, "prod_42_app", logKey, lines)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range out {
			sizes[l.Seq] = len(l.Text)
		}
		appended += n
		checkStreamAccounting(t, s, "prod_42_app") // bounds and invariants after every batch
		// Exactly the newest lines that fit: one more would break a bound.
		var first uint64
		if err := s.db.QueryRowContext(c, `SELECT first_seq FROM log_streams WHERE name = ?`, "prod_42_app").Scan(&first); err != nil {
			t.Fatal(err)
		}
		if first > 1 {
			kept, bytes := uint64(appended)-first+1, 0
			for seq := first; seq <= uint64(appended); seq++ {
				bytes += sizes[seq]
			}
			if kept < maxLines && bytes+sizes[first-1] <= maxBytes {
				t.Fatalf("after %d lines: trimmed too much: %d lines / %d bytes kept, line %d (%d bytes) would fit",
					appended, kept, bytes, first-1, sizes[first-1])
			}
		}
	}
	last, ok, err := s.LastLog(c, "prod_42_app")
	if err != nil || !ok || last.Seq != total {
		t.Fatalf("last line %d, want %d (%v)", last.Seq, total, err)
	}
	res, err := s.QueryLogs(c, "prod_42_app", LogQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Lines) == 0 || res.Lines[len(res.Lines)-1].Seq != total || !res.Oldest.Equal(res.Lines[0].Time) {
		t.Fatalf("query after the run: %d lines, oldest %v", len(res.Lines), res.Oldest)
	}
	var pages, pageSize int64
	if err := s.db.QueryRow(`PRAGMA page_count`).Scan(&pages); err != nil {
		t.Fatal(err)
	}
	if err := s.db.QueryRow(`PRAGMA page_size`).Scan(&pageSize); err != nil {
		t.Fatal(err)
	}
	t.Logf("database after %d lines: %d pages of %d bytes (%d KiB)", total, pages, pageSize, pages*pageSize/1024)
	// Deleted pages are reused: the file stays near the size of one full log.
	if pages*pageSize > 4<<20 {
		t.Fatalf("database grew to %d bytes", pages*pageSize)
	}
}

// TestHistoryBoundsUnder100000Transitions records 100 000 state changes of
// four apps; each app's history keeps exactly its newest HistoryMax.
func TestHistoryBoundsUnder100000Transitions(t *testing.T) {
	total := 100_000
	if testing.Short() {
		total = 10_000
	}
	const (
		apps = 4
		max  = 200
	)
	s := openOpts(t, Options{HistoryMax: max})
	// Not cancellable: the driver then needs no watcher goroutine per
	// statement, which is most of the time of 100 000 small transactions.
	c := context.Background()
	states := []string{"STARTING", "RUNNING", "STOPPING", "PRESENT", "FAILED"}
	for i := range total {
		a := Actual{Key: Key{AppKey: uint64(1 + i%apps), Stage: "PROD"}, AppName: "a", State: states[(i/apps)%len(states)],
			Version: fmt.Sprint(i)}
		if changed, err := s.PutActual(c, a); err != nil || !changed {
			t.Fatalf("transition %d: changed=%v %v", i, changed, err)
		}
		if i%10_000 == 9_999 {
			var rows, worst int
			if err := s.db.QueryRowContext(c, `
				SELECT COUNT(*), COALESCE(MAX(n), 0) FROM (SELECT COUNT(*) AS n FROM history GROUP BY app_key, stage)`).
				Scan(&rows, &worst); err != nil {
				t.Fatal(err)
			}
			var all int
			if err := s.db.QueryRowContext(c, `SELECT COUNT(*) FROM history`).Scan(&all); err != nil {
				t.Fatal(err)
			}
			if worst > max || all > apps*max {
				t.Fatalf("after %d transitions: %d rows, an app holds %d (max %d)", i+1, all, worst, max)
			}
		}
	}
	for app := 1; app <= apps; app++ {
		h, err := s.History(c, Key{AppKey: uint64(app), Stage: "PROD"}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(h) != max {
			t.Fatalf("app %d keeps %d transitions, want %d", app, len(h), max)
		}
		// The newest: versions are the loop index, i%apps == app-1.
		lastI := total - apps + app - 1
		if h[max-1].Version != fmt.Sprint(lastI) || h[0].Version != fmt.Sprint(lastI-(max-1)*apps) {
			t.Fatalf("app %d keeps versions %s..%s, want %d..%d", app, h[0].Version, h[max-1].Version, lastI-(max-1)*apps, lastI)
		}
	}
}
