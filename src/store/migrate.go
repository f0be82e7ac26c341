package store

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"reagent/src/errdefs"
)

// migrationFiles are the schema steps: migrations/NNNN_name.sql, numbered
// from 1 without gaps. A released file is never edited; a change is a new
// file. The number reached is kept in PRAGMA user_version.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations reads and checks the numbered files of fsys.
func loadMigrations(fsys fs.FS) ([]migration, error) {
	names, err := fs.Glob(fsys, "migrations/*.sql")
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	var ms []migration
	for _, n := range names {
		base := path.Base(n)
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name must be NNNN_name.sql", base)
		}
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", base, err)
		}
		ms = append(ms, migration{version: v, name: base, sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %s: expected version %d (numbers start at 1 without gaps)", m.name, i+1)
		}
	}
	return ms, nil
}

// migrate applies ms up to version target, each in its own transaction
// together with its user_version, so a failed step leaves the database at the
// previous version. The version is read again inside each write transaction:
// two processes opening a fresh database at once apply every step once. It
// returns the versions it applied.
func migrate(ctx context.Context, db *sql.DB, ms []migration, target int) ([]int, error) {
	latest := len(ms)
	cur, err := userVersion(ctx, db)
	if err != nil {
		return nil, err
	}
	if cur > latest {
		return nil, errdefs.Conflict("database schema version %d is newer than version %d, the newest this agent knows; "+
			"it was written by a newer reagent: run that version or remove the database", cur, latest)
	}
	var applied []int
	for cur < target {
		next := ms[cur]
		done, err := applyMigration(ctx, db, next)
		if err != nil {
			return applied, err
		}
		if done {
			applied = append(applied, next.version)
		}
		if cur, err = userVersion(ctx, db); err != nil {
			return applied, err
		}
		if cur > latest {
			return applied, errdefs.Conflict("database schema version %d is newer than version %d, the newest this agent knows", cur, latest)
		}
	}
	return applied, nil
}

// applyMigration applies m unless another process already did; it reports
// whether it applied it.
func applyMigration(ctx context.Context, db *sql.DB, m migration) (bool, error) {
	tx, err := db.BeginTx(ctx, nil) // BEGIN IMMEDIATE (DSN): holds the write lock from here
	if err != nil {
		return false, fmt.Errorf("migration %s: begin: %w", m.name, classify(err))
	}
	defer func() { _ = tx.Rollback() }()
	var cur int
	if err := tx.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&cur); err != nil {
		return false, fmt.Errorf("migration %s: read schema version: %w", m.name, classify(err))
	}
	if cur >= m.version {
		return false, nil
	}
	if cur != m.version-1 {
		return false, fmt.Errorf("migration %s: database is at version %d", m.name, cur)
	}
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return false, fmt.Errorf("migration %s: %w", m.name, classify(err))
	}
	// PRAGMA takes no bound parameters; the version is an integer we made.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", m.version)); err != nil {
		return false, fmt.Errorf("migration %s: set schema version: %w", m.name, classify(err))
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("migration %s: commit: %w", m.name, classify(err))
	}
	return true, nil
}

func userVersion(ctx context.Context, db *sql.DB) (int, error) {
	var v int
	if err := db.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", classify(err))
	}
	return v, nil
}

// migrateTo brings db to version (tests build databases at every earlier
// version with it).
func migrateTo(ctx context.Context, db *sql.DB, version int) error {
	ms, err := loadMigrations(migrationFiles)
	if err != nil {
		return err
	}
	if version < 0 || version > len(ms) {
		return fmt.Errorf("no schema version %d (latest is %d)", version, len(ms))
	}
	_, err = migrate(ctx, db, ms, version)
	return err
}
