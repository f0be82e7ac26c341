package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"reagent/src/errdefs"
)

// Key names one app: the backend's app key and the stage. The app's name is
// not part of it because it can change.
type Key struct {
	AppKey uint64
	Stage  string // "DEV" or "PROD"
}

// appStates are the app state names of the reference agent (STOPPED
// included, which its database refused).
var appStates = map[string]bool{
	"REMOVED": true, "UNINSTALLED": true, "PRESENT": true, "BUILDING": true, "BUILT": true,
	"PUBLISHING": true, "PUBLISHED": true, "DOWNLOADING": true, "TRANSFERING": true, "TRANSFERED": true,
	"STARTING": true, "RUNNING": true, "STOPPING": true, "STOPPED": true, "UPDATING": true,
	"DELETING": true, "FAILED": true,
}

var updateStatuses = map[string]bool{"": true, "pending_remote_confirmation": true, "completed": true, "canceled": true}

var logStreams = map[string]bool{"stdout": true, "stderr": true, "agent": true}

// app formats a key for messages. Key deliberately has no String method:
// it is embedded in Requested, Actual, …, which would all print as the key.
func app(k Key) string { return fmt.Sprintf("app %d/%s", k.AppKey, k.Stage) }

func checkKey(k Key) error {
	if k.Stage != "DEV" && k.Stage != "PROD" {
		return errdefs.InvalidArgument("%s: stage must be DEV or PROD", app(k))
	}
	if k.AppKey == 0 {
		return errdefs.InvalidArgument("%s: app key must not be 0", app(k))
	}
	return nil
}

func checkState(k Key, field, s string) error {
	if !appStates[s] {
		return errdefs.InvalidArgument("%s: %s %q is not an app state", app(k), field, s)
	}
	return nil
}

// jsonKind says what a JSON column must hold.
type jsonKind byte

const (
	jsonObject jsonKind = '{'
	jsonArray  jsonKind = '['
)

// jsonColumn checks raw and returns what to store: NULL for nil, empty or
// JSON null, the text otherwise.
func jsonColumn(k Key, field string, raw json.RawMessage, kind jsonKind) (any, error) {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || bytes.Equal(t, []byte("null")) {
		return nil, nil
	}
	if !json.Valid(t) {
		return nil, errdefs.InvalidArgument("%s: %s is not valid JSON", app(k), field)
	}
	if t[0] != byte(kind) {
		what := "an object"
		if kind == jsonArray {
			what = "an array"
		}
		return nil, errdefs.InvalidArgument("%s: %s must be %s", app(k), field, what)
	}
	return string(t), nil
}

// rawJSON turns a scanned JSON column back into a RawMessage (nil for NULL).
func rawJSON(b []byte) json.RawMessage {
	if b == nil {
		return nil
	}
	return json.RawMessage(b)
}

// minTime and maxTime bound what Unix nanoseconds in an int64 can hold.
var (
	minTime = time.Unix(0, -1<<63)
	maxTime = time.Unix(0, 1<<63-1)
)

func inNanoRange(t time.Time) bool { return !t.Before(minTime) && !t.After(maxTime) }

func nanos(t time.Time) int64 { return t.UnixNano() }

func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }

// dbInt stores a uint64 in SQLite's signed INTEGER, bit for bit; fromDB
// restores it.
func dbInt(u uint64) int64 { return int64(u) }

func fromDB(i int64) uint64 { return uint64(i) }

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
