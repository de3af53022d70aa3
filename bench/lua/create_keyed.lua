-- POST /tasks/ with a fresh Idempotency-Key on every request, as the SDK sends each create.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local threads, n, run = 0, 0, tostring(os.time())

function setup(thread)
  threads = threads + 1
  thread:set("share", threads)
end

request = function()
  n = n + 1
  local key = run .. "-" .. share .. "-" .. n
  return wrk.format("POST", "/tasks/", with_headers({ ["Idempotency-Key"] = key }),
    '{"title":"benchmark task","description":"created under load"}')
end
