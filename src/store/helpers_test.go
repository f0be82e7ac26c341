package store

import (
	"context"
	"database/sql"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 5, 4, 12, 0, 0, 123456789, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// openAt opens a store at path and closes it when the test ends, checking
// that every statement it ran was prepared and that it closes cleanly (a
// test may have closed it already: Close is idempotent).
func openAt(t testing.TB, path string, opts Options) *Store {
	t.Helper()
	s, err := Open(context.Background(), path, opts)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	t.Cleanup(func() {
		if n := s.unprepared.Load(); n != 0 {
			t.Errorf("%d statements ran without being prepared: add them to statements()", n)
		}
		if err := s.Close(); err != nil {
			t.Errorf("close %s: %v", path, err)
		}
	})
	return s
}

// openOpts opens a store with opts in a fresh directory.
func openOpts(t testing.TB, opts Options) *Store {
	t.Helper()
	return openAt(t, filepath.Join(t.TempDir(), "state.db"), opts)
}

// openTest opens a store with default options in a fresh directory. (Other
// packages use storetest.Open, which imports this package.)
func openTest(t testing.TB) *Store {
	t.Helper()
	return openOpts(t, Options{})
}

// rawDB opens path with the store's DSN but without migrating it.
func rawDB(t testing.TB, path string) *sql.DB {
	t.Helper()
	if err := prepareFile(path); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", dsn(path, defaultBusyTimeout))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// integrityCheck fails the test unless PRAGMA integrity_check says ok.
func integrityCheck(t testing.TB, db *sql.DB) {
	t.Helper()
	rows, err := db.Query(`PRAGMA integrity_check`)
	if err != nil {
		t.Fatalf("integrity_check: %v", err)
	}
	defer rows.Close()
	var msgs []string
	for rows.Next() {
		var m string
		if err := rows.Scan(&m); err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || msgs[0] != "ok" {
		t.Fatalf("integrity_check: %v", msgs)
	}
}

func ctxT(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
