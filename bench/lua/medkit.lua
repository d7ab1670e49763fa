-- wrk script for OpenMEDKit benchmarks.
--   wrk -s bench/lua/medkit.lua URL -- METHOD PATH DEPTH TOKEN_FILE BODY_KIND
-- DEPTH: requests per pipelined batch (1 = no pipelining).
-- TOKEN_FILE: one Authorization header value per line ("<client_id> <jwt>"), or "-".
-- BODY_KIND: none | state (a small viewer-state object) | patch (an RFC 6902 replace).
-- A pool of 1000 pre-formatted requests is built in init() and cycled through, so the load
-- generator spends no time formatting (and with several tokens the writes hit distinct docs).
local pool = {}
local next_index = 0

local function body_for(kind, i)
  if kind == "state" then
    return '{"score":' .. i .. ',"name":"viewer ' .. i .. '","flags":[true,false]}'
  elseif kind == "patch" then
    return '[{"op":"replace","path":"/counter","value":' .. i .. '}]'
  end
  return nil
end

function init(args)
  local method, path = args[1], args[2]
  local depth = tonumber(args[3] or "1")
  local token_file, kind = args[4] or "-", args[5] or "none"
  local tokens = {}
  if token_file ~= "-" then
    for line in io.lines(token_file) do tokens[#tokens + 1] = line end
  end
  for i = 1, 1000 do
    local parts = {}
    for d = 1, depth do
      local n = (i - 1) * depth + d
      local headers = {}
      if #tokens > 0 then headers["Authorization"] = tokens[(n % #tokens) + 1] end
      local body = body_for(kind, n)
      if body then headers["Content-Type"] = "application/x-www-form-urlencoded; charset=UTF-8" end
      parts[d] = wrk.format(method, path, headers, body)
    end
    pool[i] = table.concat(parts)
  end
end

function request()
  next_index = next_index % #pool + 1
  return pool[next_index]
end
