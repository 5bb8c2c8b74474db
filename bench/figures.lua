-- The figures wrk reports, as one line of JSON on standard error (the harness reads it).
function done(summary, latency, requests)
  local non2xx = summary.errors.status
  io.stderr:write(string.format(
    'BENCH {"requests": %d, "seconds": %.6f, "non2xx": %d, "socket_errors": %d, ' ..
    '"p50_ms": %.3f, "p99_ms": %.3f}\n',
    summary.requests, summary.duration / 1e6, non2xx,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
