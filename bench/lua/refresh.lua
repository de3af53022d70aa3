-- Scenario 6: POST /auth/refresh. The server runs with REFRESH_TOKEN_ROTATION=false here: wrk
-- sends one body on many connections at once, and a rotating token can be used only once.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
wrk.headers["Authorization"] = nil
wrk.method = "POST"
wrk.path = "/auth/refresh"
wrk.body = '{"refresh_token":"' .. os.getenv("BENCH_REFRESH") .. '"}'
