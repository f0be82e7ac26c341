package devcloud

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver
)

// migrations are applied in order, each in one transaction, and tracked
// with PRAGMA user_version. Append only.
var migrations = []string{
	`CREATE TABLE devices (
		serial       TEXT PRIMARY KEY,
		device_key   INTEGER NOT NULL UNIQUE,
		swarm_key    INTEGER NOT NULL,
		secret       TEXT NOT NULL,
		name         TEXT NOT NULL DEFAULT '',
		swarm_name   TEXT NOT NULL DEFAULT '',
		owner        TEXT NOT NULL DEFAULT '',
		app_cred_key TEXT NOT NULL,
		architecture TEXT NOT NULL DEFAULT 'null', -- last update_device_architecture payload (JSON)
		created_at   INTEGER NOT NULL
	);
	CREATE TABLE device_status (
		id             INTEGER PRIMARY KEY AUTOINCREMENT,
		serial         TEXT NOT NULL REFERENCES devices(serial) ON DELETE CASCADE,
		status         TEXT NOT NULL,
		stats          TEXT NOT NULL DEFAULT 'null',
		tunnel_capable INTEGER, -- NULL: not sent
		session_id     INTEGER NOT NULL DEFAULT 0,
		at             INTEGER NOT NULL
	);
	CREATE INDEX device_status_serial ON device_status(serial, id);
	CREATE TABLE requested_apps (
		serial     TEXT NOT NULL REFERENCES devices(serial) ON DELETE CASCADE,
		app_key    INTEGER NOT NULL,
		stage      TEXT NOT NULL,
		record     TEXT NOT NULL, -- Requested as JSON
		updated_at INTEGER NOT NULL,
		PRIMARY KEY (serial, app_key, stage)
	);
	CREATE TABLE app_reports (
		seq           INTEGER PRIMARY KEY AUTOINCREMENT,
		serial        TEXT NOT NULL,
		app_key       INTEGER NOT NULL,
		stage         TEXT NOT NULL,
		state         TEXT NOT NULL,
		update_status TEXT NOT NULL DEFAULT '',
		payload       TEXT NOT NULL,
		at            INTEGER NOT NULL
	);
	CREATE INDEX app_reports_app ON app_reports(serial, app_key, stage, seq);
	CREATE TABLE port_reports (
		id      INTEGER PRIMARY KEY AUTOINCREMENT,
		serial  TEXT NOT NULL,
		payload TEXT NOT NULL,
		at      INTEGER NOT NULL
	);
	CREATE TABLE tunnel_ports (
		remote_port INTEGER PRIMARY KEY,
		serial      TEXT NOT NULL,
		protocol    TEXT NOT NULL,
		at          INTEGER NOT NULL
	);
	CREATE TABLE manifests (
		id         INTEGER PRIMARY KEY AUTOINCREMENT,
		method     TEXT NOT NULL, -- PUT or DELETE, replayed in order at start
		repo       TEXT NOT NULL,
		ref        TEXT NOT NULL,
		media_type TEXT NOT NULL DEFAULT '',
		body       BLOB
	);`,
}

// store is devcloud's SQLite file. One connection: devcloud is small and
// this makes every statement see the previous one's writes.
type store struct{ db *sql.DB }

func openStore(path string) (*store, error) {
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() +
		"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)&_pragma=foreign_keys(1)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("devcloud: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	s := &store{db: db}
	if err := s.migrate(); err != nil {
		db.Close()
		return nil, fmt.Errorf("devcloud: migrate %s: %w", path, err)
	}
	return s, nil
}

func (s *store) close() error { return s.db.Close() }

