-- PATCH /tasks/{id} on the seeded tasks (ids from BENCH_TASK_IDS), each wrk thread on its own
-- share of them. With BENCH_IF_MATCH set, each request carries the ETag of the task's last
-- answer (`If-Match`), as a client that read it does; without, no precondition.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local all = {}
for id in string.gmatch(os.getenv("BENCH_TASK_IDS"), "%d+") do all[#all + 1] = id end
local conditional = os.getenv("BENCH_IF_MATCH") ~= nil
local threads, ids, etags, n = 0, {}, {}, 0

function setup(thread)
  threads = threads + 1
  thread:set("share", threads)
end

function init()
  -- Thread k takes every other id starting at k, so two threads never write one task.
  for i = share, #all, 2 do ids[#ids + 1] = all[i] end
end

request = function()
  n = n + 1
  local id = ids[(n % #ids) + 1]
  local status = (n % 2 == 0) and "done" or "in_progress"
  local headers = nil
  if conditional then headers = with_headers({ ["If-Match"] = etags[id] or "*" }) end
  return wrk.format("PATCH", "/tasks/" .. id, headers, '{"status":"' .. status .. '"}')
end

response = function(status, headers, body)
  local etag = headers["ETag"] or headers["etag"]
  if etag then
    local id = string.match(etag, '^"(%d+)%-')
    if id then etags[id] = etag end
  end
end
