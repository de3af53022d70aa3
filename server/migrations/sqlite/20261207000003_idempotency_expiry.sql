-- Each claim first forgets the user's expired keys; without this index that delete reads every
-- key the user holds, so a busy account's creates grow slower with every key it keeps.
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (user_id, expires_at);
