-- Each request posts the next login body (one user's email and password), round and round: every
-- user logs in in turn, and again once all have. Each thread takes a slice of the bodies.
local bodies = {}
for line in io.lines(os.getenv("BENCH_BODIES")) do bodies[#bodies + 1] = line end
local path = os.getenv("BENCH_PATH")
local threads = tonumber(os.getenv("BENCH_THREADS"))
local counter = 0
function setup(thread)
  thread:set("index", counter)
  counter = counter + 1
end
function init(args)
  local per = math.floor(#bodies / threads)
  first = index * per + 1
  last = first + per - 1
  nexti = first
end
function request()
  local body = bodies[nexti]
  nexti = nexti + 1
  if nexti > last then nexti = first end
  return wrk.format("POST", path, {["Content-Type"] = "application/json"}, body)
end
