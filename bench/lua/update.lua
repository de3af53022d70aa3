-- Scenario 3: PUT /tasks/{id} on one of the seeded tasks (ids from BENCH_TASK_IDS).
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local ids = {}
for id in string.gmatch(os.getenv("BENCH_TASK_IDS"), "%d+") do ids[#ids + 1] = id end
local n = 0
request = function()
  n = n + 1
  local id = ids[(n % #ids) + 1]
  local status = (n % 2 == 0) and "done" or "in_progress"
  return wrk.format("PUT", "/tasks/" .. id, nil, '{"status":"' .. status .. '"}')
end
