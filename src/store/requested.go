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

// Requested is the desired state of one app, with everything needed to
// re-drive it offline.
type Requested struct {
	Key
	AppName                                    string
	TargetState                                string // any app state name, e.g. PRESENT, RUNNING, BUILT, PUBLISHED, REMOVED, UNINSTALLED
	Version, PresentVersion, NewestVersion     string
	ReleaseKey, NewReleaseKey                  uint64
	RequestUpdate                              bool
	RequestorAccountKey, DeviceOwnerAccountKey uint64
	Environment, EnvironmentTemplate           json.RawMessage // JSON objects or nil
	Ports                                      json.RawMessage // JSON array or nil
	DockerCompose, NewDockerCompose            json.RawMessage // JSON objects or nil
	DockerCredentials                          json.RawMessage // JSON object or nil (sensitive: the file is 0600)
	AppCredEpoch, InstanceKey                  uint64
	Generation                                 uint64 // set by PutRequested: +1 on every put of this key, never reused
	CreatedAt, UpdatedAt                       time.Time
}

const (
	requestedColumns = `app_key, stage, app_name, target_state, version, present_version, newest_version,
		release_key, new_release_key, request_update, requestor_account_key, device_owner_account_key,
		environment, environment_template, ports, docker_compose, new_docker_compose, docker_credentials,
		app_cred_epoch, instance_key, generation, created_at, updated_at`

	sqlGenerationNext = `
		INSERT INTO generations (app_key, stage, generation) VALUES (?, ?, 1)
		ON CONFLICT (app_key, stage) DO UPDATE SET generation = generation + 1
		RETURNING generation`
	sqlRequestedUpsert = `
		INSERT INTO requested (` + requestedColumns + `)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (app_key, stage) DO UPDATE SET
			app_name = excluded.app_name, target_state = excluded.target_state,
			version = excluded.version, present_version = excluded.present_version,
			newest_version = excluded.newest_version, release_key = excluded.release_key,
			new_release_key = excluded.new_release_key, request_update = excluded.request_update,
			requestor_account_key = excluded.requestor_account_key,
			device_owner_account_key = excluded.device_owner_account_key,
			environment = excluded.environment, environment_template = excluded.environment_template,
			ports = excluded.ports, docker_compose = excluded.docker_compose,
			new_docker_compose = excluded.new_docker_compose, docker_credentials = excluded.docker_credentials,
			app_cred_epoch = excluded.app_cred_epoch, instance_key = excluded.instance_key,
			generation = excluded.generation, updated_at = excluded.updated_at
		RETURNING ` + requestedColumns
	sqlRequestedGet    = `SELECT ` + requestedColumns + ` FROM requested WHERE app_key = ? AND stage = ?`
	sqlRequestedList   = `SELECT ` + requestedColumns + ` FROM requested ORDER BY app_key, stage`
	sqlRequestedDelete = `DELETE FROM requested WHERE app_key = ? AND stage = ?`
)

// PutRequested stores r as the desired state of its app, replacing the
// previous one, and returns the stored row with its Generation and times.
// CreatedAt is kept from the first put; the times given in r are ignored.
func (s *Store) PutRequested(ctx context.Context, r Requested) (Requested, error) {
	if err := checkKey(r.Key); err != nil {
		return Requested{}, err
	}
	if r.AppName == "" {
		return Requested{}, errdefs.InvalidArgument("%s: app name is empty", app(r.Key))
	}
	if err := checkState(r.Key, "target state", r.TargetState); err != nil {
		return Requested{}, err
	}
	var js [6]any
	for i, f := range []struct {
		name string
		raw  json.RawMessage
		kind jsonKind
	}{
		{"environment", r.Environment, jsonObject},
		{"environment_template", r.EnvironmentTemplate, jsonObject},
		{"ports", r.Ports, jsonArray},
		{"docker_compose", r.DockerCompose, jsonObject},
		{"new_docker_compose", r.NewDockerCompose, jsonObject},
		// The message names the field only: credentials never reach an error.
		{"docker_credentials", r.DockerCredentials, jsonObject},
	} {
		v, err := jsonColumn(r.Key, f.name, f.raw, f.kind)
		if err != nil {
			return Requested{}, err
		}
		js[i] = v
	}

	now := nanos(s.opts.Now())
	var out Requested
	err := s.write(ctx, func(tx *sql.Tx) error {
		var gen int64
		if err := s.queryRow(ctx, tx, sqlGenerationNext, dbInt(r.AppKey), r.Stage).Scan(&gen); err != nil {
			return fmt.Errorf("next generation: %w", err)
		}
		row := s.queryRow(ctx, tx, sqlRequestedUpsert,
			dbInt(r.AppKey), r.Stage, r.AppName, r.TargetState, r.Version, r.PresentVersion, r.NewestVersion,
			dbInt(r.ReleaseKey), dbInt(r.NewReleaseKey), boolInt(r.RequestUpdate),
			dbInt(r.RequestorAccountKey), dbInt(r.DeviceOwnerAccountKey),
			js[0], js[1], js[2], js[3], js[4], js[5],
			dbInt(r.AppCredEpoch), dbInt(r.InstanceKey), gen, now, now)
		var err error
		out, err = scanRequested(row)
		return err
	})
	if err != nil {
		return Requested{}, fmt.Errorf("put requested state of %s: %w", app(r.Key), err)
	}
	return out, nil
}

