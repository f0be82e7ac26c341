package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"reagent/src/errdefs"
)

const (
	sqlMetaGet = `SELECT value FROM meta WHERE key = ?`
	sqlMetaSet = `INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`
)

// GetMeta returns an agent fact stored under key (e.g.
// "docker.privilege_level"), and false if there is none.
func (s *Store) GetMeta(ctx context.Context, key string) (string, bool, error) {
	if key == "" {
		return "", false, errdefs.InvalidArgument("meta key is empty")
	}
	var v string
	err := s.queryRow(ctx, nil, sqlMetaGet, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("get meta %s: %w", key, classify(err))
	}
	return v, true, nil
}

// SetMeta stores value under key, replacing what was there.
func (s *Store) SetMeta(ctx context.Context, key, value string) error {
	if key == "" {
		return errdefs.InvalidArgument("meta key is empty")
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, sqlMetaSet, key, value)
		return err
	})
	if err != nil {
		return fmt.Errorf("set meta %s: %w", key, err)
	}
	return nil
}
