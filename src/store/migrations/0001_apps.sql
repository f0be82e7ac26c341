-- Apps: desired state, observed state, its history and host-port reservations.
-- Every app is keyed by (app_key, stage); its name is a plain column because
-- it can change. State names are validated by the store, not by CHECKs, so a
-- new state never needs a table rebuild. Times are Unix nanoseconds (UTC).

CREATE TABLE requested (
    app_key                  INTEGER NOT NULL,
    stage                    TEXT    NOT NULL CHECK (stage IN ('DEV', 'PROD')),
    app_name                 TEXT    NOT NULL,
    target_state             TEXT    NOT NULL,
    version                  TEXT    NOT NULL DEFAULT '',
    present_version          TEXT    NOT NULL DEFAULT '',
    newest_version           TEXT    NOT NULL DEFAULT '',
    release_key              INTEGER NOT NULL DEFAULT 0,
    new_release_key          INTEGER NOT NULL DEFAULT 0,
    request_update           INTEGER NOT NULL DEFAULT 0 CHECK (request_update IN (0, 1)),
    requestor_account_key    INTEGER NOT NULL DEFAULT 0,
    device_owner_account_key INTEGER NOT NULL DEFAULT 0,
    environment              TEXT,
    environment_template     TEXT,
    ports                    TEXT,
    docker_compose           TEXT,
    new_docker_compose       TEXT,
    docker_credentials       TEXT,
    app_cred_epoch           INTEGER NOT NULL DEFAULT 0,
    instance_key             INTEGER NOT NULL DEFAULT 0,
    generation               INTEGER NOT NULL,
    created_at               INTEGER NOT NULL,
    updated_at               INTEGER NOT NULL,
    PRIMARY KEY (app_key, stage)
) WITHOUT ROWID;

-- The last generation handed out per app. Kept when the requested row is
-- deleted, so a generation is never reused for an app.
CREATE TABLE generations (
    app_key    INTEGER NOT NULL,
    stage      TEXT    NOT NULL CHECK (stage IN ('DEV', 'PROD')),
    generation INTEGER NOT NULL,
    PRIMARY KEY (app_key, stage)
) WITHOUT ROWID;

CREATE TABLE actual (
    app_key       INTEGER NOT NULL,
    stage         TEXT    NOT NULL CHECK (stage IN ('DEV', 'PROD')),
    app_name      TEXT    NOT NULL,
    state         TEXT    NOT NULL,
    version       TEXT    NOT NULL DEFAULT '',
    release_key   INTEGER NOT NULL DEFAULT 0,
    update_status TEXT    NOT NULL DEFAULT ''
        CHECK (update_status IN ('', 'pending_remote_confirmation', 'completed', 'canceled')),
    last_error    TEXT    NOT NULL DEFAULT '',
    updated_at    INTEGER NOT NULL,
    history_seq   INTEGER NOT NULL DEFAULT 0, -- seq of the app's newest row in history
    PRIMARY KEY (app_key, stage)
) WITHOUT ROWID;

-- Bounded per app by the store: seq counts an app's transitions
-- (actual.history_seq holds the newest), so the rows beyond the newest
-- HistoryMax are one range delete away. Deleted with the app's actual row
-- (the store only ever updates actual rows in place, never REPLACEs them).
CREATE TABLE history (
    app_key     INTEGER NOT NULL,
    stage       TEXT    NOT NULL CHECK (stage IN ('DEV', 'PROD')),
    seq         INTEGER NOT NULL,
    from_state  TEXT    NOT NULL,
    to_state    TEXT    NOT NULL,
    version     TEXT    NOT NULL,
    release_key INTEGER NOT NULL,
    reason      TEXT    NOT NULL,
    at          INTEGER NOT NULL,
    PRIMARY KEY (app_key, stage, seq),
    FOREIGN KEY (app_key, stage) REFERENCES actual (app_key, stage) ON DELETE CASCADE
) WITHOUT ROWID;

-- One row per reserved host port; (protocol, host_port) is unique across
-- all apps, and an app holds one host port per declared port and service.
CREATE TABLE host_ports (
    protocol      TEXT    NOT NULL CHECK (protocol IN ('tcp', 'udp')),
    host_port     INTEGER NOT NULL CHECK (host_port BETWEEN 1 AND 65535),
    app_key       INTEGER NOT NULL,
    stage         TEXT    NOT NULL CHECK (stage IN ('DEV', 'PROD')),
    declared_port INTEGER NOT NULL CHECK (declared_port BETWEEN 1 AND 65535),
    service       TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (protocol, host_port),
    UNIQUE (app_key, stage, protocol, declared_port, service)
) WITHOUT ROWID;

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
