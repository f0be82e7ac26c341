package logs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"reagent/src/errdefs"
)

// Bounds of query_device_logs (platform.md §5.2).
const (
	DefaultDeviceTail = 300
	maxDeviceLine     = 1 << 20 // longer lines are cut here
)

// backupTimeLayout is lumberjack's timestamp in backup names:
// <base>-2006-01-02T15-04-05.000<ext>.
const backupTimeLayout = "2006-01-02T15-04-05.000"

// DeviceQuery selects lines of the agent's own log. Zero values are the
// defaults.
type DeviceQuery struct {
	Tail         int       // newest matching lines; 0 → DefaultDeviceTail; at most MaxQueryLines
	Since, Until time.Time // zero = unbounded; Since inclusive, Until exclusive
	Level        string    // minimum level; unknown or empty → info
}

// DeviceResult is the answer to a DeviceQuery.
type DeviceResult struct {
	Lines        []string // "<RFC3339 UTC> <LEVEL> <message>[: <error>]", oldest first; never nil
	Truncated    bool     // MaxQueryBytes dropped the oldest lines
	FilesScanned int
	DeviceTime   time.Time
	Oldest       time.Time // the oldest line in the files; zero if unknown
}

// levelRank orders zerolog's levels; a line's level must rank at least the
// query's.
var levelRank = map[string]int{"trace": -1, "debug": 0, "info": 1, "warn": 2, "error": 3, "fatal": 4, "panic": 5}

// QueryDeviceLogs reads the agent's log file logFile and its rotated
// backups (oldest first, then the active file) and returns the newest
// lines that match q, rendered as text.
func QueryDeviceLogs(ctx context.Context, logFile string, q DeviceQuery) (DeviceResult, error) {
	if logFile == "" {
		return DeviceResult{}, errdefs.NotFound("no agent log path configured")
	}
	files, err := agentLogFiles(logFile)
	if err != nil {
		return DeviceResult{}, err
	}
	tail := q.Tail
	if tail <= 0 {
		tail = DefaultDeviceTail
	}
	tail = min(tail, MaxQueryLines)
	minRank, ok := levelRank[strings.ToLower(q.Level)]
	if !ok {
		minRank = levelRank["info"]
	}
	sc := &deviceScan{q: q, minRank: minRank, tail: tail, prevRank: levelRank["info"]}
	res := DeviceResult{Lines: []string{}}
	for _, f := range files {
		scanned, err := sc.file(ctx, f)
		if scanned {
			res.FilesScanned++
		}
		if err != nil {
			return DeviceResult{}, err
		}
	}
	res.Lines = sc.kept.lines()
	res.Truncated = len(res.Lines) < min(tail, sc.matches)
	res.Oldest = sc.oldest
	res.DeviceTime = time.Now().UTC()
	return res, nil
}

// agentLogFiles lists lumberjack's backups of logFile by name, which is by
// age, then logFile itself. Files merely named alike are left out.
func agentLogFiles(logFile string) ([]string, error) {
	dir, base := filepath.Split(logFile)
	if dir == "" {
		dir = "."
	}
	ext := filepath.Ext(base)
	prefix := strings.TrimSuffix(base, ext) + "-"
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("list agent logs in %s: %w", dir, err)
	}
	var out []string
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || !strings.HasPrefix(n, prefix) || !strings.HasSuffix(n, ext) || len(n) < len(prefix)+len(ext) {
			continue
		}
		if _, err := time.Parse(backupTimeLayout, n[len(prefix):len(n)-len(ext)]); err != nil {
			continue
		}
		out = append(out, filepath.Join(dir, n))
	}
	sort.Strings(out)
	return append(out, logFile), nil
}

// deviceScan is one query's pass over the files.
type deviceScan struct {
	q        DeviceQuery
	minRank  int
	tail     int
	kept     lineRing
	matches  int       // lines that matched, kept or not
	oldest   time.Time // first time seen
	prevTime time.Time // of the last JSON line: non-JSON lines inherit it
	prevRank int
}

