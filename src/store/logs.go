package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"reagent/src/errdefs"
)

// LogLine is one stored line of an app log.
type LogLine struct {
	Seq    uint64    // assigned by AppendLogs: monotonic per log name, never reused
	Time   time.Time // zero → the time of the append
	Stream string    // "stdout", "stderr" or "agent"
	Text   string
}

// LogQuery selects lines of one log. Every bound is optional.
type LogQuery struct {
	Since, Until time.Time // zero = unbounded; Since inclusive, Until exclusive
	Tail         int       // the newest Tail matching lines (0 = all)
	Offset       int       // skip the newest Offset matching lines before taking Tail
	MaxBytes     int64     // 0 = no cap; oldest lines are dropped until sum(len(Text)+1) <= MaxBytes
}

// LogResult is the answer to a LogQuery.
type LogResult struct {
	Lines     []LogLine // oldest first
	Truncated bool      // MaxBytes dropped lines
	Oldest    time.Time // time of the oldest line still stored for the log; zero if none
}

// A line's row key is its stream id in the high bits and its seq in the
// low seqBits (see migrations/0002_logs.sql). 2^44 lines is half a century
// of 10 000 lines a second; 2^19 streams is far more names than a device
// ever sees, since each app has two or three.
const (
	seqBits     = 44
	maxSeq      = 1<<seqBits - 1
	maxStreamID = 1<<(63-seqBits) - 1
)

func lineKey(stream, seq int64) int64 { return stream<<seqBits | seq }

// insertChunk is the most lines one INSERT takes: far fewer statement
// executions per batch, and 5 parameters per line stay well below SQLite's
// parameter limit. The rest of a batch goes in chunks of the powers of two
// below it, so a handful of prepared statements covers every batch size.
const insertChunk = 128

const (
	sqlStreamOpen = `
		INSERT INTO log_streams (name, app_key, stage, next_seq, first_seq, bytes) VALUES (?, ?, ?, 1, 1, 0)
		ON CONFLICT (name) DO UPDATE SET app_key = excluded.app_key, stage = excluded.stage
		RETURNING id, next_seq, first_seq, bytes`
	sqlStreamUpdate = `UPDATE log_streams SET next_seq = ?, first_seq = ?, bytes = ? WHERE id = ?`
	sqlStreamGet    = `SELECT id, first_seq, next_seq FROM log_streams WHERE name = ?`
	sqlStreamsOfApp = `SELECT id, first_seq, next_seq FROM log_streams WHERE app_key = ? AND stage = ?`
	sqlStreamClear  = `UPDATE log_streams SET first_seq = next_seq, bytes = 0 WHERE id = ?`
	sqlLinesSize    = `SELECT COALESCE(SUM(size), 0) FROM log_lines WHERE key >= ? AND key < ?`
	sqlLinesSizes   = `SELECT key, size FROM log_lines WHERE key >= ? AND key < ? ORDER BY key`
	sqlLinesDelete  = `DELETE FROM log_lines WHERE key >= ? AND key < ?`
	sqlLineAt       = `SELECT at FROM log_lines WHERE key = ?`
	sqlLineGet      = `SELECT at, kind, text FROM log_lines WHERE key = ?`
)

// sqlQueryLines selects lines of a key range newest first, with or without
// each time bound.
func sqlQueryLines(since, until bool) string {
	q := `SELECT key, at, kind, text FROM log_lines WHERE key >= ? AND key < ?`
	if since {
		q += ` AND at >= ?`
	}
	if until {
		q += ` AND at < ?`
	}
	return q + ` ORDER BY key DESC LIMIT ? OFFSET ?`
}

func insertLinesSQL(n int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO log_lines (key, size, at, kind, text) VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(?, ?, ?, ?, ?)")
	}
	return b.String()
}

