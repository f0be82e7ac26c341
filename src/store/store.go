// Package store is reagent's durable state: the requested and actual state of
// every app, the app state history, host-port reservations, app log lines,
// the outbox of reports to the cloud and a few agent facts. It owns the SQLite
// file (modernc.org/sqlite, WAL) and is the only package that speaks SQL.
//
// The store keeps the durable copy; apps.Manager and its workers own the live
// app state, logs owns log relaying. Every method takes a context, validates
// its input (errdefs.ErrInvalidArgument) and runs in one transaction.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"reagent/src/errdefs"
)

// Options bound what the store keeps. Zero values take the defaults.
type Options struct {
	LogMaxLines int           // per log stream; 0 → 20000
	LogMaxBytes int64         // per log stream, sum of len(Text); 0 → 8 MiB
	HistoryMax  int           // per app; 0 → 200
	OutboxMax   int           // 0 → 100000; beyond it the oldest entries are dropped and counted (OutboxDropped)
	BusyTimeout time.Duration // how long to wait for another process's write lock; 0 → 5s

	Logger zerolog.Logger   // zero value logs nothing
	Now    func() time.Time // nil → time.Now; tests inject a clock
}

const (
	defaultLogMaxLines = 20000
	defaultLogMaxBytes = 8 << 20
	defaultHistoryMax  = 200
	defaultOutboxMax   = 100000
	defaultBusyTimeout = 5 * time.Second

	// maxConns: one writer at a time (writeSem) plus readers, which WAL lets
	// run next to the writer.
	maxConns = 4

	// walSizeLimit caps the WAL file left behind after a checkpoint, so a
	// burst of log lines does not keep its size on the device's disk.
	walSizeLimit = 4 << 20

	// cacheKiB is each connection's page cache. SQLite's default (2 MiB)
	// times maxConns would be half the agent's idle memory budget; the
	// database is a few MiB and the OS caches the file anyway.
	cacheKiB = 1024
)

// Store is an open state database. It is safe for concurrent use.
type Store struct {
	db   *sql.DB
	path string
	opts Options
	log  zerolog.Logger

	// writeSem (capacity 1) lets one write transaction of this process run at
	// a time: writers queue here, honouring their context, instead of polling
	// SQLite's busy handler against each other. The busy timeout is left for
	// other processes.
	writeSem chan struct{}

	// stmts holds every statement of statements(), prepared by Open;
	// read-only afterwards.
	stmts map[string]*sql.Stmt
	// unprepared counts statements run without a prepared form: none should
	// be (a test checks), but a missing one costs speed, not correctness.
	unprepared atomic.Uint64

	// dropped mirrors outbox_counts.dropped, updated after each commit.
	dropped atomic.Uint64
}

// Open opens (creating if needed) the database at path and brings its schema
// to the current version. The directory is created 0700 and the file 0600:
// it holds registry credentials. A database written by a newer agent is
// refused.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	opts = withDefaults(opts)
	if path == "" || strings.ContainsAny(path, "?#") {
		// The driver cuts a plain path at '?'; such a name would silently
		// open another file.
		return nil, errdefs.InvalidArgument("database path %q: must be non-empty and contain no '?' or '#'", path)
	}
	path = filepath.Clean(path)
	if err := prepareFile(path); err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", dsn(path, opts.BusyTimeout))
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)

	s := &Store{
		db:       db,
		path:     path,
		opts:     opts,
		log:      opts.Logger.With().Str("component", "store").Logger(),
		writeSem: make(chan struct{}, 1),
	}
	if err := s.init(ctx); err != nil {
		s.closeStmts()
		_ = db.Close()
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	return s, nil
}

func (s *Store) init(ctx context.Context) error {
	if err := s.connect(ctx); err != nil {
		return err
	}
	ms, err := loadMigrations(migrationFiles)
	if err != nil {
		return err
	}
	applied, err := migrate(ctx, s.db, ms, len(ms))
	if err != nil {
		return err
	}
	for _, v := range applied {
		s.log.Info().Int("version", v).Msg("schema migrated")
	}
	if err := s.prepareAll(ctx); err != nil {
		return err
	}
	var dropped int64
	if err := s.queryRow(ctx, nil, sqlOutboxDropped).Scan(&dropped); err != nil {
		return fmt.Errorf("read outbox counters: %w", classify(err))
	}
	s.dropped.Store(uint64(dropped))
	return nil
}

