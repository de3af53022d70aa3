-- The tasks a search or label set names are checked for their owner one by one. Looked up in
-- the table, each check reads a whole row's page; this narrow index holds them all in a few
-- hundred pages, so counting a common word's thousands of matches reads far less. PostgreSQL
-- checks them in its bitmap scan of the table, and needs no such index.
CREATE INDEX tasks_id_user_idx ON tasks (id, user_id);
