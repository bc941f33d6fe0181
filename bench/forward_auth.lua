-- wrk script for bench/run.sh (BENCH_ONLY=httpdoor): what nginx `auth_request` sends to the HTTP
-- door's /forward-auth — the original request described by X-Original-Method / X-Original-URI and
-- X-Forwarded-Host, the token in Authorization (src/doors/http.rs) — one token of a file per
-- request, round-robin. Requests are formatted once in init(), as in bench/tokens.lua.
--
--   wrk -t1 -c32 -d10s -s bench/forward_auth.lua http://127.0.0.1:HTTP_PORT/forward-auth -- TOKENS_FILE
local reqs, n, i = {}, 0, 0

function init(args)
  local path = args[1] or error("forward_auth.lua: pass the token file after --")
  local f = assert(io.open(path, "r"))
  for line in f:lines() do
    if #line > 0 then
      n = n + 1
      reqs[n] = wrk.format("GET", nil, {
        ["Authorization"] = "Bearer " .. line,
        ["X-Original-Method"] = "GET",
        ["X-Original-URI"] = "/api/items",
        ["X-Forwarded-Host"] = "bench.local",
        ["X-Forwarded-Proto"] = "http",
      })
    end
  end
  f:close()
  if n == 0 then error("forward_auth.lua: no tokens in " .. path) end
end

function request()
  i = i + 1
  if i > n then i = 1 end
  return reqs[i]
end
