-- words.lua: a string- and table-heavy Lua 5.4 workload for the override
-- tests and bench/programs.sh (the same steps as words.pl). Generates text
-- from a fixed pseudo-random sequence, counts words and bigrams, builds and
-- rewrites strings, sorts, and builds nested tables; prints results that
-- depend only on the data (every table is walked in sorted order), so the
-- output is identical under every allocator.
-- usage: lua5.4 words.lua [LINES] (default 100000)

local lines = tonumber(arg[1]) or 100000
local syl = { "ka", "lo", "mi", "ne", "qua", "ru", "sto", "ti", "vel", "xo",
              "zan", "ber", "chi", "dor", "eph", "fun", "gli", "hos" }
local seed = 12345
local function rnd(n)
  seed = (seed * 1103515245 + 12345) % 2147483648
  return (seed >> 8) % n
end
local function cksum(h, s)
  for i = 1, #s do h = (h * 31 + s:byte(i)) & 0xffffffff end
  return h
end
local function sorted_keys(t)
  local k = {}
  for key in pairs(t) do k[#k + 1] = key end
  table.sort(k)
  return k
end

-- 1. Text.
local text = {}
for l = 1, lines do
  local w = {}
  for i = 1, 12 do
    local n = 1 + rnd(3)
    if rnd(100) == 0 then n = n + 10 + rnd(40) end
    local parts = {}
    for j = 1, n do parts[j] = syl[rnd(#syl) + 1] end
    w[i] = table.concat(parts)
  end
  text[l] = table.concat(w, " ")
end

-- 2. Word and bigram counts.
local count, bigram, first = {}, {}, {}
local distinct, total, nbigram = 0, 0, 0
for _, line in ipairs(text) do
  local w = {}
  for word in line:gmatch("%S+") do w[#w + 1] = word end
  for i = 1, #w do
    local c = count[w[i]]
    if not c then distinct = distinct + 1 end
    count[w[i]] = (c or 0) + 1
    total = total + 1
    if i < #w then
      local b = w[i] .. " " .. w[i + 1]
      if not bigram[b] then nbigram = nbigram + 1 end
      bigram[b] = (bigram[b] or 0) + 1
    end
    if (i - 1) % 5 == 0 then
      local f = w[i]:sub(1, 1)
      local list = first[f]
      if not list then list = {}; first[f] = list end
      list[#list + 1] = w[i]
    end
  end
end
print(string.format("lines=%d words=%d distinct=%d bigrams=%d", lines, total, distinct, nbigram))

-- 3. The most frequent words and bigrams (count descending, then by text).
local function top(t, n)
  local k = {}
  for key in pairs(t) do k[#k + 1] = key end
  table.sort(k, function(a, b)
    if t[a] ~= t[b] then return t[a] > t[b] end
    return a < b
  end)
  local out = {}
  for i = 1, n do out[i] = k[i] .. "=" .. t[k[i]] end
  return out
end
print("top: " .. table.concat(top(count, 10), " "))
print("top bigrams: " .. table.concat(top(bigram, 5), ", "))

-- 4. String building: a long string rewritten a few ways.
local big = table.concat(text, "\n")
local up = big:gsub("%f[%w](%w)(%w*)", function(a, b) return a:upper() .. b end)
local sub = big:gsub("ka", "<ka>"):gsub("lo", "<lo>")
local head = {}
for word in big:sub(1, 2000000):gmatch("[^ ]+") do head[#head + 1] = word end
local rev = {}
for i = #head, 1, -1 do rev[#rev + 1] = head[i] end
rev = table.concat(rev, " ")
local cat = {}
for _, k in ipairs(sorted_keys(count)) do cat[#cat + 1] = string.format("%s:%d;", k, count[k]) end
cat = table.concat(cat)
print(string.format("len=%d upper=%08x sub=%d/%08x rev=%08x cat=%d/%08x", #big, cksum(0, up:sub(1, 300000)),
  #sub, cksum(0, sub:sub(-300000)), cksum(0, rev:sub(1, 300000)), #cat, cksum(0, cat)))

-- 5. Nested structures: per first letter, records of words sorted by
-- length then text.
local groups = {}
for _, k in ipairs(sorted_keys(first)) do
  local seen, recs = {}, {}
  for _, w in ipairs(first[k]) do
    if not seen[w] then
      seen[w] = true
      recs[#recs + 1] = { word = w, n = count[w], len = #w }
    end
  end
  table.sort(recs, function(a, b)
    if a.len ~= b.len then return a.len < b.len end
    return a.word < b.word
  end)
  local g = { recs = recs, sum = 0, longest = recs[#recs].word }
  for _, r in ipairs(recs) do g.sum = g.sum + r.n end
  groups[k] = g
end
local gh = 0
for _, k in ipairs(sorted_keys(groups)) do
  local g = groups[k]
  local parts = {}
  for i, r in ipairs(g.recs) do parts[i] = r.word .. "/" .. r.n end
  gh = cksum(gh, table.concat(parts, ","))
  print(string.format("group %s: %d words, sum %d, longest %d", k, #g.recs, g.sum, #g.longest))
end
print(string.format("groups=%08x", gh))

-- 6. Churn: delete rare words, re-add them under another key, repeat.
for round = 1, 3 do
  local rare = {}
  for k, v in pairs(count) do if v <= round then rare[#rare + 1] = k end end
  for _, k in ipairs(rare) do count[k] = nil end
  for _, k in ipairs(rare) do count[k .. "#" .. round] = #k end
  collectgarbage("step")
end
local ch, nkeys = 0, 0
for _, k in ipairs(sorted_keys(count)) do
  ch = cksum(ch, k .. "=" .. count[k])
  nkeys = nkeys + 1
end
print(string.format("after churn: %d keys, %08x", nkeys, ch))
