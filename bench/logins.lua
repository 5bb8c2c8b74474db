-- Each request posts the next login body (one user's email and password), round and round: every
-- user logs in in turn, and again once all have. Each thread takes a slice of the bodies.
items = lines_of("BENCH_BODIES")
local path = os.getenv("BENCH_PATH")
function request()
  local body = items[nexti]
  nexti = nexti + 1
  if nexti > last then nexti = first end
  return wrk.format("POST", path, {["Content-Type"] = "application/json"}, body)
end
