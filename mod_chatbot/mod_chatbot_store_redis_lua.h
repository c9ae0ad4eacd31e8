/* mod_chatbot_store_redis_lua.h - PRELUDE: the Lua helpers every redis
 * store script begins with (key names, record fields, the LRU and byte
 * accounting, and room(): whom a full store may evict), and TAIL_FN (a
 * turn's context, for lua_vtail and the turn's start). Included only by
 * mod_chatbot_store_redis_lua.c, whose header comment lists the keys.
 */
#ifndef MOD_CHATBOT_STORE_REDIS_LUA_H
#define MOD_CHATBOT_STORE_REDIS_LUA_H

/* A script is its helpers, then MAIN, then what one call does. The
 * helpers keep nothing of a call but in the values fresh() makes again at
 * MAIN: P the key prefix (ARGV[1]); OWN, AUTH a conversation's o and a,
 * once read; NM its message count, once known; told: id -> 1 counted and
 * published, 2 and its LRU moved, once per script (it is one change;
 * every child hears each c:<id>); EV the evictions' log lines; LIN
 * linear(id), once read (set_parent ends it); DF the conversation hash's
 * writes kept back (DEFER_FN). As a redis function the
 * helpers are made once, when the library is loaded, and only what
 * follows MAIN runs per call (rs_lua_split); as an EVAL script, all of it.
 * No helper reads ARGV. MAIN_RO instead of MAIN: the script only reads,
 * and its function says so (no-writes), so that a redis over its
 * maxmemory, which refuses every function that may write, still runs it. */
#define MAIN RS_LUA_MAIN_MARK "fresh(ARGV)\n"
#define MAIN_RO RS_LUA_MAIN_RO_MARK "fresh(ARGV)\n"

/* Writes to one conversation's hash kept back and sent as one HSET
 * (lua_turn: a turn's start or finish wrote its hash up to six times).
 * defer(id, v) begins it, v the fields k, by, sq as read; cset (fields
 * and values) and cincr (which returns the new value, as HINCRBY would)
 * write, kept back for DF.id, at once for any other conversation; cflush
 * sends what was kept back. Whatever reads the hash whole sends them first (info);
 * deleting the conversation sends them and keeps nothing back after
 * (del_conv); the script sends them before it returns, also when a step
 * failed (lua_turn: pcall). A script that does not call defer writes at
 * once. The fields go in a fixed order (DFK), so that the command is the
 * same every run. */
#define DEFER_FN                                                                         \
    "local DFK = {'s','g','st','q','gt','k','by','sq','u','f'}\n"                        \
    "local function defer(id, v)\n"                                                      \
    "  DF = {id = id, v = {k = tonumber(v[1]) or 0, by = tonumber(v[2]) or 0,\n"         \
    "                      sq = tonumber(v[3]) or 0}, w = {}}\n"                         \
    "end\n"                                                                              \
    "local function cset(id, ...)\n" /* field, value, ... */                             \
    "  if DF and DF.id == id then\n"                                                     \
    "    local a = {...}\n"                                                              \
    "    for i = 1, #a, 2 do DF.w[a[i]] = a[i + 1] end\n"                                \
    "  else redis.call('HSET', ckey(id), ...) end\n"                                     \
    "end\n"                                                                              \
    "local function cincr(id, k, d)\n"                                                   \
    "  if DF and DF.id == id then\n"                                                     \
    "    local x = DF.v[k] + d\n"                                                        \
    "    DF.v[k], DF.w[k] = x, x\n"                                                      \
    "    return x\n"                                                                     \
    "  end\n"                                                                            \
    "  return redis.call('HINCRBY', ckey(id), k, d)\n"                                   \
    "end\n"                                                                              \
    "local function cflush()\n"                                                          \
    "  if not DF then return end\n"                                                      \
    "  local a = {}\n"                                                                   \
    "  for _, k in ipairs(DFK) do\n"                                                     \
    "    local x = DF.w[k]\n"                                                            \
    "    if x ~= nil then a[#a + 1] = k; a[#a + 1] = x end\n"                            \
    "  end\n"                                                                            \
    "  if #a > 0 then redis.call('HSET', ckey(DF.id), unpack(a)) end\n"                  \
    "  DF.w = {}\n"                                                                      \
    "end\n"