func (s *store) migrate() error {
	var version int
	if err := s.db.QueryRow(`PRAGMA user_version`).Scan(&version); err != nil {
		return err
	}
	if version > len(migrations) {
		return fmt.Errorf("database schema version %d is newer than this devcloud (%d)", version, len(migrations))
	}
	for i := version; i < len(migrations); i++ {
		err := s.tx(func(tx *sql.Tx) error {
			if _, err := tx.Exec(migrations[i]); err != nil {
				return fmt.Errorf("migration %d: %w", i+1, err)
			}
			_, err := tx.Exec(fmt.Sprintf(`PRAGMA user_version = %d`, i+1))
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *store) tx(fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(context.Background(), nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// device is a row of the devices table.
type device struct {
	Serial     string
	DeviceKey  int64
	SwarmKey   int64
	Secret     string
	Name       string
	SwarmName  string
	Owner      string
	AppCredKey string
	Arch       string // JSON
}

const deviceCols = `serial, device_key, swarm_key, secret, name, swarm_name, owner, app_cred_key, architecture`

func scanDevice(sc interface{ Scan(...any) error }) (device, error) {
	var d device
	err := sc.Scan(&d.Serial, &d.DeviceKey, &d.SwarmKey, &d.Secret, &d.Name, &d.SwarmName, &d.Owner, &d.AppCredKey, &d.Arch)
	return d, err
}

func (s *store) devices() ([]device, error) {
	rows, err := s.db.Query(`SELECT ` + deviceCols + ` FROM devices ORDER BY device_key`)
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	defer rows.Close()
	var out []device
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, fmt.Errorf("list devices: %w", err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// device finds a device by serial; ok is false if there is none.
func (s *store) device(serial string) (device, bool, error) {
	d, err := scanDevice(s.db.QueryRow(`SELECT `+deviceCols+` FROM devices WHERE serial = ?`, serial))
	if errors.Is(err, sql.ErrNoRows) {
		return device{}, false, nil
	}
	if err != nil {
		return device{}, false, fmt.Errorf("read device %s: %w", serial, err)
	}
	return d, true, nil
}

func (s *store) deviceByKey(deviceKey int64) (device, bool, error) {
	d, err := scanDevice(s.db.QueryRow(`SELECT `+deviceCols+` FROM devices WHERE device_key = ?`, deviceKey))
	if errors.Is(err, sql.ErrNoRows) {
		return device{}, false, nil
	}
	if err != nil {
		return device{}, false, fmt.Errorf("read device %d: %w", deviceKey, err)
	}
	return d, true, nil
}

// upsertDevice stores d; an existing device keeps its app credential key.
func (s *store) upsertDevice(d device) error {
	_, err := s.db.Exec(`INSERT INTO devices (serial, device_key, swarm_key, secret, name, swarm_name, owner, app_cred_key, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (serial) DO UPDATE SET device_key = excluded.device_key, swarm_key = excluded.swarm_key,
			secret = excluded.secret, name = excluded.name, swarm_name = excluded.swarm_name, owner = excluded.owner`,
		d.Serial, d.DeviceKey, d.SwarmKey, d.Secret, d.Name, d.SwarmName, d.Owner, d.AppCredKey, time.Now().UnixNano())
	if err != nil {
		return fmt.Errorf("store device %s: %w", d.Serial, err)
	}
	return nil
}

func (s *store) setMetadata(serial, name, swarmName, owner string, swarmKey int64) error {
	res, err := s.db.Exec(`UPDATE devices SET name = ?, swarm_name = ?, owner = ?, swarm_key = ? WHERE serial = ?`,
		name, swarmName, owner, swarmKey, serial)
	if err != nil {
		return fmt.Errorf("update metadata of %s: %w", serial, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("update metadata of %s: %w", serial, errUnknownDevice)
	}
	return nil
}

func (s *store) setArchitecture(serial, payload string) error {
	if _, err := s.db.Exec(`UPDATE devices SET architecture = ? WHERE serial = ?`, payload, serial); err != nil {
		return fmt.Errorf("store architecture of %s: %w", serial, err)
	}
	return nil
}

func (s *store) addStatus(serial string, r StatusRecord, stats string) error {
	var tc any
	if r.TunnelCapable != nil {
		tc = *r.TunnelCapable
	}
	_, err := s.db.Exec(`INSERT INTO device_status (serial, status, stats, tunnel_capable, session_id, at) VALUES (?, ?, ?, ?, ?, ?)`,
		serial, r.Status, stats, tc, int64(r.SessionID), r.At.UnixNano())
	if err != nil {
		return fmt.Errorf("store status of %s: %w", serial, err)
	}
	return nil
}

func (s *store) statuses(serial string, latestOnly bool) ([]StatusRecord, error) {
	q := `SELECT status, stats, tunnel_capable, session_id, at FROM device_status WHERE serial = ? ORDER BY id`
	if latestOnly {
		q = `SELECT status, stats, tunnel_capable, session_id, at FROM device_status WHERE serial = ? ORDER BY id DESC LIMIT 1`
	}
	rows, err := s.db.Query(q, serial)
	if err != nil {
		return nil, fmt.Errorf("read status of %s: %w", serial, err)
	}
	defer rows.Close()
	var out []StatusRecord
	for rows.Next() {
		var (
			r     StatusRecord
			stats string
			tc    sql.NullBool
			sid   int64
			at    int64
		)
		if err := rows.Scan(&r.Status, &stats, &tc, &sid, &at); err != nil {
			return nil, fmt.Errorf("read status of %s: %w", serial, err)
		}
		if m, ok := decodeJSON(stats).(map[string]any); ok {
			r.Stats = m
		}
		if tc.Valid {
			b := tc.Bool
			r.TunnelCapable = &b
		}
		r.SessionID, r.At = uint64(sid), time.Unix(0, at)
		out = append(out, r)
	}
	return out, rows.Err()
}

func (s *store) setRequested(serial string, r Requested, record string) error {
	_, err := s.db.Exec(`INSERT INTO requested_apps (serial, app_key, stage, record, updated_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (serial, app_key, stage) DO UPDATE SET record = excluded.record, updated_at = excluded.updated_at`,
		serial, int64(r.AppKey), r.Stage, record, time.Now().UnixNano())
	if err != nil {
		return fmt.Errorf("store requested state of app %d (%s) on %s: %w", r.AppKey, r.Stage, serial, err)
	}
	return nil
}

func (s *store) requestedRecords(serial string) ([]string, error) {
	rows, err := s.db.Query(`SELECT record FROM requested_apps WHERE serial = ? ORDER BY app_key, stage`, serial)
	if err != nil {
		return nil, fmt.Errorf("read requested states of %s: %w", serial, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var rec string
		if err := rows.Scan(&rec); err != nil {
			return nil, fmt.Errorf("read requested states of %s: %w", serial, err)
		}
		out = append(out, rec)
	}
	return out, rows.Err()
}

func (s *store) requestedRecord(serial string, appKey uint64, stage string) (string, bool, error) {
	var rec string
	err := s.db.QueryRow(`SELECT record FROM requested_apps WHERE serial = ? AND app_key = ? AND stage = ?`,
		serial, int64(appKey), stage).Scan(&rec)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read requested state of app %d (%s) on %s: %w", appKey, stage, serial, err)
	}
	return rec, true, nil
}

func (s *store) deleteRequested(serial string, appKey uint64, stage string) (bool, error) {
	res, err := s.db.Exec(`DELETE FROM requested_apps WHERE serial = ? AND app_key = ? AND stage = ?`, serial, int64(appKey), stage)
	if err != nil {
		return false, fmt.Errorf("delete requested state of app %d (%s) on %s: %w", appKey, stage, serial, err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

func (s *store) addAppReport(serial string, r AppReport, payload string) error {
	_, err := s.db.Exec(`INSERT INTO app_reports (serial, app_key, stage, state, update_status, payload, at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		serial, int64(r.AppKey), r.Stage, r.State, r.UpdateStatus, payload, r.At.UnixNano())
	if err != nil {
		return fmt.Errorf("store state report of app %d on %s: %w", r.AppKey, serial, err)
	}
	return nil
}

// appReports returns the state reports of a device in arrival order; with
// appKey/stage set, only the latest one of that app.
func (s *store) appReports(serial string, latestOf *AppReport) ([]AppReport, error) {
	q, args := `SELECT seq, app_key, stage, state, update_status, payload, at FROM app_reports WHERE serial = ? ORDER BY seq`, []any{serial}
	if latestOf != nil {
		q = `SELECT seq, app_key, stage, state, update_status, payload, at FROM app_reports
			WHERE serial = ? AND app_key = ? AND stage = ? ORDER BY seq DESC LIMIT 1`
		args = append(args, int64(latestOf.AppKey), latestOf.Stage)
	}
	rows, err := s.db.Query(q, args...)
	if err != nil {
		return nil, fmt.Errorf("read state reports of %s: %w", serial, err)
	}
	defer rows.Close()
	var out []AppReport
	for rows.Next() {
		var (
			r       AppReport
			key, at int64
			payload string
		)
		if err := rows.Scan(&r.Seq, &key, &r.Stage, &r.State, &r.UpdateStatus, &payload, &at); err != nil {
			return nil, fmt.Errorf("read state reports of %s: %w", serial, err)
		}
		r.AppKey, r.At = uint64(key), time.Unix(0, at)
		r.Payload, _ = decodeJSON(payload).(map[string]any)
		out = append(out, r)
	}
	return out, rows.Err()
}

func (s *store) addPortReport(serial, payload string) error {
	if _, err := s.db.Exec(`INSERT INTO port_reports (serial, payload, at) VALUES (?, ?, ?)`, serial, payload, time.Now().UnixNano()); err != nil {
		return fmt.Errorf("store port report of %s: %w", serial, err)
	}
	return nil
}

func (s *store) portReports(serial string) ([]map[string]any, error) {
	rows, err := s.db.Query(`SELECT payload FROM port_reports WHERE serial = ? ORDER BY id`, serial)
	if err != nil {
		return nil, fmt.Errorf("read port reports of %s: %w", serial, err)
	}
	defer rows.Close()
	var out []map[string]any
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			return nil, fmt.Errorf("read port reports of %s: %w", serial, err)
		}
		m, _ := decodeJSON(p).(map[string]any)
		out = append(out, m)
	}
	return out, rows.Err()
}

// errDuplicatePort: the device already holds the remote port it asked for.
var errDuplicatePort = errors.New("duplicate port")

// allocatePort reserves a remote port for serial: the requested one if it
// is free and in range, else the lowest free one.
func (s *store) allocatePort(serial string, requested int, protocol string, lo, hi int) (int, error) {
	var port int
	err := s.tx(func(tx *sql.Tx) error {
		if requested >= lo && requested <= hi {
			var owner string
			err := tx.QueryRow(`SELECT serial FROM tunnel_ports WHERE remote_port = ?`, requested).Scan(&owner)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				port = requested
			case err != nil:
				return err
			case owner == serial:
				return errDuplicatePort
			}
		}
		if port == 0 {
			// The lowest port in range that no row holds.
			err := tx.QueryRow(`SELECT p FROM (
					SELECT ? AS p UNION ALL SELECT remote_port + 1 FROM tunnel_ports WHERE remote_port + 1 BETWEEN ? AND ?
				) WHERE p NOT IN (SELECT remote_port FROM tunnel_ports) ORDER BY p LIMIT 1`, lo, lo, hi).Scan(&port)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("no free remote port in %d..%d", lo, hi)
			}
			if err != nil {
				return err
			}
		}
		_, err := tx.Exec(`INSERT INTO tunnel_ports (remote_port, serial, protocol, at) VALUES (?, ?, ?, ?)`,
			port, serial, protocol, time.Now().UnixNano())
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("allocate remote port for %s: %w", serial, err)
	}
	return port, nil
}

func (s *store) releasePort(serial string, port int) (bool, error) {
	res, err := s.db.Exec(`DELETE FROM tunnel_ports WHERE remote_port = ? AND serial = ?`, port, serial)
	if err != nil {
		return false, fmt.Errorf("release remote port %d of %s: %w", port, serial, err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// manifestOp is one journalled registry manifest write.
type manifestOp struct {
	Method, Repo, Ref, MediaType string
	Body                         []byte
}

func (s *store) addManifestOp(op manifestOp) error {
	if _, err := s.db.Exec(`INSERT INTO manifests (method, repo, ref, media_type, body) VALUES (?, ?, ?, ?, ?)`,
		op.Method, op.Repo, op.Ref, op.MediaType, op.Body); err != nil {
		return fmt.Errorf("journal manifest %s %s:%s: %w", op.Method, op.Repo, op.Ref, err)
	}
	return nil
}

func (s *store) manifestOps() ([]manifestOp, error) {
	rows, err := s.db.Query(`SELECT method, repo, ref, media_type, body FROM manifests ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("read manifest journal: %w", err)
	}
	defer rows.Close()
	var out []manifestOp
	for rows.Next() {
		var op manifestOp
		if err := rows.Scan(&op.Method, &op.Repo, &op.Ref, &op.MediaType, &op.Body); err != nil {
			return nil, fmt.Errorf("read manifest journal: %w", err)
		}
		out = append(out, op)
	}
	return out, rows.Err()
}
