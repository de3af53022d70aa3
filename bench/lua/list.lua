-- Scenario 1: GET /tasks/ of a user with 20 tasks.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
wrk.path = "/tasks/"
