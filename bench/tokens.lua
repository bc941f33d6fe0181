-- wrk script for bench/run.sh: rotate the tokens of a file (one per line) round-robin through the
-- Authorization header. Requests are formatted once in init(), so the per-request Lua cost is a
-- table lookup (wrk is a single thread; it must not become the bottleneck).
--
--   wrk -t1 -c32 -d10s -s bench/tokens.lua http://127.0.0.1:PORT/api/items -- TOKENS_FILE
--   wrk ... -s bench/tokens.lua http://127.0.0.1:HTTP_PORT/forward-auth -- TOKENS_FILE forward-auth
--
-- With `forward-auth`, each request also describes an original request as nginx `auth_request`
-- sends it to the HTTP door's /forward-auth (src/doors/http.rs): X-Original-Method / -URI,
-- X-Forwarded-Host / -Proto.
local reqs, n, i = {}, 0, 0

function init(args)
  local path = args[1] or error("tokens.lua: pass the token file after --")
  local mode = args[2]
  if mode ~= nil and mode ~= "forward-auth" then error("tokens.lua: unknown mode " .. mode) end
  local f = assert(io.open(path, "r"))
  for line in f:lines() do
    if #line > 0 then
      n = n + 1
      local headers = { ["Authorization"] = "Bearer " .. line }
      if mode == "forward-auth" then
        headers["X-Original-Method"] = "GET"
        headers["X-Original-URI"] = "/api/items"
        headers["X-Forwarded-Host"] = "bench.local"
        headers["X-Forwarded-Proto"] = "http"
      end
      reqs[n] = wrk.format("GET", nil, headers)
    end
  end
  f:close()
  if n == 0 then error("tokens.lua: no tokens in " .. path) end
end

function request()
  i = i + 1
  if i > n then i = 1 end
  return reqs[i]
end