#define PRELUDE                                                                          \
    "local P, OWN, AUTH, NM, told, EV, LIN, DF\n"                                        \
    "local function fresh(a)\n"                                                          \
    "  P, OWN, AUTH, NM, told, EV, LIN, DF = a[1], {}, {}, {}, {}, {}, {}, nil\n"        \
    "end\n"                                                                              \
    "local function ckey(id) return P..'c:'..id end\n" DEFER_FN                          \
    "local function pub(k, m) redis.call('PUBLISH', P..'ev:'..string.sub(k, 1, 3), m) "  \
    "end\n" /* k's shard channel (mod_chatbot_store_redis.h) */                          \
    "local function mkey(id) return P..'m:'..id end\n"                                   \
    "local function xkey(id, n) return P..'x:'..id..':'..n end\n"                        \
    "local function hdr(e)\n"                                                            \
    "  local r, f, ts, n = string.match(e, '^(%d+):(%d+):(%d+):(%d+)$')\n"               \
    "  return r, tonumber(f), ts, n\n"                                                   \
    "end\n"                                                                              \
    "local function acct(o, id, d)\n"                                                    \
    "  if d ~= 0 then\n"                                                                 \
    "    local v = AUTH[id]\n"                                                           \
    "    if v == nil then v = redis.call('HGET', ckey(id), 'a'); AUTH[id] = v end\n"     \
    "    cincr(id, 'by', d)\n"                                                           \
    "    if redis.call('HINCRBY', P..'ub', o, d) <= 0 then redis.call('HDEL', P..'ub', " \
    "o) end\n"                                                                           \
    "    redis.call('INCRBY', P..'bytes', d)\n"                                          \
    "    if v == '0' then redis.call('INCRBY', P..'ab', d) end\n"                        \
    "  end\n"                                                                            \
    "end\n"                                                                              \
    "local function changed(id, now)\n"                                                  \
    "  local t = told[id]\n"                                                             \
    "  if not t then\n"                                                                  \
    "    cincr(id, 'sq', 1)\n"                                                           \
    "    pub(id, 'c:'..id)\n"                                                            \
    "    told[id] = 1\n"                                                                 \
    "  end\n"                                                                            \
    "  if now and t ~= 2 then\n"                                                         \
    "    local o = OWN[id] or redis.call('HGET', ckey(id), 'o')\n"                       \
    "    cset(id, 'u', now)\n"                                                           \
    "    redis.call('ZADD', P..'u:'..o, now, id)\n"                                      \
    "    redis.call('ZADD', P..'all', now, id)\n"                                        \
    "    told[id] = 2\n"                                                                 \
    "  end\n"                                                                            \
    "end\n"                                                                              \
    "local function del_conv(id)\n"                                                      \
    "  if DF and DF.id == id then cflush(); DF = nil end\n"                              \
    "  local c = ckey(id)\n"                                                             \
    "  local v = redis.call('HMGET', c, 'o', 'by', 'a')\n"                               \
    "  local o = v[1]\n"                                                                 \
    "  for _, e in ipairs(redis.call('LRANGE', mkey(id), 0, -1)) do\n"                   \
    "    local _, _, _, n = hdr(e)\n"                                                    \
    "    if n then redis.call('DEL', xkey(id, n)) end\n"                                 \
    "  end\n"                                                                            \
    "  if o then\n" /* 0 - by, not -by: -0 is sent as "-0", which HINCRBY refuses (an    \
                     * empty conversation could not be deleted, evicted nor swept) */    \
    "    local nby = 0 - tonumber(v[2] or '0')\n"                                        \
    "    if redis.call('HINCRBY', P..'ub', o, nby) <= 0 then redis.call('HDEL', "        \
    "P..'ub', o) end\n"                                                                  \
    "    redis.call('INCRBY', P..'bytes', nby)\n"                                        \
    "    if v[3] == '0' then\n"                                                          \
    "      redis.call('INCRBY', P..'ab', nby)\n"                                         \
    "      redis.call('DECR', P..'an')\n"                                                \
    "    end\n"                                                                          \
    "    redis.call('ZREM', P..'u:'..o, id)\n"                                           \
    "    pub(o, 'u:'..o)\n"                                                              \
    "  end\n"                                                                            \
    "  redis.call('DEL', c, mkey(id), P..'pv:'..id)\n"                                   \
    "  NM[id] = nil\n"                                                                   \
    "  redis.call('ZREM', P..'all', id)\n"                                               \
    "  redis.call('SREM', P..'gen', id)\n"                                               \
    "  pub(id, 'c:'..id)\n"                                                              \
    "end\n"                                                                              \
    "local function evict(id, why)\n"                                                    \
    "  local v = redis.call('HMGET', ckey(id), 'b', 'by')\n"                             \
    "  table.insert(EV, string.format('%s (bot %s, %d messages, %d bytes) to make "      \
    "room%s',\n"                                                                         \
    "    id, v[1] or '', redis.call('LLEN', mkey(id)), tonumber(v[2] or '0'), why))\n"   \
    "  del_conv(id)\n"                                                                   \
    "  redis.call('INCR', P..'evictions')\n"                                             \
    "end\n"                                                                              \
    "local function evict_own(o, keep, why)\n"                                           \
    "  local z = P..'u:'..o\n"                                                           \
    "  for _, id in ipairs(redis.call('ZRANGE', z, 0, 127)) do\n"                        \
    "    if id ~= keep then\n"                                                           \
    "      local s = redis.call('HGET', ckey(id), 's')\n"                                \
    "      if not s then\n"                                                              \
    "        redis.call('ZREM', z, id)\n"                                                \
    "        redis.call('ZREM', P..'all', id)\n"                                         \
    "        return 1\n"                                                                 \
    "      elseif s == '0' then\n"                                                       \
    "        evict(id, why)\n"                                                           \
    "        return 1\n"                                                                 \
    "      end\n"                                                                        \
    "    end\n"                                                                          \
    "  end\n"                                                                            \
    "  return 0\n"                                                                       \
    "end\n" /* a version not chosen (ALT) that goes: its children, which become          \
             * roots, were off the active path and are marked to stay off it             \
             * (the shm store: cs_msg_drop_oldest); a message without an entry in        \
             * pv:<id> follows the one before it in the list */                          \
    "local ALT = 8192\n"                                                                 \
    "local function off_path(id, n)\n"                                                   \
    "  local m = mkey(id)\n"                                                             \
    "  local raw = redis.call('HGETALL', P..'pv:'..id)\n"                                \
    "  local pvm = {}\n"                                                                 \
    "  for i = 1, #raw, 2 do pvm[raw[i]] = raw[i + 1] end\n"                             \
    "  local prev = n\n"                                                                 \
    "  for i, e in ipairs(redis.call('LRANGE', m, 0, -1)) do\n"                          \
    "    local r, f, ts, k = hdr(e)\n"                                                   \
    "    if (pvm[k] or prev) == n and bit.band(f, ALT) == 0 then\n"                      \
    "      redis.call('LSET', m, i - 1, r..':'..bit.bor(f, ALT)..':'..ts..':'..k)\n"     \
    "    end\n"                                                                          \
    "    prev = k\n"                                                                     \
    "  end\n"                                                                            \
    "end\n"                                                                              \
    "local function drop_oldest(o, id, keep)\n"                                          \
    "  local m = mkey(id)\n"                                                             \
    "  if (NM[id] or redis.call('LLEN', m)) <= keep then return 0 end\n"                 \
    "  local _, f, _, n = hdr(redis.call('LPOP', m))\n"                                  \
    "  if bit.band(f, ALT) ~= 0 then off_path(id, n) end\n"                              \
    "  if NM[id] then NM[id] = NM[id] - 1 end\n"                                         \
    "  local k = xkey(id, n)\n"                                                          \
    "  acct(o, id, -redis.call('STRLEN', k))\n"                                          \
    "  redis.call('DEL', k)\n"                                                           \
    "  return 1\n"                                                                       \
    "end\n" /* room: makes need of res ('n' conversations, 'b' text bytes) free          \
             * under limit for owner o (anon: an anonymous caller), never taking         \
             * self, as the shm store does (chat_store_evict.c): the least recently      \
             * used idle conversation of an identity that holds at least as much as      \
             * o will after the request, else o's own; an anonymous caller never         \
             * takes an authenticated identity's; an authenticated caller takes          \
             * anonymous ones first, and any of them, whatever their size, while         \
             * anonymous identities hold more than their share. The victims are          \
             * looked for among the SCAN least recently used conversations and o's       \
             * own; drop() frees o's own oldest message (at most droppable in all: a     \
             * number, or a function asked only when the store is full).                 \
             * If all of that cannot make room, nothing is touched. -> evicted,          \
             * done */                                                                   \
    "local SCAN = 1024\n"                                                                \
    "local function usage(res, x)\n"                                                     \
    "  if res == 'n' then return redis.call('ZCARD', P..'u:'..x) end\n"                  \
    "  return tonumber(redis.call('HGET', P..'ub', x) or '0')\n"                         \
    "end\n"                                                                              \
    "local function used(res)\n"                                                         \
    "  if res == 'n' then return redis.call('ZCARD', P..'all') end\n"                    \
    "  return tonumber(redis.call('GET', P..'bytes') or '0')\n"                          \
    "end\n"                                                                              \
    "local function anon_over(res, limit, share)\n"                                      \
    "  if share >= 100 then return false end\n"                                          \
    "  local a = tonumber(redis.call('GET', P..(res == 'n' and 'an' or 'ab')) or '0')\n" \
    "  return a * 100 > limit * share\n"                                                 \
    "end\n"                                                                              \
    "local function room(res, o, anon, self, need, limit, share, drop, droppable)\n"     \
    "  local have = limit - used(res)\n"                                                 \
    "  if have >= need then return 0, true end\n"                                        \
    "  local want = usage(res, o) + need\n"                                              \
    "  local reclaim = not anon and anon_over(res, limit, share)\n"                      \
    "  local best = anon and 2 or 0\n"                                                   \
    "  local cand, seen, use = {{}, {}, {}, {}}, {}, {}\n"                               \
    "  local found, top = 0, 0\n"                                                        \
    "  local function ok(vo, va)\n"                                                      \
    "    if vo == o then return true end\n"                                              \
    "    if use[vo] == nil then use[vo] = usage(res, vo) end\n"                          \
    "    return use[vo] >= want or (reclaim and va)\n"                                   \
    "  end\n"                                                                            \
    "  for _, id in ipairs(redis.call('ZRANGE', P..'all', 0, SCAN - 1)) do\n"            \
    "    if id ~= self then\n"                                                           \
    "      local v = redis.call('HMGET', ckey(id), 's', 'a', 'o', 'by')\n"               \
    "      if not v[1] then\n" /* a stale entry would count as a place taken */          \
    "        redis.call('ZREM', P..'all', id)\n"                                         \
    "        have = limit - used(res)\n"                                                 \
    "      elseif v[1] == '0' and not (anon and v[2] == '1') and ok(v[3], v[2] == '0') " \
    "then\n"                                                                             \
    "        local pref = ((not anon and v[2] == '0') and 0 or 2) + (v[3] == o and 1 "   \
    "or 0)\n"                                                                            \
    "        local sz = res == 'n' and 1 or tonumber(v[4] or '0')\n"                     \
    "        table.insert(cand[pref + 1], id)\n"                                         \
    "        seen[id] = true\n"                                                          \
    "        found = found + sz\n"                                                       \
    "        if pref == best then\n"                                                     \
    "          top = top + sz\n"                                                         \
    "          if have + top >= need then break end\n"                                   \
    "        end\n"                                                                      \
    "      end\n"                                                                        \
    "    end\n"                                                                          \
    "  end\n"                                                                            \
    "  for _, id in ipairs(redis.call('ZRANGE', P..'u:'..o, 0, SCAN - 1)) do\n"          \
    "    if id ~= self and not seen[id] then\n"                                          \
    "      local v = redis.call('HMGET', ckey(id), 's', 'by')\n"                         \
    "      if v[1] == '0' then\n"                                                        \
    "        table.insert(cand[4], id)\n"                                                \
    "        found = found + (res == 'n' and 1 or tonumber(v[2] or '0'))\n"              \
    "      end\n"                                                                        \
    "    end\n"                                                                          \
    "  end\n"                                                                            \
    "  if type(droppable) == 'function' then droppable = droppable() end\n"              \
    "  if have + found + droppable < need then return 0, false end\n"                    \
    "  local ev = 0\n"                                                                   \
    "  for p = 1, 4 do\n"                                                                \
    "    for _, id in ipairs(cand[p]) do\n"                                              \
    "      if have >= need then return ev, true end\n"                                   \
    "      local v = redis.call('HMGET', ckey(id), 's', 'a', 'o')\n"                     \
    "      if v[1] == '0' then\n"                                                        \
    "        want = usage(res, o) + need\n"                                              \
    "        reclaim = not anon and anon_over(res, limit, share)\n"                      \
    "        use[v[3]] = nil\n"                                                          \
    "        if ok(v[3], v[2] == '0') then\n"                                            \
    "          evict(id, v[3] == o and \" (its owner's own)\" or '')\n"                  \
    "          ev = ev + 1\n"                                                            \
    "          have = limit - used(res)\n"                                               \
    "        end\n"                                                                      \
    "      end\n"                                                                        \
    "    end\n"                                                                          \
    "  end\n"                                                                            \
    "  while have < need do\n"                                                           \
    "    if drop() == 0 then return ev, false end\n"                                     \
    "    have = limit - used(res)\n"                                                     \
    "  end\n"                                                                            \
    "  return ev, true\n"                                                                \
    "end\n" /* flags of the last message (answer: only an unfinished answer) */          \
    "local function last_flags(id, set, clear, answer)\n"                                \
    "  local last = redis.call('LINDEX', mkey(id), -1)\n"                                \
    "  if not last then return false end\n"                                              \
    "  local r, f, ts, n = hdr(last)\n"                                                  \
    "  if answer and (r ~= '2' or bit.band(f, 1) ~= 0) then return true end\n"           \
    "  f = bit.band(bit.bor(f, set), bit.bnot(clear))\n"                                 \
    "  redis.call('LSET', mkey(id), -1, r..':'..f..':'..ts..':'..n)\n"                   \
    "  return true\n"                                                                    \
    "end\n"                                                                              \
    "local function gen_done(id)\n"                                                      \
    "  cset(id, 's', 0, 'g', '0', 'q', 0, 'st', 0)\n"                                    \
    "  redis.call('SREM', P..'gen', id)\n"                                               \
    "end\n"                                                                              \
    "local FM = {'b','t','f','s','q','c','u','by','sq','g','st','mt'}\n"                 \
    "local function model_of(mt)\n" /* chat_settings_parse's model line */               \
    "  local m = ''\n"                                                                   \
    "  for ln in string.gmatch(mt or '', '([^\\n]*)\\n') do\n"                           \
    "    if string.sub(ln, 1, 7) == 'system=' then break end\n"                          \
    "    if string.sub(ln, 1, 6) == 'model=' then m = string.sub(ln, 7) end\n"           \
    "  end\n"                                                                            \
    "  return m\n"                                                                       \
    "end\n"                                                                              \
    "local function info(id)\n"                                                          \
    "  if DF and DF.id == id then cflush() end\n"                                        \
    "  local v = redis.call('HMGET', ckey(id), unpack(FM))\n"                            \
    "  if not v[1] then return nil end\n"                                                \
    "  local mt = table.remove(v)\n"                                                     \
    "  table.insert(v, NM[id] or redis.call('LLEN', mkey(id)))\n"                        \
    "  table.insert(v, model_of(mt))\n"                                                  \
    "  return v\n"                                                                       \
    "end\n"                                                                              \
    "local function owned(id, o)\n"                                                      \
    "  return redis.call('HGET', ckey(id), 'o') == o\n"                                  \
    "end\n" /* what drop_oldest(o, id, keep) can free in all */                          \
    "local function droppable(id, keep)\n"                                               \
    "  local v = redis.call('HMGET', ckey(id), 'by', 'mt')\n"                            \
    "  local d = tonumber(v[1] or '0') - #(v[2] or '')\n"                                \
    "  if keep > 0 then\n"                                                               \
    "    local last = redis.call('LINDEX', mkey(id), -1)\n"                              \
    "    if last then\n"                                                                 \
    "      local _, _, _, n = hdr(last)\n"                                               \
    "      d = d - redis.call('STRLEN', xkey(id, n))\n"                                  \
    "    end\n"                                                                          \
    "  end\n"                                                                            \
    "  return math.max(0, d)\n"                                                          \
    "end\n"

