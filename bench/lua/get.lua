-- Any GET: the path from BENCH_PATH (bench/big_account.py).
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
wrk.path = os.getenv("BENCH_PATH")