// file scans one file; scanned is false when it does not exist.
func (sc *deviceScan) file(ctx context.Context, path string) (scanned bool, err error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read agent log %s: %w", path, err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	var long []byte
	for n := 0; ; n++ {
		if n%4096 == 0 && ctx.Err() != nil {
			return true, ctx.Err()
		}
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the buffer: gather it, up to the limit.
			if len(long) < maxDeviceLine {
				long = append(long, line[:min(len(line), maxDeviceLine-len(long))]...)
			}
			continue
		}
		if long != nil {
			if len(long) < maxDeviceLine {
				long = append(long, line[:min(len(line), maxDeviceLine-len(long))]...)
			}
			line, long = long, nil
		}
		if len(line) > 0 {
			sc.line(bytes.TrimRight(line, "\r\n"))
		}
		if err == io.EOF {
			return true, nil
		}
		if err != nil {
			return true, fmt.Errorf("read agent log %s: %w", path, err)
		}
	}
}

// agentLine is the part of a zerolog JSON line that is rendered.
type agentLine struct {
	Level   string          `json:"level"`
	Time    json.RawMessage `json:"time"`
	Message string          `json:"message"`
	Error   json.RawMessage `json:"error"`
}

func (sc *deviceScan) line(raw []byte) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return
	}
	var text string
	var al agentLine
	if raw[0] == '{' && json.Unmarshal(raw, &al) == nil {
		if t, ok := parseLogTime(al.Time); ok {
			sc.prevTime = t
		}
		rank, known := levelRank[al.Level]
		if !known {
			rank = levelRank["info"]
		}
		sc.prevRank = rank
		level := strings.ToUpper(al.Level)
		if level == "" {
			level = "???"
		}
		text = formatTime(sc.prevTime) + " " + level + " " + al.Message
		if e := errorText(al.Error); e != "" {
			text += ": " + e
		}
	} else {
		text = string(raw) // a panic trace and the like: kept as is
	}
	if sc.oldest.IsZero() && !sc.prevTime.IsZero() {
		sc.oldest = sc.prevTime
	}
	if sc.prevRank < sc.minRank {
		return
	}
	if !sc.q.Since.IsZero() && (sc.prevTime.IsZero() || sc.prevTime.Before(sc.q.Since)) {
		return
	}
	if !sc.q.Until.IsZero() && !sc.prevTime.IsZero() && !sc.prevTime.Before(sc.q.Until) {
		return
	}
	sc.matches++
	sc.kept.push(text, sc.tail, MaxQueryBytes)
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// parseLogTime reads zerolog's time field: RFC3339 text (the default) or
// Unix seconds, milliseconds or microseconds as a number.
func parseLogTime(raw json.RawMessage) (time.Time, bool) {
	if len(raw) == 0 {
		return time.Time{}, false
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		t, err := time.Parse(time.RFC3339Nano, s)
		return t, err == nil
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
		return time.Time{}, false
	}
	switch {
	case f > 1e15: // microseconds
		return time.UnixMicro(int64(f)), true
	case f > 1e12: // milliseconds
		return time.UnixMilli(int64(f)), true
	default:
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(frac*1e9)), true
	}
}

// errorText renders the error field: a string as is, anything else as
// its JSON.
func errorText(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return string(raw)
}

// lineRing keeps the newest lines within a count and a byte bound (each
// line counted with one byte for its separator). Dropped lines are
// released; the backing array is compacted once half of it is dead.
type lineRing struct {
	buf   []string
	start int // index of the oldest kept line
	bytes int
}

func (r *lineRing) push(s string, maxLines, maxBytes int) {
	r.buf = append(r.buf, s)
	r.bytes += len(s) + 1
	for r.start < len(r.buf) && (len(r.buf)-r.start > maxLines || r.bytes > maxBytes) {
		r.bytes -= len(r.buf[r.start]) + 1
		r.buf[r.start] = ""
		r.start++
	}
	if r.start > 1024 && 2*r.start > len(r.buf) {
		n := copy(r.buf, r.buf[r.start:])
		clear(r.buf[n:])
		r.buf, r.start = r.buf[:n], 0
	}
}

// lines returns the kept lines, oldest first.
func (r *lineRing) lines() []string {
	return append([]string{}, r.buf[r.start:]...)
}
