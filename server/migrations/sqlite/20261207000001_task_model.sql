-- The version 2 task model: due date, priority, labels, completion time, version. Additive
-- only, so the release before keeps working on this schema during a rolling deploy.

ALTER TABLE tasks ADD COLUMN due_at TEXT;
-- 0 none, 1 low, 2 medium, 3 high: sorts in the API's order.
ALTER TABLE tasks ADD COLUMN priority INTEGER NOT NULL DEFAULT 0 CHECK (priority BETWEEN 0 AND 3);
-- The labels as answered: a JSON array of strings, sorted by their lowercase form.
ALTER TABLE tasks ADD COLUMN labels TEXT NOT NULL DEFAULT '[]';
ALTER TABLE tasks ADD COLUMN completed_at TEXT;
ALTER TABLE tasks ADD COLUMN version INTEGER NOT NULL DEFAULT 1 CHECK (version >= 1);

-- Tasks done before this release: completed when they last changed.
UPDATE tasks SET completed_at = updated_at WHERE status = 'done';

-- Each label of a task, lowercase, for the `label=` filter (all must match).
CREATE TABLE task_labels (
    task_id INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL,
    label   TEXT NOT NULL,
    PRIMARY KEY (task_id, label)
);
CREATE INDEX task_labels_user_label_idx ON task_labels (user_id, label, task_id);

-- The new sort orders; tasks without a due date come last in both directions.
CREATE INDEX tasks_user_due_idx ON tasks (user_id, due_at IS NULL, due_at, id);
CREATE INDEX tasks_user_due_desc_idx ON tasks (user_id, due_at IS NULL, due_at DESC, id DESC);
CREATE INDEX tasks_user_priority_idx ON tasks (user_id, priority, id);

-- Substring search (`q=` of 3 characters or more): an FTS5 index of trigrams over title and
-- description, which folds case by Unicode's rules. Kept by triggers, so writes of the release
-- before are indexed too.
CREATE VIRTUAL TABLE tasks_search USING fts5(
    title, description, content = 'tasks', content_rowid = 'id', tokenize = 'trigram'
);
INSERT INTO tasks_search (tasks_search) VALUES ('rebuild');
CREATE TRIGGER tasks_search_insert AFTER INSERT ON tasks BEGIN
    INSERT INTO tasks_search (rowid, title, description) VALUES (new.id, new.title, new.description);
END;
CREATE TRIGGER tasks_search_delete AFTER DELETE ON tasks BEGIN
    INSERT INTO tasks_search (tasks_search, rowid, title, description)
    VALUES ('delete', old.id, old.title, old.description);
END;
CREATE TRIGGER tasks_search_update AFTER UPDATE OF title, description ON tasks BEGIN
    INSERT INTO tasks_search (tasks_search, rowid, title, description)
    VALUES ('delete', old.id, old.title, old.description);
    INSERT INTO tasks_search (rowid, title, description) VALUES (new.id, new.title, new.description);
END;
