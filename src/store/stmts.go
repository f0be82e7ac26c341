package store

import (
	"context"
	"database/sql"
	"fmt"
)

// statements lists every statement the store runs. Open prepares them all
// once: parsing SQL is a large part of a small transaction's cost in the
// pure-Go SQLite, and database/sql then keeps each one prepared on every
// connection that ran it. They are prepared up front, not on first use,
// because preparing takes a pool connection, which a caller inside a
// transaction must not wait for.
func statements() []string {
	qs := []string{
		sqlRequestedUpsert, sqlRequestedGet, sqlRequestedList, sqlRequestedDelete, sqlGenerationNext,
		sqlActualGet, sqlActualGetSeq, sqlActualList, sqlActualUpsert, sqlActualDelete,
		sqlHistoryInsert, sqlHistoryTrim, sqlHistoryList,
		sqlHostPortList, sqlHostPortOwner, sqlHostPortUnreserve, sqlHostPortInsert, sqlHostPortRelease,
		sqlStreamOpen, sqlStreamUpdate, sqlStreamGet, sqlStreamsOfApp, sqlStreamClear,
		sqlLinesSize, sqlLinesSizes, sqlLinesDelete, sqlLineAt, sqlLineGet,
		sqlOutboxInsert, sqlOutboxLength, sqlOutboxDropped, sqlOutboxDrop, sqlOutboxCount,
		sqlOutboxPeek, sqlOutboxAck, sqlOutboxAttempt,
		sqlMetaGet, sqlMetaSet,
	}
	for _, since := range []bool{false, true} {
		for _, until := range []bool{false, true} {
			qs = append(qs, sqlQueryLines(since, until))
		}
	}
	for n := insertChunk; n >= 1; n /= 2 {
		qs = append(qs, insertLinesSQL(n))
	}
	return qs
}

// prepareAll fills s.stmts; after it the map is only read.
func (s *Store) prepareAll(ctx context.Context) error {
	s.stmts = map[string]*sql.Stmt{}
	for _, q := range statements() {
		st, err := s.db.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("prepare %q: %w", q, classify(err))
		}
		s.stmts[q] = st
	}
	return nil
}

func (s *Store) closeStmts() {
	for _, st := range s.stmts {
		_ = st.Close()
	}
}

// The helpers below run a prepared statement, inside tx when tx is not nil.

func (s *Store) stmt(query string) *sql.Stmt {
	st, ok := s.stmts[query]
	if !ok {
		s.unprepared.Add(1)
	}
	return st
}

func (s *Store) exec(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	st := s.stmt(query)
	switch {
	case st == nil && tx != nil:
		return tx.ExecContext(ctx, query, args...)
	case st == nil:
		return s.db.ExecContext(ctx, query, args...)
	case tx != nil:
		return tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return st.ExecContext(ctx, args...)
}

func (s *Store) queryRow(ctx context.Context, tx *sql.Tx, query string, args ...any) *sql.Row {
	st := s.stmt(query)
	switch {
	case st == nil && tx != nil:
		return tx.QueryRowContext(ctx, query, args...)
	case st == nil:
		return s.db.QueryRowContext(ctx, query, args...)
	case tx != nil:
		return tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

func (s *Store) query(ctx context.Context, tx *sql.Tx, query string, args ...any) (*sql.Rows, error) {
	st := s.stmt(query)
	switch {
	case st == nil && tx != nil:
		return tx.QueryContext(ctx, query, args...)
	case st == nil:
		return s.db.QueryContext(ctx, query, args...)
	case tx != nil:
		return tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	}
	return st.QueryContext(ctx, args...)
}
