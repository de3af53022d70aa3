-- Conditional writes, idempotent creation and the change feed. Additive only: the release
-- before keeps working on this schema, and its writes are recorded in the feed too (triggers).

-- Each user's change counter. Every write of a task takes the next value of its owner's counter
-- while holding the owner's row lock until it commits, so one user's changes are numbered in the
-- order they commit: a reader that has seen change N has seen every change before it.
ALTER TABLE users ADD COLUMN change_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN change_seq BIGINT NOT NULL DEFAULT 0;
-- Tasks written before this release: numbered in the order they were created.
UPDATE tasks SET change_seq = numbered.n
FROM (SELECT id, row_number() OVER (PARTITION BY user_id ORDER BY id) AS n FROM tasks) AS numbered
WHERE tasks.id = numbered.id;
UPDATE users SET change_seq = COALESCE((SELECT max(change_seq) FROM tasks WHERE tasks.user_id = users.id), 0);
CREATE INDEX tasks_user_change_idx ON tasks (user_id, change_seq);

-- A deleted task, remembered for the feed until the retention period is over. No foreign key:
-- a user's deletion takes their tasks along, and leaves no tombstones (see below).
CREATE TABLE task_tombstones (
    user_id    BIGINT NOT NULL,
    task_id    BIGINT NOT NULL,
    change_seq BIGINT NOT NULL,
    deleted_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, change_seq)
);
CREATE INDEX task_tombstones_deleted_idx ON task_tombstones (deleted_at);

-- The highest change number whose tombstone was pruned, per user: a cursor below it may have
-- missed a deletion (410).
CREATE TABLE feed_horizons (
    user_id        BIGINT PRIMARY KEY,
    pruned_through BIGINT NOT NULL
);

CREATE FUNCTION tasks_record_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    seq BIGINT;
BEGIN
    UPDATE users SET change_seq = change_seq + 1 WHERE id = NEW.user_id RETURNING change_seq INTO seq;
    -- No row: the user is gone, and the write fails on its foreign key as it would without this.
    IF seq IS NOT NULL THEN
        NEW.change_seq := seq;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER tasks_record_change BEFORE INSERT OR UPDATE ON tasks
    FOR EACH ROW EXECUTE FUNCTION tasks_record_change();

CREATE FUNCTION tasks_record_delete() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    seq BIGINT;
BEGIN
    UPDATE users SET change_seq = change_seq + 1 WHERE id = OLD.user_id RETURNING change_seq INTO seq;
    -- No row: the user is being deleted with their tasks, and needs no tombstones.
    IF seq IS NOT NULL THEN
        INSERT INTO task_tombstones (user_id, task_id, change_seq, deleted_at) VALUES (OLD.user_id, OLD.id, seq, now());
    END IF;
    RETURN OLD;
END
$$;
CREATE TRIGGER tasks_record_delete AFTER DELETE ON tasks
    FOR EACH ROW EXECUTE FUNCTION tasks_record_delete();

-- Idempotency keys of `POST /tasks/` (without Redis): in flight while `status` is null, then
-- the answer given, until `expires_at`.
CREATE TABLE idempotency_keys (
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status      INTEGER,
    location    TEXT,
    body        TEXT,
    expires_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, key)
);
