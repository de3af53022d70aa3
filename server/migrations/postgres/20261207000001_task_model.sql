-- The version 2 task model: due date, priority, labels, completion time, version. Additive
-- only, so the release before keeps working on this schema during a rolling deploy.

ALTER TABLE tasks
    ADD COLUMN due_at       TIMESTAMPTZ,
    -- 0 none, 1 low, 2 medium, 3 high: sorts in the API's order.
    ADD COLUMN priority     SMALLINT NOT NULL DEFAULT 0 CHECK (priority BETWEEN 0 AND 3),
    -- The labels as answered: a JSON array of strings, sorted by their lowercase form.
    ADD COLUMN labels       TEXT NOT NULL DEFAULT '[]',
    ADD COLUMN completed_at TIMESTAMPTZ,
    ADD COLUMN version      BIGINT NOT NULL DEFAULT 1 CHECK (version >= 1);

-- Tasks done before this release: completed when they last changed.
UPDATE tasks SET completed_at = updated_at WHERE status = 'done';

-- Each label of a task, lowercase, for the `label=` filter (all must match).
CREATE TABLE task_labels (
    task_id BIGINT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL,
    label   TEXT NOT NULL,
    PRIMARY KEY (task_id, label)
);
CREATE INDEX task_labels_user_label_idx ON task_labels (user_id, label, task_id);

-- The new sort orders; tasks without a due date come last in both directions.
CREATE INDEX tasks_user_due_idx ON tasks (user_id, (due_at IS NULL), due_at, id);
CREATE INDEX tasks_user_due_desc_idx ON tasks (user_id, (due_at IS NULL), due_at DESC, id DESC);
CREATE INDEX tasks_user_priority_idx ON tasks (user_id, priority, id);

-- Substring search (`q=`): trigram indexes on the text folded by ICU's root locale, so that
-- `ÄPFEL` finds `äpfel` whatever the database's own locale (`title` is "C" for sorting).
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX tasks_title_search_idx ON tasks USING gin (lower(title COLLATE "und-x-icu") gin_trgm_ops);
CREATE INDEX tasks_description_search_idx ON tasks USING gin (lower(description COLLATE "und-x-icu") gin_trgm_ops);
