-- Scenarios 4 and 5: POST /auth/login with the seeded user's credentials.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
wrk.headers["Authorization"] = nil
wrk.method = "POST"
wrk.path = "/auth/login"
wrk.body = '{"username":"' .. os.getenv("BENCH_USER") .. '","password":"correct horse battery"}'
