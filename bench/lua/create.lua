-- Scenario 2: POST /tasks/ with a small task.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
wrk.method = "POST"
wrk.path = "/tasks/"
wrk.body = '{"title":"benchmark task","description":"created under load"}'
