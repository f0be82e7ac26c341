package logs

import (
	"context"
	"fmt"
	"time"

	"reagent/src/store"
)

// Bounds of the log queries (wamp-contract §3.2).
const (
	HistoryLines     = 100     // get_app_log_history: the reference's ring size
	DefaultQueryTail = 200     // query_app_logs without tail
	MaxQueryLines    = 5000    // tail + offset
	MaxQueryBytes    = 4 << 20 // of one answer, counting each line + 1 byte
)

// SourceHistory is the source of every query_app_logs answer: the stored
// history, which is complete, rather than the engine's log.
const SourceHistory = "history"

// tsLayout is how a line's time is put in front of it with timestamps:
// RFC3339 with all nine fraction digits, as the engine's `logs -t` does.
const tsLayout = "2006-01-02T15:04:05.000000000Z07:00"

// Query selects lines of an app log. Zero values are the defaults.
type Query struct {
	Tail         int       // newest lines to return; 0 → DefaultQueryTail; at most MaxQueryLines-Offset
	Offset       int       // newest matching lines to skip first
	Since, Until time.Time // zero = unbounded; Since inclusive, Until exclusive
	Timestamps   bool      // prefix each line with its time
}

// QueryResult is the answer to a Query.
type QueryResult struct {
	Lines      []string  // oldest first; never nil
	Source     string    // SourceHistory
	Truncated  bool      // MaxQueryBytes dropped the oldest lines
	DeviceTime time.Time // when the query was answered
	Oldest     time.Time // the oldest line stored for the log; zero if none
}

// History returns the newest n stored lines of an app log as plain text
// (agent messages as their text), oldest first; n ≤ 0 means HistoryLines.
// Lines read but not yet stored are stored first, so nothing read is
// missing.
func (r *Relay) History(ctx context.Context, name string, n int) ([]string, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	if n <= 0 {
		n = HistoryLines
	}
	r.sync(ctx, name)
	res, err := r.st.QueryLogs(ctx, name, store.LogQuery{Tail: n, MaxBytes: MaxQueryBytes})
	if err != nil {
		return nil, fmt.Errorf("log history of %s: %w", name, err)
	}
	out := make([]string, len(res.Lines))
	for i, l := range res.Lines {
		out[i] = l.Text
	}
	return out, nil
}

// Query answers query_app_logs from the history.
func (r *Relay) Query(ctx context.Context, name string, q Query) (QueryResult, error) {
	if err := ValidName(name); err != nil {
		return QueryResult{}, err
	}
	res := QueryResult{Lines: []string{}, Source: SourceHistory}
	tail, offset := window(q.Tail, q.Offset)
	r.sync(ctx, name)
	if tail > 0 {
		// The store's byte cap counts the text only, so its answer holds
		// every line ours keeps; the timestamps are added below.
		got, err := r.st.QueryLogs(ctx, name, store.LogQuery{
			Since: q.Since, Until: q.Until, Tail: tail, Offset: offset, MaxBytes: MaxQueryBytes,
		})
		if err != nil {
			return QueryResult{}, fmt.Errorf("query log %s: %w", name, err)
		}
		res.Oldest, res.Truncated = got.Oldest, got.Truncated
		res.Lines = render(got.Lines, q.Timestamps)
		var cut bool
		res.Lines, cut = capBytes(res.Lines, MaxQueryBytes)
		res.Truncated = res.Truncated || cut
	} else {
		// Nothing to return, but oldest_available is still asked for.
		got, err := r.st.QueryLogs(ctx, name, store.LogQuery{Tail: 1})
		if err != nil {
			return QueryResult{}, fmt.Errorf("query log %s: %w", name, err)
		}
		res.Oldest = got.Oldest
	}
	res.DeviceTime = r.now().UTC()
	return res, nil
}

// window applies the defaults and limits to tail and offset: the window
// never reaches further back than the newest MaxQueryLines lines.
func window(tail, offset int) (int, int) {
	if tail <= 0 {
		tail = DefaultQueryTail
	}
	offset = max(offset, 0)
	if offset >= MaxQueryLines {
		return 0, offset
	}
	return min(tail, MaxQueryLines-offset), offset
}

func render(lines []store.LogLine, timestamps bool) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		if timestamps {
			out[i] = l.Time.UTC().Format(tsLayout) + " " + l.Text
		} else {
			out[i] = l.Text
		}
	}
	return out
}

// capBytes drops the oldest lines until the rest, each counted with one
// byte for its separator, fit in limit; true when it dropped any.
func capBytes(lines []string, limit int) ([]string, bool) {
	total := 0
	for i := len(lines) - 1; i >= 0; i-- {
		total += len(lines[i]) + 1
		if total > limit {
			return lines[i+1:], true
		}
	}
	return lines, false
}

// sync stores what the log has buffered, so a query sees every line read.
// Failing that, the query answers what is stored.
func (r *Relay) sync(ctx context.Context, name string) {
	r.mu.Lock()
	s := r.streams[name]
	r.mu.Unlock()
	if s == nil {
		return
	}
	if err := r.storeStream(ctx, s, true); err != nil && !isCanceled(ctx, err) {
		r.log.Debug().Err(err).Str("log", name).Msg("buffered lines not stored before a query")
	}
}
