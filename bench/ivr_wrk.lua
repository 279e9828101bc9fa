-- wrk script of bench/ivr.py: replays pre-signed webhook requests.
--
--   wrk -t N -s bench/ivr_wrk.lua URL -- REQUESTS_FILE N
--
-- REQUESTS_FILE has one request a line: path, X-Twilio-Signature,
-- I-Twilio-Idempotency-Token and the url-encoded form, separated by tabs.
-- Thread k of N replays lines k, k+N, k+2N, ... in turn (each request is sent
-- once before any is repeated).  N must be given again after the file: each
-- thread's init() runs in a Lua state of its own, which does not see what setup()
-- counted in the main one (a thread that found no line of its own sent nothing,
-- and its connections sat open and silent).  done() prints one JSON line for
-- bench/ivr.py.

local count = 0

function setup(thread)
   thread:set("id", count)
   count = count + 1
end

function init(args)
   local nthreads = tonumber(args[2]) or 1
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
   if #reqs == 0 then
      error("thread " .. mine .. " of " .. nthreads .. ": no request of its own in " .. args[1])
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
