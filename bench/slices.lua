-- What the scripts share: each wrk thread takes its own slice of the script's `items` (a file's
-- lines: `lines_of(VARIABLE)` reads the file that variable names), from `first` to `last`, with
-- `nexti` the next to send. With BENCH_NODES (ports, separated by commas), thread i sends to the
-- i-th of those servers.
local threads = tonumber(os.getenv("BENCH_THREADS"))
local nodes = {}
for port in string.gmatch(os.getenv("BENCH_NODES") or "", "%d+") do nodes[#nodes + 1] = port end
local counter = 0
function lines_of(variable)
  local found = {}
  for line in io.lines(os.getenv(variable)) do found[#found + 1] = line end
  return found
end
function setup(thread)
  thread:set("index", counter)
  if #nodes > 0 then thread.addr = wrk.lookup("127.0.0.1", nodes[counter % #nodes + 1])[1] end
  counter = counter + 1
end
function init(args)
  local per = math.floor(#items / threads)
  first = index * per + 1
  last = first + per - 1
  nexti = first
end
