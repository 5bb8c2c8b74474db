-- Each wrk connection takes the next token of its thread's slice; a thread stops when its slice is
-- spent, so no user ever votes twice in a scenario. Without a method: plain GETs, no token.
items = lines_of("BENCH_TOKENS")
local method = os.getenv("BENCH_METHOD")
local path = os.getenv("BENCH_PATH")
local body = os.getenv("BENCH_BODY")
function request()
  if method ~= "" and nexti > last then
    wrk.thread:stop()
    nexti = first
  end
  local token = items[nexti]
  nexti = nexti + 1
  if nexti > last and method == "" then nexti = first end
  local headers = {}
  if token ~= nil and method ~= "" then headers["Authorization"] = "Bearer " .. token end
  if body ~= "" then headers["Content-Type"] = "application/json" end
  local b = nil
  if body ~= "" then b = body end
  return wrk.format(method ~= "" and method or "GET", path, headers, b)
end
