-- wrk script for bench/run.sh: rotate the tokens of a file (one per line) round-robin through the
-- Authorization header. Requests are formatted once in init(), so the per-request Lua cost is a
-- table lookup (wrk is a single thread; it must not become the bottleneck).
--
--   wrk -t1 -c32 -d10s -s bench/tokens.lua http://127.0.0.1:PORT/api/items -- TOKENS_FILE
local reqs, n, i = {}, 0, 0

function init(args)
  local path = args[1] or error("tokens.lua: pass the token file after --")
  local f = assert(io.open(path, "r"))
  for line in f:lines() do
    if #line > 0 then
      n = n + 1
      reqs[n] = wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. line })
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
