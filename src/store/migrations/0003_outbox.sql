-- Reports to the cloud not yet acknowledged, delivered in id order.
-- AUTOINCREMENT: an id is never handed out twice, so a late acknowledgement
-- can never delete a newer report.
CREATE TABLE outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    procedure  TEXT    NOT NULL,
    payload    TEXT,
    created_at INTEGER NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0
);

-- The length of the outbox, kept by triggers so that bounding it on every
-- enqueue needs no count over the table, and the number of reports ever
-- dropped because the bound was reached.
CREATE TABLE outbox_counts (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    length  INTEGER NOT NULL,
    dropped INTEGER NOT NULL
);

INSERT INTO outbox_counts (id, length, dropped) VALUES (1, 0, 0);

CREATE TRIGGER outbox_counts_insert AFTER INSERT ON outbox
BEGIN
    UPDATE outbox_counts SET length = length + 1 WHERE id = 1;
END;

CREATE TRIGGER outbox_counts_delete AFTER DELETE ON outbox
BEGIN
    UPDATE outbox_counts SET length = length - 1 WHERE id = 1;
END;