// AppendLogs stores lines at the end of the log called name (a container or
// topic name such as "prod_42_app"), which belongs to app k, in one
// transaction. It assigns each line its Seq and trims the log to LogMaxLines
// lines and LogMaxBytes bytes of text, dropping the oldest lines. It returns
// the lines as stored (Seq and Time set), including any that were trimmed
// at once because the batch alone exceeds the bounds.
func (s *Store) AppendLogs(ctx context.Context, name string, k Key, lines []LogLine) ([]LogLine, error) {
	if name == "" {
		return nil, errdefs.InvalidArgument("log name is empty")
	}
	if err := checkKey(k); err != nil {
		return nil, err
	}
	now := s.opts.Now().UTC()
	out := make([]LogLine, len(lines))
	for i, l := range lines {
		if !logStreams[l.Stream] {
			return nil, errdefs.InvalidArgument("log %s: line %d: stream %q must be stdout, stderr or agent", name, i, l.Stream)
		}
		if l.Time.IsZero() {
			l.Time = now
		} else if !inNanoRange(l.Time) {
			return nil, errdefs.InvalidArgument("log %s: line %d: time %s out of range", name, i, l.Time)
		}
		l.Time = l.Time.UTC()
		out[i] = l
	}
	if len(out) == 0 {
		return out, nil
	}

	// keepFrom is the first line of the batch that survives the bounds on
	// its own; lines before it are numbered but never written.
	keepFrom, keptBytes := len(out), int64(0)
	for i := len(out) - 1; i >= 0; i-- {
		b := int64(len(out[i].Text))
		if len(out)-i > s.opts.LogMaxLines || keptBytes+b > s.opts.LogMaxBytes {
			break
		}
		keepFrom, keptBytes = i, keptBytes+b
	}

	err := s.write(ctx, func(tx *sql.Tx) error {
		var id, next, first, bytes int64
		if err := s.queryRow(ctx, tx, sqlStreamOpen, name, dbInt(k.AppKey), k.Stage).
			Scan(&id, &next, &first, &bytes); err != nil {
			return fmt.Errorf("open stream: %w", err)
		}
		end := next + int64(len(out)) // next_seq after this batch
		if id > maxStreamID || end-1 > maxSeq {
			return errdefs.Conflict("log %s: stream %d or sequence number %d out of range", name, id, end-1)
		}
		for i := range out {
			out[i].Seq = uint64(next) + uint64(i)
		}

		var cut int64 // lines with seq < cut are deleted
		if keepFrom > 0 {
			// The batch alone fills the log: every older line goes.
			cut, bytes = next+int64(keepFrom), keptBytes
		} else {
			cut, bytes = first, bytes+keptBytes
			if end-first > int64(s.opts.LogMaxLines) {
				cut = end - int64(s.opts.LogMaxLines)
				var removed int64
				if err := s.queryRow(ctx, tx, sqlLinesSize, lineKey(id, first), lineKey(id, cut)).Scan(&removed); err != nil {
					return fmt.Errorf("size trimmed lines: %w", err)
				}
				bytes -= removed
			}
			if bytes > s.opts.LogMaxBytes {
				var err error
				if cut, bytes, err = s.cutForBytesTx(ctx, tx, id, cut, next, bytes); err != nil {
					return err
				}
			}
		}
		if cut > first {
			if _, err := s.exec(ctx, tx, sqlLinesDelete, lineKey(id, first), lineKey(id, cut)); err != nil {
				return fmt.Errorf("trim: %w", err)
			}
		}
		if err := s.insertLinesTx(ctx, tx, id, out[keepFrom:]); err != nil {
			return err
		}
		if _, err := s.exec(ctx, tx, sqlStreamUpdate, end, cut, bytes, id); err != nil {
			return fmt.Errorf("update stream: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("append %d lines to log %s: %w", len(out), name, err)
	}
	return out, nil
}

// cutForBytesTx walks the stored lines [from, below) of stream id oldest
// first and returns the first seq to keep so that bytes drops to
// LogMaxBytes, with the bytes that remain. The caller has checked that the
// lines at or above below fit on their own.
func (s *Store) cutForBytesTx(ctx context.Context, tx *sql.Tx, id, from, below, bytes int64) (int64, int64, error) {
	rows, err := s.query(ctx, tx, sqlLinesSizes, lineKey(id, from), lineKey(id, below))
	if err != nil {
		return 0, 0, fmt.Errorf("size old lines: %w", err)
	}
	defer rows.Close()
	cut := below
	for rows.Next() {
		var key, size int64
		if err := rows.Scan(&key, &size); err != nil {
			return 0, 0, fmt.Errorf("size old lines: %w", err)
		}
		if bytes <= s.opts.LogMaxBytes {
			cut = key & maxSeq
			break
		}
		bytes -= size
	}
	if err := rows.Err(); err != nil {
		return 0, 0, fmt.Errorf("size old lines: %w", err)
	}
	return cut, bytes, nil
}

func (s *Store) insertLinesTx(ctx context.Context, tx *sql.Tx, id int64, lines []LogLine) error {
	args := make([]any, 0, 5*insertChunk)
	for len(lines) > 0 {
		n := insertChunk
		for n > len(lines) {
			n /= 2
		}
		args = args[:0]
		for _, l := range lines[:n] {
			args = append(args, lineKey(id, int64(l.Seq)), len(l.Text), nanos(l.Time), l.Stream, l.Text)
		}
		if _, err := s.exec(ctx, tx, insertLinesSQL(n), args...); err != nil {
			return fmt.Errorf("insert lines: %w", err)
		}
		lines = lines[n:]
	}
	return nil
}

// stream is a log_streams row: its lines are seqs [first, next).
type stream struct{ id, first, next int64 }

func (st stream) empty() bool { return st.first >= st.next }

// streamTx finds the stream called name; ok is false if there is none.
func (s *Store) streamTx(ctx context.Context, tx *sql.Tx, name string) (st stream, ok bool, err error) {
	err = s.queryRow(ctx, tx, sqlStreamGet, name).Scan(&st.id, &st.first, &st.next)
	if errors.Is(err, sql.ErrNoRows) {
		return stream{}, false, nil
	}
	return st, err == nil, err
}

// QueryLogs returns the lines of the log called name that match q, from one
// snapshot. An unknown log is an empty result. Lines are matched newest
// first without a time index: a log holds at most LogMaxLines lines, and
// an index on time would cost every append.
func (s *Store) QueryLogs(ctx context.Context, name string, q LogQuery) (LogResult, error) {
	if name == "" {
		return LogResult{}, errdefs.InvalidArgument("log name is empty")
	}
	if q.Tail < 0 || q.Offset < 0 || q.MaxBytes < 0 {
		return LogResult{}, errdefs.InvalidArgument("log %s: tail, offset and max bytes must not be negative", name)
	}
	var res LogResult
	err := s.read(ctx, func(tx *sql.Tx) error {
		st, ok, err := s.streamTx(ctx, tx, name)
		if err != nil || !ok || st.empty() {
			return err
		}
		var oldest int64
		if err := s.queryRow(ctx, tx, sqlLineAt, lineKey(st.id, st.first)).Scan(&oldest); err != nil {
			return fmt.Errorf("oldest line: %w", err)
		}
		res.Oldest = fromNanos(oldest)

		args := []any{lineKey(st.id, st.first), lineKey(st.id, st.next)}
		since := !q.Since.IsZero() && q.Since.After(minTime)
		if since {
			if q.Since.After(maxTime) {
				return nil
			}
			args = append(args, nanos(q.Since))
		}
		until := !q.Until.IsZero() && !q.Until.After(maxTime)
		if until {
			if !q.Until.After(minTime) {
				return nil
			}
			args = append(args, nanos(q.Until))
		}
		limit := int64(-1) // SQLite: no limit
		if q.Tail > 0 {
			limit = int64(q.Tail)
		}
		args = append(args, limit, q.Offset)
		rows, err := s.query(ctx, tx, sqlQueryLines(since, until), args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		var total int64
		for rows.Next() {
			var (
				l       LogLine
				key, at int64
			)
			if err := rows.Scan(&key, &at, &l.Stream, &l.Text); err != nil {
				return err
			}
			if q.MaxBytes > 0 && total+int64(len(l.Text))+1 > q.MaxBytes {
				res.Truncated = true
				break
			}
			total += int64(len(l.Text)) + 1
			l.Seq, l.Time = uint64(key&maxSeq), fromNanos(at)
			res.Lines = append(res.Lines, l)
		}
		return rows.Err()
	})
	if err != nil {
		return LogResult{}, fmt.Errorf("query log %s: %w", name, err)
	}
	for i, j := 0, len(res.Lines)-1; i < j; i, j = i+1, j-1 {
		res.Lines[i], res.Lines[j] = res.Lines[j], res.Lines[i]
	}
	return res, nil
}

// LastLog returns the newest stored line of the log called name, and false
// if it has none.
func (s *Store) LastLog(ctx context.Context, name string) (LogLine, bool, error) {
	if name == "" {
		return LogLine{}, false, errdefs.InvalidArgument("log name is empty")
	}
	var (
		l     LogLine
		found bool
	)
	err := s.read(ctx, func(tx *sql.Tx) error {
		st, ok, err := s.streamTx(ctx, tx, name)
		if err != nil || !ok || st.empty() {
			return err
		}
		var at int64
		if err := s.queryRow(ctx, tx, sqlLineGet, lineKey(st.id, st.next-1)).Scan(&at, &l.Stream, &l.Text); err != nil {
			return err
		}
		l.Seq, l.Time, found = uint64(st.next-1), fromNanos(at), true
		return nil
	})
	if err != nil {
		return LogLine{}, false, fmt.Errorf("last line of log %s: %w", name, err)
	}
	return l, found, nil
}

// ClearLogs deletes every line of the log called name. Its sequence
// numbers go on where they were.
func (s *Store) ClearLogs(ctx context.Context, name string) error {
	if name == "" {
		return errdefs.InvalidArgument("log name is empty")
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		st, ok, err := s.streamTx(ctx, tx, name)
		if err != nil || !ok {
			return err
		}
		return s.clearStreamTx(ctx, tx, st)
	})
	if err != nil {
		return fmt.Errorf("clear log %s: %w", name, err)
	}
	return nil
}

// DeleteLogsOf deletes every line of every log of app k. Sequence numbers
// of its logs are kept, so they are not reused if the app comes back.
func (s *Store) DeleteLogsOf(ctx context.Context, k Key) error {
	if err := checkKey(k); err != nil {
		return err
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		rows, err := s.query(ctx, tx, sqlStreamsOfApp, dbInt(k.AppKey), k.Stage)
		if err != nil {
			return err
		}
		var sts []stream
		for rows.Next() {
			var st stream
			if err := rows.Scan(&st.id, &st.first, &st.next); err != nil {
				_ = rows.Close()
				return err
			}
			sts = append(sts, st)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if err := rows.Err(); err != nil {
			return err
		}
		for _, st := range sts {
			if err := s.clearStreamTx(ctx, tx, st); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete logs of %s: %w", app(k), err)
	}
	return nil
}

func (s *Store) clearStreamTx(ctx context.Context, tx *sql.Tx, st stream) error {
	if st.empty() {
		return nil
	}
	if _, err := s.exec(ctx, tx, sqlLinesDelete, lineKey(st.id, st.first), lineKey(st.id, st.next)); err != nil {
		return err
	}
	_, err := s.exec(ctx, tx, sqlStreamClear, st.id)
	return err
}
