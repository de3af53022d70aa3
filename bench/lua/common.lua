-- Shared by the scenario scripts: JSON bodies and the bearer header from the environment.
wrk.headers["Content-Type"] = "application/json"
local token = os.getenv("BENCH_TOKEN")
if token then wrk.headers["Authorization"] = "Bearer " .. token end
