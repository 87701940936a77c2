-- One wrk script for every system, so raftsafe, etcd and OpenBao see the same load generator,
-- the same key distribution and the same value size.
--
-- Environment (read once per wrk thread):
--   BENCH_SYSTEM  raftsafe | etcd | vault
--   BENCH_OP      put | get
--   BENCH_KEYS    keys to spread the load over (default 10000); key i is "bench/k<i>"
--   BENCH_VALUE   value size in bytes (default 256)
--   BENCH_TOKEN   raftsafe's bearer token, or the Vault token (vault)
--
-- raftsafe: PUT /api/v1/secrets/bench/k<i> {"data":{"v":"xxx…"}} and GET of the same path
-- (a linearizable read through the read index, like every raftsafe GET).
-- etcd (3.4's JSON gateway): POST /v3/kv/put {"key","value"} and POST /v3/kv/range {"key"},
-- whose default is a linearizable read too.
-- vault (Vault's KV v2 API at the mount secret/: OpenBao, or raftsafe's /v1/ dialect):
-- POST /v1/secret/data/bench/k<i> {"data":{"v":"xxx…"}} and GET of the same path, with
-- the token in X-Vault-Token. What a GET through a non-leader means depends on the server:
-- raftsafe runs the read index; an OpenBao standby may answer from its own copy.
--
-- done() prints one machine-readable line that benches/compare.sh parses:
--   RESULT rps=<n> p50_ms=<n> p90_ms=<n> p99_ms=<n> p999_ms=<n> requests=<n> errors=<n>

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function b64(data)
  return ((data:gsub(".", function(x)
    local r, byte = "", x:byte()
    for i = 8, 1, -1 do r = r .. (byte % 2 ^ i - byte % 2 ^ (i - 1) > 0 and "1" or "0") end
    return r
  end) .. "0000"):gsub("%d%d?%d?%d?%d?%d?", function(x)
    if #x < 6 then return "" end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return b64chars:sub(c + 1, c + 1)
  end) .. ({ "", "==", "=" })[#data % 3 + 1])
end

local system, op, keys, value, token
local requests_by_key = {}

local value_b64

local function make(i)
  local key = "bench/k" .. i
  if system == "etcd" then
    if op == "put" then
      return wrk.format("POST", "/v3/kv/put", { ["Content-Type"] = "application/json" },
        '{"key":"' .. b64(key) .. '","value":"' .. value_b64 .. '"}')
    end
    return wrk.format("POST", "/v3/kv/range", { ["Content-Type"] = "application/json" },
      '{"key":"' .. b64(key) .. '"}')
  end
  if system == "vault" then
    local headers = { ["X-Vault-Token"] = token, ["Content-Type"] = "application/json" }
    if op == "put" then
      return wrk.format("POST", "/v1/secret/data/" .. key, headers, '{"data":{"v":"' .. value .. '"}}')
    end
    return wrk.format("GET", "/v1/secret/data/" .. key, { ["X-Vault-Token"] = token })
  end
  local headers = { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json" }
  if op == "put" then
    return wrk.format("PUT", "/api/v1/secrets/" .. key, headers, '{"data":{"v":"' .. value .. '"}}')
  end
  return wrk.format("GET", "/api/v1/secrets/" .. key, headers)
end

function init(args)
  system = os.getenv("BENCH_SYSTEM") or "raftsafe"
  op = os.getenv("BENCH_OP") or "put"
  keys = tonumber(os.getenv("BENCH_KEYS") or "10000")
  value = string.rep("x", tonumber(os.getenv("BENCH_VALUE") or "256"))
  token = os.getenv("BENCH_TOKEN") or ""
  -- Different threads must not walk the same key sequence.
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
  value_b64 = b64(value)
  -- Pre-build every request so the Lua side costs nothing next to the servers (above 100k
  -- keys they are built on demand, to keep wrk's memory small).
  if keys <= 100000 then
    for i = 1, keys do requests_by_key[i] = make(i) end
  end
end

local function get(i)
  return requests_by_key[i] or make(i)
end

function request()
  return get(math.random(keys))
end

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout
  io.write(string.format(
    "RESULT rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f requests=%d errors=%d\n",
    summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency:percentile(99.9) / 1000,
    summary.requests, errors))
end
