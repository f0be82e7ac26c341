package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"reagent/src/errdefs"
)

// Outgoing is a report to the cloud that has not been acknowledged yet.
type Outgoing struct {
	ID        uint64 // increasing in enqueue order, never reused
	Procedure string
	Payload   json.RawMessage // nil if enqueued without one
	CreatedAt time.Time
	Attempts  int
}

const (
	sqlOutboxInsert  = `INSERT INTO outbox (procedure, payload, created_at) VALUES (?, ?, ?) RETURNING id`
	sqlOutboxLength  = `SELECT length FROM outbox_counts WHERE id = 1`
	sqlOutboxDropped = `SELECT dropped FROM outbox_counts WHERE id = 1`
	sqlOutboxDrop    = `DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)`
	sqlOutboxCount   = `UPDATE outbox_counts SET dropped = dropped + ? WHERE id = 1 RETURNING dropped`
	sqlOutboxPeek    = `SELECT id, procedure, payload, created_at, attempts FROM outbox ORDER BY id LIMIT ?`
	sqlOutboxAck     = `DELETE FROM outbox WHERE id = ?`
	sqlOutboxAttempt = `UPDATE outbox SET attempts = attempts + 1 WHERE id = ? RETURNING attempts`
)

// Enqueue appends a report for procedure to the outbox and returns its ID.
// When the outbox holds more than OutboxMax reports, the oldest are dropped
// in the same transaction and counted in OutboxDropped.
func (s *Store) Enqueue(ctx context.Context, procedure string, payload json.RawMessage) (uint64, error) {
	if procedure == "" {
		return 0, errdefs.InvalidArgument("outbox: procedure is empty")
	}
	var p any
	if len(payload) > 0 {
		if !json.Valid(payload) {
			return 0, errdefs.InvalidArgument("outbox: payload for %s is not valid JSON", procedure)
		}
		p = string(payload)
	}
	var (
		id      int64
		dropped int64
	)
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := s.queryRow(ctx, tx, sqlOutboxInsert, procedure, p, nanos(s.opts.Now())).Scan(&id); err != nil {
			return err
		}
		var length int64
		if err := s.queryRow(ctx, tx, sqlOutboxLength).Scan(&length); err != nil {
			return err
		}
		over := length - int64(s.opts.OutboxMax)
		if over <= 0 {
			return nil
		}
		if _, err := s.exec(ctx, tx, sqlOutboxDrop, over); err != nil {
			return err
		}
		return s.queryRow(ctx, tx, sqlOutboxCount, over).Scan(&dropped)
	})
	if err != nil {
		return 0, fmt.Errorf("enqueue %s: %w", procedure, err)
	}
	if dropped > 0 {
		s.dropped.Store(uint64(dropped))
		s.log.Warn().Uint64("dropped_total", uint64(dropped)).Int("max", s.opts.OutboxMax).
			Msg("outbox full, oldest reports dropped")
	}
	return uint64(id), nil
}

// PeekOutbox returns up to limit reports, oldest first, without removing
// them.
func (s *Store) PeekOutbox(ctx context.Context, limit int) ([]Outgoing, error) {
	if limit <= 0 {
		return nil, errdefs.InvalidArgument("outbox: limit must be positive")
	}
	rows, err := s.query(ctx, nil, sqlOutboxPeek, limit)
	if err != nil {
		return nil, fmt.Errorf("peek outbox: %w", classify(err))
	}
	defer rows.Close()
	var out []Outgoing
	for rows.Next() {
		var (
			o           Outgoing
			id, created int64
			payload     []byte
		)
		if err := rows.Scan(&id, &o.Procedure, &payload, &created, &o.Attempts); err != nil {
			return nil, fmt.Errorf("peek outbox: %w", err)
		}
		o.ID, o.Payload, o.CreatedAt = uint64(id), rawJSON(payload), fromNanos(created)
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("peek outbox: %w", classify(err))
	}
	return out, nil
}

// AckOutbox removes a delivered report. Acknowledging a report that is no
// longer there (acknowledged before, or dropped) is not an error.
func (s *Store) AckOutbox(ctx context.Context, id uint64) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, sqlOutboxAck, dbInt(id))
		return err
	})
	if err != nil {
		return fmt.Errorf("acknowledge outbox entry %d: %w", id, err)
	}
	return nil
}

// MarkAttempt counts a delivery attempt of a report; ErrNotFound if the
// report is gone.
func (s *Store) MarkAttempt(ctx context.Context, id uint64) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		var n int
		err := s.queryRow(ctx, tx, sqlOutboxAttempt, dbInt(id)).Scan(&n)
		if errors.Is(err, sql.ErrNoRows) {
			return errdefs.NotFound("outbox entry %d not found", id)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("mark attempt of outbox entry %d: %w", id, err)
	}
	return nil
}

// OutboxLen returns how many reports wait in the outbox.
func (s *Store) OutboxLen(ctx context.Context) (int, error) {
	var n int
	if err := s.queryRow(ctx, nil, sqlOutboxLength).Scan(&n); err != nil {
		return 0, fmt.Errorf("outbox length: %w", classify(err))
	}
	return n, nil
}

// OutboxDropped returns how many reports were ever dropped because the
// outbox was full (kept in the database across restarts).
func (s *Store) OutboxDropped() uint64 { return s.dropped.Load() }
