package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"reagent/src/errdefs"
)

// Actual is what the agent last observed or achieved for an app.
type Actual struct {
	Key
	AppName      string
	State        string // app state name
	Version      string
	ReleaseKey   uint64
	UpdateStatus string // "", "pending_remote_confirmation", "completed", "canceled"
	LastError    string
	UpdatedAt    time.Time // set by the store when the row changes
}

// Transition is one change of an app's state, version or release.
type Transition struct {
	Key
	From, To, Version string // From is "" for the first state the store saw
	ReleaseKey        uint64
	Reason            string // the LastError that came with the new state, if any
	At                time.Time
}

const (
	actualColumns = `app_key, stage, app_name, state, version, release_key, update_status, last_error, updated_at`

	sqlActualGet = `SELECT ` + actualColumns + ` FROM actual WHERE app_key = ? AND stage = ?`
	// history_seq is the seq of the app's newest transition: reading it
	// with the row it belongs to spares a MAX(seq) query, which the driver's
	// SQLite re-plans on every call.
	sqlActualGetSeq = `SELECT ` + actualColumns + `, history_seq FROM actual WHERE app_key = ? AND stage = ?`
	sqlActualList   = `SELECT ` + actualColumns + ` FROM actual ORDER BY app_key, stage`
	sqlActualDelete = `DELETE FROM actual WHERE app_key = ? AND stage = ?`
	sqlActualUpsert = `
		INSERT INTO actual (` + actualColumns + `, history_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (app_key, stage) DO UPDATE SET
			app_name = excluded.app_name, state = excluded.state, version = excluded.version,
			release_key = excluded.release_key, update_status = excluded.update_status,
			last_error = excluded.last_error, updated_at = excluded.updated_at, history_seq = excluded.history_seq`
	// OR REPLACE: should history_seq ever lag behind the table (a hand-edited
	// database), the newest transition still gets recorded.
	sqlHistoryInsert = `
		INSERT OR REPLACE INTO history (app_key, stage, seq, from_state, to_state, version, release_key, reason, at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`
	sqlHistoryTrim = `DELETE FROM history WHERE app_key = ? AND stage = ? AND seq <= ?`
	sqlHistoryList = `
		SELECT from_state, to_state, version, release_key, reason, at FROM history
		WHERE app_key = ? AND stage = ? ORDER BY seq DESC LIMIT ?`
)

// PutActual stores a as the observed state of its app. When the state,
// version or release key changed it also appends a Transition to the app's
// history, in the same transaction, and trims the history to HistoryMax.
// Storing what is already stored writes nothing and returns false.
func (s *Store) PutActual(ctx context.Context, a Actual) (changed bool, err error) {
	if err := checkKey(a.Key); err != nil {
		return false, err
	}
	if a.AppName == "" {
		return false, errdefs.InvalidArgument("%s: app name is empty", app(a.Key))
	}
	if err := checkState(a.Key, "state", a.State); err != nil {
		return false, err
	}
	if !updateStatuses[a.UpdateStatus] {
		return false, errdefs.InvalidArgument("%s: unknown update status %q", app(a.Key), a.UpdateStatus)
	}
	now := nanos(s.opts.Now())
	err = s.write(ctx, func(tx *sql.Tx) error {
		var seq int64
		prev, err := scanActual(s.queryRow(ctx, tx, sqlActualGetSeq, dbInt(a.AppKey), a.Stage), &seq)
		found := err == nil
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("read previous state: %w", err)
		}
		if found && prev.AppName == a.AppName && prev.State == a.State && prev.Version == a.Version &&
			prev.ReleaseKey == a.ReleaseKey && prev.UpdateStatus == a.UpdateStatus && prev.LastError == a.LastError {
			return nil
		}
		changed = true
		transition := !found || prev.State != a.State || prev.Version != a.Version || prev.ReleaseKey != a.ReleaseKey
		if transition {
			seq++
		}
		if _, err := s.exec(ctx, tx, sqlActualUpsert, dbInt(a.AppKey), a.Stage, a.AppName, a.State, a.Version,
			dbInt(a.ReleaseKey), a.UpdateStatus, a.LastError, now, seq); err != nil {
			return fmt.Errorf("upsert: %w", err)
		}
		if !transition {
			return nil
		}
		return s.appendHistoryTx(ctx, tx, seq, Transition{
			Key: a.Key, From: prev.State, To: a.State, Version: a.Version,
			ReleaseKey: a.ReleaseKey, Reason: a.LastError,
		}, now)
	})
	if err != nil {
		return false, fmt.Errorf("put actual state of %s: %w", app(a.Key), err)
	}
	return changed, nil
}