// GetRequested returns the desired state of k; ErrNotFound if none is stored.
func (s *Store) GetRequested(ctx context.Context, k Key) (Requested, error) {
	if err := checkKey(k); err != nil {
		return Requested{}, err
	}
	r, err := scanRequested(s.queryRow(ctx, nil, sqlRequestedGet, dbInt(k.AppKey), k.Stage))
	if errors.Is(err, sql.ErrNoRows) {
		return Requested{}, errdefs.NotFound("no requested state for %s", app(k))
	}
	if err != nil {
		return Requested{}, fmt.Errorf("get requested state of %s: %w", app(k), classify(err))
	}
	return r, nil
}

// ListRequested returns every stored desired state, ordered by key.
func (s *Store) ListRequested(ctx context.Context) ([]Requested, error) {
	rows, err := s.query(ctx, nil, sqlRequestedList)
	if err != nil {
		return nil, fmt.Errorf("list requested states: %w", classify(err))
	}
	defer rows.Close()
	var out []Requested
	for rows.Next() {
		r, err := scanRequested(rows)
		if err != nil {
			return nil, fmt.Errorf("list requested states: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list requested states: %w", classify(err))
	}
	return out, nil
}

// DeleteRequested forgets the desired state of k; deleting a missing one is
// not an error. The generation counter of k is kept.
func (s *Store) DeleteRequested(ctx context.Context, k Key) error {
	if err := checkKey(k); err != nil {
		return err
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, sqlRequestedDelete, dbInt(k.AppKey), k.Stage)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete requested state of %s: %w", app(k), err)
	}
	return nil
}

type scanner interface{ Scan(dest ...any) error }

func scanRequested(sc scanner) (Requested, error) {
	var (
		r                                       Requested
		appKey, rel, newRel, reqAcc, ownAcc     int64
		epoch, inst, gen, created, updated      int64
		reqUpdate                               int
		env, envTpl, ports, compose, newCompose []byte
		creds                                   []byte
	)
	err := sc.Scan(&appKey, &r.Stage, &r.AppName, &r.TargetState, &r.Version, &r.PresentVersion, &r.NewestVersion,
		&rel, &newRel, &reqUpdate, &reqAcc, &ownAcc,
		&env, &envTpl, &ports, &compose, &newCompose, &creds,
		&epoch, &inst, &gen, &created, &updated)
	if err != nil {
		return Requested{}, err
	}
	r.AppKey = fromDB(appKey)
	r.ReleaseKey, r.NewReleaseKey = fromDB(rel), fromDB(newRel)
	r.RequestUpdate = reqUpdate != 0
	r.RequestorAccountKey, r.DeviceOwnerAccountKey = fromDB(reqAcc), fromDB(ownAcc)
	r.Environment, r.EnvironmentTemplate, r.Ports = rawJSON(env), rawJSON(envTpl), rawJSON(ports)
	r.DockerCompose, r.NewDockerCompose, r.DockerCredentials = rawJSON(compose), rawJSON(newCompose), rawJSON(creds)
	r.AppCredEpoch, r.InstanceKey = fromDB(epoch), fromDB(inst)
	r.Generation = fromDB(gen)
	r.CreatedAt, r.UpdatedAt = fromNanos(created), fromNanos(updated)
	return r, nil
}
