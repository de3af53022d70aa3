-- Users, tasks and refresh-token families (SQLite). Timestamps are RFC 3339 text in UTC.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    TEXT NOT NULL
);
-- Usernames are ASCII, so lower() is exact: unique and matched ignoring case.
CREATE UNIQUE INDEX users_username_lower_key ON users (lower(username));

CREATE TABLE tasks (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title       TEXT NOT NULL,
    description TEXT,
    status      TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'in_progress', 'done')),
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
-- One index per sort order: every listing is an index range scan of one user's tasks.
CREATE INDEX tasks_user_created_idx ON tasks (user_id, created_at, id);
CREATE INDEX tasks_user_updated_idx ON tasks (user_id, updated_at, id);
CREATE INDEX tasks_user_title_idx ON tasks (user_id, title, id);

-- A family is one login's chain of refresh tokens; revoking it ends the session.
CREATE TABLE refresh_families (
    id         TEXT PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at TEXT NOT NULL
);
CREATE INDEX refresh_families_user_idx ON refresh_families (user_id, expires_at);

-- The one live token of each family; consuming it is a DELETE ... RETURNING.
CREATE TABLE refresh_tokens (
    jti        TEXT PRIMARY KEY,
    family_id  TEXT NOT NULL REFERENCES refresh_families (id) ON DELETE CASCADE,
    expires_at TEXT NOT NULL
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
