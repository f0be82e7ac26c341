-- App log lines, one stream per container/topic name. Stored sequence numbers
-- of a stream are always exactly [first_seq, next_seq): trimming removes a
-- prefix, clearing removes all, and next_seq only grows, so a sequence number
-- is never reused. bytes is the sum of size over the stored lines, kept here
-- so that bounding a stream on append needs no scan. Stream rows are never
-- deleted: they keep the numbering of a log that comes back.
CREATE TABLE log_streams (
    id        INTEGER PRIMARY KEY,
    name      TEXT    NOT NULL UNIQUE,
    app_key   INTEGER NOT NULL,
    stage     TEXT    NOT NULL CHECK (stage IN ('DEV', 'PROD')),
    next_seq  INTEGER NOT NULL,
    first_seq INTEGER NOT NULL,
    bytes     INTEGER NOT NULL
);

CREATE INDEX log_streams_by_app ON log_streams (app_key, stage);

-- key is (stream id << 44) | seq: the lines of a stream are one rowid range
-- in seq order, and appending is the cheap append-at-the-end insert of a
-- rowid table. kind ('stdout', 'stderr' or 'agent') is checked by the
-- store: a CHECK with an IN list costs more than the insert itself.
-- size is len(text) in bytes.
CREATE TABLE log_lines (
    key  INTEGER PRIMARY KEY,
    size INTEGER NOT NULL,
    at   INTEGER NOT NULL,
    kind TEXT    NOT NULL,
    text TEXT    NOT NULL
);
