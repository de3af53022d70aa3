-- Shared by the scenario scripts: JSON bodies and the bearer header from the environment.
wrk.headers["Content-Type"] = "application/json"
local token = os.getenv("BENCH_TOKEN")
if token then wrk.headers["Authorization"] = "Bearer " .. token end

-- wrk.format with extra headers replaces wrk.headers: these are the defaults plus `extra`.
function with_headers(extra)
  local headers = {}
  for name, value in pairs(wrk.headers) do headers[name] = value end
  for name, value in pairs(extra) do headers[name] = value end
  return headers
end
