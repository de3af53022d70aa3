-- Conditional writes, idempotent creation and the change feed. Additive only: the release
-- before keeps working on this schema, and its writes are recorded in the feed too (triggers).

-- Each user's change counter. SQLite runs one write at a time, so a user's changes are
-- numbered in the order they commit: a reader that has seen change N has seen every one before.
ALTER TABLE users ADD COLUMN change_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN change_seq INTEGER NOT NULL DEFAULT 0;
-- Tasks written before this release: numbered in the order they were created.
UPDATE tasks SET change_seq = numbered.n
FROM (SELECT id, row_number() OVER (PARTITION BY user_id ORDER BY id) AS n FROM tasks) AS numbered
WHERE tasks.id = numbered.id;
UPDATE users SET change_seq = COALESCE((SELECT max(change_seq) FROM tasks WHERE tasks.user_id = users.id), 0);
CREATE INDEX tasks_user_change_idx ON tasks (user_id, change_seq);

-- A deleted task, remembered for the feed until the retention period is over.
CREATE TABLE task_tombstones (
    user_id    INTEGER NOT NULL,
    task_id    INTEGER NOT NULL,
    change_seq INTEGER NOT NULL,
    deleted_at TEXT NOT NULL,
    PRIMARY KEY (user_id, change_seq)
);
CREATE INDEX task_tombstones_deleted_idx ON task_tombstones (deleted_at);

-- The highest change number whose tombstone was pruned, per user: a cursor below it may have
-- missed a deletion (410).
CREATE TABLE feed_horizons (
    user_id        INTEGER PRIMARY KEY,
    pruned_through INTEGER NOT NULL
);

-- No user row: the user is gone, and the write fails on its foreign key as it would without this.
CREATE TRIGGER tasks_record_insert AFTER INSERT ON tasks BEGIN
    UPDATE users SET change_seq = change_seq + 1 WHERE id = NEW.user_id;
    UPDATE tasks SET change_seq = (SELECT change_seq FROM users WHERE id = NEW.user_id)
        WHERE id = NEW.id AND EXISTS (SELECT 1 FROM users WHERE id = NEW.user_id);
END;
-- Not for the trigger's own numbering of the row (its change_seq moves).
CREATE TRIGGER tasks_record_update AFTER UPDATE ON tasks WHEN NEW.change_seq = OLD.change_seq BEGIN
    UPDATE users SET change_seq = change_seq + 1 WHERE id = NEW.user_id;
    UPDATE tasks SET change_seq = (SELECT change_seq FROM users WHERE id = NEW.user_id)
        WHERE id = NEW.id AND EXISTS (SELECT 1 FROM users WHERE id = NEW.user_id);
END;
-- No user row: the user is being deleted with their tasks, and needs no tombstones.
CREATE TRIGGER tasks_record_delete AFTER DELETE ON tasks BEGIN
    UPDATE users SET change_seq = change_seq + 1 WHERE id = OLD.user_id;
    INSERT INTO task_tombstones (user_id, task_id, change_seq, deleted_at)
        SELECT OLD.user_id, OLD.id, change_seq, strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now') FROM users WHERE id = OLD.user_id;
END;

-- Idempotency keys of `POST /tasks/` (without Redis): in flight while `status` is null, then
-- the answer given, until `expires_at`.
CREATE TABLE idempotency_keys (
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status      INTEGER,
    location    TEXT,
    body        TEXT,
    expires_at  TEXT NOT NULL,
    PRIMARY KEY (user_id, key)
);
