-- POST /orders, two lines, each request with the next user's token (one per line of the file in args[1]).
local tokens = {}
local next_token = 0
local body = '{"items":[{"sku":"BENCH-BOOK","quantity":2,"unit_price":1250},'
  .. '{"sku":"BENCH-PEN","quantity":1,"unit_price":499}],"currency":"EUR"}'

function init(args)
  for line in io.lines(args[1]) do
    tokens[#tokens + 1] = line
  end
  next_token = math.random(#tokens) - 1
end

function request()
  next_token = (next_token + 1) % #tokens
  local headers = {["Authorization"] = "Bearer " .. tokens[next_token + 1], ["Content-Type"] = "application/json"}
  return wrk.format("POST", "/orders", headers, body)
end
