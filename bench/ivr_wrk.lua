-- wrk script of bench/ivr.py: replays pre-signed webhook requests.
--
--   wrk -s bench/ivr_wrk.lua URL -- REQUESTS_FILE
--
-- REQUESTS_FILE has one request a line: path, X-Twilio-Signature,
-- I-Twilio-Idempotency-Token and the url-encoded form, separated by tabs.
-- Thread k of n replays lines k, k+n, k+2n, ... in turn (each request is sent
-- once before any is repeated).  done() prints one JSON line for bench/ivr.py.

local threads = {}

function setup(thread)
   thread:set("id", #threads)
   table.insert(threads, thread)
end

function init(args)
   local nthreads = #threads
   if nthreads == 0 then nthreads = 1 end
   local mine = id or 0
   reqs = {}
   local i = 0
   for line in io.lines(args[1]) do
      if i % nthreads == mine then
         local path, sig, token, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
         local headers = {["Content-Type"] = "application/x-www-form-urlencoded"}
         if sig ~= "" then headers["X-Twilio-Signature"] = sig end
         if token ~= "" then headers["I-Twilio-Idempotency-Token"] = token end
         reqs[#reqs + 1] = wrk.format("POST", path, headers, body)
      end
      i = i + 1
   end
   n = 0
end

function request()
   n = n + 1
   if n > #reqs then n = 1 end
   return reqs[n]
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'WRK {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, ' ..
      '"status_errors": %d, "socket_errors": %d}\n',
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
      latency.max, e.status, e.connect + e.read + e.write + e.timeout))
end
