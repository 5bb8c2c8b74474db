-- Each wrk connection takes the next token of its thread's slice; a thread stops when its slice is
-- spent, so no user ever votes twice in a scenario. Without a method: plain GETs, no token.
-- With BENCH_NODES (ports, separated by commas), thread i sends to the i-th of those servers.
local tokens = {}
for line in io.lines(os.getenv("BENCH_TOKENS")) do tokens[#tokens + 1] = line end
local method = os.getenv("BENCH_METHOD")
local path = os.getenv("BENCH_PATH")
local body = os.getenv("BENCH_BODY")
local threads = tonumber(os.getenv("BENCH_THREADS"))
local nodes = {}
for port in string.gmatch(os.getenv("BENCH_NODES") or "", "%d+") do nodes[#nodes + 1] = port end
local counter = 0
function setup(thread)
  thread:set("index", counter)
  if #nodes > 0 then thread.addr = wrk.lookup("127.0.0.1", nodes[counter % #nodes + 1])[1] end
  counter = counter + 1
end
function init(args)
  local per = math.floor(#tokens / threads)
  first = index * per + 1
  last = first + per - 1
  nexti = first
end
function request()
  if method ~= "" and nexti > last then
    wrk.thread:stop()
    nexti = first
  end
  local token = tokens[nexti]
  nexti = nexti + 1
  if nexti > last and method == "" then nexti = first end
  local headers = {}
  if token ~= nil and method ~= "" then headers["Authorization"] = "Bearer " .. token end
  if body ~= "" then headers["Content-Type"] = "application/json" end
  local b = nil
  if body ~= "" then b = body end
  return wrk.format(method ~= "" and method or "GET", path, headers, b)
end