// connect makes the first connection, which applies the DSN pragmas. The
// first connection to a new file switches it to WAL, and SQLite reports
// SQLITE_BUSY there at once instead of calling the busy handler, so a
// second process opening the same new file at that moment retries here,
// within the busy timeout. Once the file is in WAL mode the pragma is a
// no-op.
func (s *Store) connect(ctx context.Context) error {
	deadline := time.Now().Add(s.opts.BusyTimeout)
	delay := time.Millisecond
	for {
		err := s.db.PingContext(ctx)
		if err == nil {
			return nil
		}
		if !isBusy(err) || time.Now().After(deadline) {
			return fmt.Errorf("connect: %w", classify(err))
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		delay = min(2*delay, 50*time.Millisecond)
	}
}

// Close closes the database; the last connection checkpoints the WAL.
func (s *Store) Close() error {
	s.closeStmts()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close database %s: %w", s.path, err)
	}
	return nil
}

func withDefaults(o Options) Options {
	if o.LogMaxLines <= 0 {
		o.LogMaxLines = defaultLogMaxLines
	}
	if o.LogMaxBytes <= 0 {
		o.LogMaxBytes = defaultLogMaxBytes
	}
	if o.HistoryMax <= 0 {
		o.HistoryMax = defaultHistoryMax
	}
	if o.OutboxMax <= 0 {
		o.OutboxMax = defaultOutboxMax
	}
	if o.BusyTimeout <= 0 {
		o.BusyTimeout = defaultBusyTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// dsn spells the connection settings the way modernc.org/sqlite applies them
// on every new connection: _pragma=name(value) (the reference's mattn-style
// _journal_mode/_busy_timeout were silently ignored). _txlock=immediate makes
// write transactions take the write lock at BEGIN, where a lock held by
// another process is waited for under busy_timeout; a deferred transaction
// that upgrades later fails at once with SQLITE_BUSY instead. Read-only
// transactions stay deferred.
func dsn(path string, busy time.Duration) string {
	ms := busy.Milliseconds()
	if ms < 1 {
		ms = 1
	}
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", ms))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", fmt.Sprintf("journal_size_limit(%d)", walSizeLimit))
	q.Add("_pragma", fmt.Sprintf("cache_size(-%d)", cacheKiB))
	q.Set("_txlock", "immediate")
	return path + "?" + q.Encode()
}

// prepareFile creates the directory (0700) and the file (0600) before SQLite
// does: SQLite would create the file 0644, and gives its -wal and -shm files
// the mode of the database file, so the first creation decides them all. An
// existing file with wider permissions is narrowed.
func prepareFile(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create database directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("create database file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("create database file: %w", err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("stat %s: %w", p, err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			if err := os.Chmod(p, 0o600); err != nil {
				return fmt.Errorf("restrict permissions of %s: %w", p, err)
			}
		}
	}
	return nil
}

// write runs fn in one write transaction, committed if fn returns nil.
func (s *Store) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	select {
	case s.writeSem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.writeSem }()

	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return classify(err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return classify(err)
	}
	if err := tx.Commit(); err != nil {
		return classify(err)
	}
	return nil
}

// read runs fn in one read-only transaction, so that its queries see one
// snapshot.
func (s *Store) read(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return classify(err)
	}
	defer func() { _ = tx.Rollback() }()
	if err := fn(tx); err != nil {
		return classify(err)
	}
	return nil
}

func isBusy(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	c := se.Code() & 0xff
	return c == sqlite3.SQLITE_BUSY || c == sqlite3.SQLITE_LOCKED
}

// classify gives SQLite's transient failures the class ErrUnavailable: the
// database is locked by another process beyond the busy timeout, or the disk
// is full. Other errors pass unchanged.
func classify(err error) error {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return err
	}
	switch {
	case isBusy(err):
		return errdefs.Unavailable("database is locked by another process: %v", err)
	case se.Code()&0xff == sqlite3.SQLITE_FULL:
		return errdefs.Unavailable("disk full: %v", err)
	}
	return err
}