// appendHistoryTx inserts t as the app's transition number seq and deletes
// the app's transitions older than the newest HistoryMax. An app's seqs are
// consecutive, so that is one range.
func (s *Store) appendHistoryTx(ctx context.Context, tx *sql.Tx, seq int64, t Transition, at int64) error {
	k := dbInt(t.AppKey)
	if _, err := s.exec(ctx, tx, sqlHistoryInsert, k, t.Stage, seq, t.From, t.To, t.Version, dbInt(t.ReleaseKey),
		t.Reason, at); err != nil {
		return fmt.Errorf("append history: %w", err)
	}
	if old := seq - int64(s.opts.HistoryMax); old > 0 {
		if _, err := s.exec(ctx, tx, sqlHistoryTrim, k, t.Stage, old); err != nil {
			return fmt.Errorf("trim history: %w", err)
		}
	}
	return nil
}

// GetActual returns the observed state of k; ErrNotFound if none is stored.
func (s *Store) GetActual(ctx context.Context, k Key) (Actual, error) {
	if err := checkKey(k); err != nil {
		return Actual{}, err
	}
	a, err := scanActual(s.queryRow(ctx, nil, sqlActualGet, dbInt(k.AppKey), k.Stage))
	if errors.Is(err, sql.ErrNoRows) {
		return Actual{}, errdefs.NotFound("no actual state for %s", app(k))
	}
	if err != nil {
		return Actual{}, fmt.Errorf("get actual state of %s: %w", app(k), classify(err))
	}
	return a, nil
}

// ListActual returns every stored observed state, ordered by key.
func (s *Store) ListActual(ctx context.Context) ([]Actual, error) {
	rows, err := s.query(ctx, nil, sqlActualList)
	if err != nil {
		return nil, fmt.Errorf("list actual states: %w", classify(err))
	}
	defer rows.Close()
	var out []Actual
	for rows.Next() {
		a, err := scanActual(rows)
		if err != nil {
			return nil, fmt.Errorf("list actual states: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list actual states: %w", classify(err))
	}
	return out, nil
}

// DeleteActual forgets the observed state of k and its history (a foreign
// key cascade), so a forgotten app leaves no rows behind; deleting a missing
// one is not an error.
func (s *Store) DeleteActual(ctx context.Context, k Key) error {
	if err := checkKey(k); err != nil {
		return err
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, sqlActualDelete, dbInt(k.AppKey), k.Stage)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete actual state of %s: %w", app(k), err)
	}
	return nil
}

// History returns the newest limit transitions of k (all kept ones if
// limit <= 0), newest last.
func (s *Store) History(ctx context.Context, k Key, limit int) ([]Transition, error) {
	if err := checkKey(k); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	rows, err := s.query(ctx, nil, sqlHistoryList, dbInt(k.AppKey), k.Stage, limit)
	if err != nil {
		return nil, fmt.Errorf("history of %s: %w", app(k), classify(err))
	}
	defer rows.Close()
	var out []Transition
	for rows.Next() {
		t := Transition{Key: k}
		var rel, at int64
		if err := rows.Scan(&t.From, &t.To, &t.Version, &rel, &t.Reason, &at); err != nil {
			return nil, fmt.Errorf("history of %s: %w", app(k), err)
		}
		t.ReleaseKey, t.At = fromDB(rel), fromNanos(at)
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("history of %s: %w", app(k), classify(err))
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

// scanActual reads the actualColumns, and any columns after them into
// extra.
func scanActual(sc scanner, extra ...any) (Actual, error) {
	var (
		a            Actual
		key, rel, at int64
	)
	dest := append([]any{&key, &a.Stage, &a.AppName, &a.State, &a.Version, &rel, &a.UpdateStatus, &a.LastError, &at}, extra...)
	if err := sc.Scan(dest...); err != nil {
		return Actual{}, err
	}
	a.AppKey, a.ReleaseKey, a.UpdatedAt = fromDB(key), fromDB(rel), fromNanos(at)
	return a, nil
}