/* tail_of(id, maxm, maxb, skip): the context of a turn (chat_store_msg_tail)
 * of a linear conversation, read from its end only: {0, first_index, hdr,
 * text, ...} as lua_read (the headers as stored: in a linear conversation
 * each message's parent is the one before it, which the caller assumes
 * when a header has no parent), the messages from the oldest one the
 * context takes to the last. Which is the oldest follows the shm store's
 * rule (cs_ver_tail): newest first, messages with a skip flag passed over
 * (the caller skips them too), at most maxm, and maxb bytes of text except
 * for the newest, which is taken whatever its size. The headers are read
 * in chunks from the end (maxm, doubling up to 256: a second chunk only if
 * the first held skipped messages), each chunk's texts with one MGET: a
 * turn's read does not grow with the conversation. */
#define TAIL_FN                                                                          \
    "local function tail_of(id, maxm, maxb, skip)\n"                                     \
    "  local m = mkey(id)\n"                                                             \
    "  local hi = (NM[id] or redis.call('LLEN', m)) - 1\n"                               \
    "  if maxm <= 0 then return {0, hi + 1} end\n"                                       \
    "  local chunk = math.min(maxm, 256)\n"                                              \
    "  local sh, st, from, used, taken, full = {}, {}, hi + 1, 0, 0, false\n"            \
    "  while hi >= 0 and not full do\n"                                                  \
    "    local lo = math.max(0, hi - chunk + 1)\n"                                       \
    "    local hs = redis.call('LRANGE', m, lo, hi)\n"                                   \
    "    local ks, fs = {}, {}\n" /* each header parsed once, for its flags and number   \
                                     only */                                             \
    "    for k = 1, #hs do\n"                                                            \
    "      local f, n = string.match(hs[k], '^%d+:(%d+):%d+:(%d+)$')\n"                  \
    "      fs[k] = tonumber(f)\n"                                                        \
    "      ks[k] = xkey(id, n or 'x')\n"                                                 \
    "    end\n"                                                                          \
    "    local xs = #ks > 0 and redis.call('MGET', unpack(ks)) or {}\n"                  \
    "    for k = #hs, 1, -1 do\n"                                                        \
    "      local f, t = fs[k], xs[k] or ''\n"                                            \
    "      if f and bit.band(f, skip) == 0 then\n"                                       \
    "        if taken > 0 and used + #t > maxb then\n"                                   \
    "          full = true\n"                                                            \
    "          break\n"                                                                  \
    "        end\n"                                                                      \
    "        used, taken, from = used + #t, taken + 1, lo + k - 1\n"                     \
    "      end\n"                                                                        \
    "      sh[lo + k - 1], st[lo + k - 1] = hs[k], t\n"                                  \
    "      if taken >= maxm then\n" /* full: no older one is read */                     \
    "        full = true\n"                                                              \
    "        break\n"                                                                    \
    "      end\n"                                                                        \
    "    end\n"                                                                          \
    "    hi = lo - 1\n"                                                                  \
    "    chunk = math.min(chunk * 2, 256)\n"                                             \
    "  end\n"                                                                            \
    "  local out, i, j = {0, from}, from, 2\n"                                           \
    "  while sh[i] do\n"                                                                 \
    "    out[j + 1], out[j + 2] = sh[i], st[i]\n"                                        \
    "    i, j = i + 1, j + 2\n"                                                          \
    "  end\n"                                                                            \
    "  return out\n"                                                                     \
    "end\n"

#endif /* MOD_CHATBOT_STORE_REDIS_LUA_H */
