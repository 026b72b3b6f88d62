-- wrk script: POST one body on every request.
-- Usage: wrk ... -s post.lua <url> -- <body file> <content type> [<header name> <header value>]
-- The request is formatted once per thread, so the script adds no per-request work.

local request_bytes

function init(args)
  local file = assert(io.open(args[1], "rb"))
  local body = file:read("*a")
  file:close()
  local headers = { ["Content-Type"] = args[2] }
  if args[3] ~= nil then
    headers[args[3]] = args[4]
  end
  request_bytes = wrk.format("POST", nil, headers, body)
end

function request()
  return request_bytes
end
