package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"reagent/src/errdefs"
)

// HostPort is one reserved host port: the app it belongs to, the port and
// compose service ("" for single-container apps) it publishes, and the
// Docker protocol ("tcp" or "udp").
type HostPort struct {
	Key
	Protocol     string
	DeclaredPort uint16
	Service      string
	HostPort     uint16
}

const (
	sqlHostPortList = `
		SELECT app_key, stage, protocol, declared_port, service, host_port FROM host_ports
		ORDER BY app_key, stage, protocol, declared_port, service`
	sqlHostPortOwner = `
		SELECT app_key, stage, declared_port, service FROM host_ports WHERE protocol = ? AND host_port = ?`
	sqlHostPortUnreserve = `
		DELETE FROM host_ports WHERE app_key = ? AND stage = ? AND protocol = ? AND declared_port = ? AND service = ?`
	sqlHostPortInsert = `
		INSERT INTO host_ports (protocol, host_port, app_key, stage, declared_port, service) VALUES (?, ?, ?, ?, ?, ?)`
	sqlHostPortRelease = `DELETE FROM host_ports WHERE app_key = ? AND stage = ?`
)

// HostPorts returns every reservation, ordered by app, then protocol and
// declared port.
func (s *Store) HostPorts(ctx context.Context) ([]HostPort, error) {
	rows, err := s.query(ctx, nil, sqlHostPortList)
	if err != nil {
		return nil, fmt.Errorf("list host ports: %w", classify(err))
	}
	defer rows.Close()
	var out []HostPort
	for rows.Next() {
		var (
			hp  HostPort
			key int64
		)
		if err := rows.Scan(&key, &hp.Stage, &hp.Protocol, &hp.DeclaredPort, &hp.Service, &hp.HostPort); err != nil {
			return nil, fmt.Errorf("list host ports: %w", err)
		}
		hp.AppKey = fromDB(key)
		out = append(out, hp)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list host ports: %w", classify(err))
	}
	return out, nil
}

// ReserveHostPort records that hp's app publishes its declared port on
// hp.HostPort. Reserving the same row again is a no-op; reserving another
// host port for the same declared port and service moves the reservation.
// A host port held by another app, or by another port of the same app, is
// ErrConflict.
func (s *Store) ReserveHostPort(ctx context.Context, hp HostPort) error {
	if err := checkKey(hp.Key); err != nil {
		return err
	}
	if hp.Protocol != "tcp" && hp.Protocol != "udp" {
		return errdefs.InvalidArgument("%s: host port protocol %q must be tcp or udp", app(hp.Key), hp.Protocol)
	}
	if hp.DeclaredPort == 0 || hp.HostPort == 0 {
		return errdefs.InvalidArgument("%s: declared port and host port must not be 0", app(hp.Key))
	}
	k := dbInt(hp.AppKey)
	err := s.write(ctx, func(tx *sql.Tx) error {
		var (
			owner    HostPort
			ownerKey int64
		)
		err := s.queryRow(ctx, tx, sqlHostPortOwner, hp.Protocol, hp.HostPort).Scan(&ownerKey, &owner.Stage, &owner.DeclaredPort, &owner.Service)
		switch {
		case err == nil:
			owner.AppKey = fromDB(ownerKey)
			if owner.Key == hp.Key && owner.DeclaredPort == hp.DeclaredPort && owner.Service == hp.Service {
				return nil
			}
			if owner.Key != hp.Key {
				return errdefs.Conflict("host port %s/%d is reserved by %s", hp.Protocol, hp.HostPort, app(owner.Key))
			}
			return errdefs.Conflict("host port %s/%d is reserved by %s for port %d of service %q",
				hp.Protocol, hp.HostPort, app(owner.Key), owner.DeclaredPort, owner.Service)
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		if _, err := s.exec(ctx, tx, sqlHostPortUnreserve, k, hp.Stage, hp.Protocol, hp.DeclaredPort, hp.Service); err != nil {
			return err
		}
		_, err = s.exec(ctx, tx, sqlHostPortInsert, hp.Protocol, hp.HostPort, k, hp.Stage, hp.DeclaredPort, hp.Service)
		return err
	})
	if err != nil {
		return fmt.Errorf("reserve host port %s/%d for %s: %w", hp.Protocol, hp.HostPort, app(hp.Key), err)
	}
	return nil
}

// ReleaseHostPorts drops every reservation of k.
func (s *Store) ReleaseHostPorts(ctx context.Context, k Key) error {
	if err := checkKey(k); err != nil {
		return err
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, sqlHostPortRelease, dbInt(k.AppKey), k.Stage)
		return err
	})
	if err != nil {
		return fmt.Errorf("release host ports of %s: %w", app(k), err)
	}
	return nil
}
