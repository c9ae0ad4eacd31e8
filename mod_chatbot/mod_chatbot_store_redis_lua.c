/* mod_chatbot_store_redis_lua.c - the redis store provider's Lua scripts.
 * Every change to the store is one script, so it is atomic across all
 * hosts and children (redis runs a script alone); no operation reads a
 * value into C and writes it back.
 *
 * Key patterns (P = "chatbot:", <o> = 40 hex digits of an owner's SHA-1
 * identity, <id> = a conversation id, 24 hex digits):
 *   P c:<id>       hash   a conversation: o owner, a 1 if authenticated,
 *                         b bot, t title, f flags, s state, q queue
 *                         position, c created ms, u updated ms, by bytes,
 *                         sq change counter, g generating token, st stop
 *                         asked, gt last generation activity ms, k next
 *                         message number, mt the settings blob
 *                         (chat_store_conv_meta_set; its bytes count in by)
 *   P m:<id>       list   its messages, oldest first: "role:flags:ts:n"
 *   P x:<id>:<n>   string the text of message n (APPEND while streaming)
 *   P u:<o>        zset   the owner's conversations by last update (LRU)
 *   P all          zset   every conversation by last update (global LRU)
 *   P gen          set    conversations queued or generating
 *   P ub           hash   bytes stored per owner
 *   P bytes        string bytes stored in all
 *   P evictions    string conversations evicted (counter)
 *   P an, P ab     string conversations and bytes of anonymous identities
 *                         (the share reserved for authenticated ones)
 *   P rl:<o>       hash   the owner's message rate bucket (t micro-tokens, ts)
 *   P cr:<o>       hash   the owner's conversation creation bucket
 *   P ev           channel "c:<id>" conversation changed, "u:<o>" user's
 *                         list changed, "s:<id>" stop asked
 * Times come from the caller (the hosts' clocks, NTP-synchronised), except
 * in the rate buckets, which use redis's TIME so that hosts whose clocks
 * differ still share one exact bucket.
 */
#include "mod_chatbot_store_redis.h"

#include "mod_chatbot_store_redis_lua.h"

/* do_create(o, auth, id, bot, title, now, uq, maxc, share): a new
 * conversation, with the owner's quota (its own least recently used goes)
 * and the global limit (room()) -> {status, evicted: one log line each} */
#define CREATE_FN                                                                        \
    "local function do_create(o, auth, id, bot, title, now, uq, maxc, share)\n"          \
    "local anon = auth == '0'\n"                                                         \
    "local uz = P..'u:'..o\n"                                                            \
    "if uq > 0 then\n"                                                                   \
    "  while redis.call('ZCARD', uz) >= uq do\n"                                         \
    "    if evict_own(o, '', ' (its owner reached the conversation quota)') == 0 then\n" \
    "      return {-43, EV}\n"                                                           \
    "    end\n"                                                                          \
    "  end\n"                                                                            \
    "end\n"                                                                              \
    "local _, done = room('n', o, anon, '', 1, maxc, share, function() return 0 end, "   \
    "0)\n"                                                                               \
    "if not done then return {-41, EV} end\n"                                            \
    "redis.call('HMSET', ckey(id), 'o', o, 'a', auth, 'b', bot, 't', title,\n"           \
    "  'f', 0, 's', 0, 'q', 0, 'c', now, 'u', now, 'by', 0, 'sq', 1, 'g', '0',\n"        \
    "  'st', 0, 'gt', 0, 'k', 0, 'ln', 1)\n"                                             \
    "if anon then redis.call('INCR', P..'an') end\n"                                     \
    "redis.call('ZADD', uz, now, id)\n"                                                  \
    "redis.call('ZADD', P..'all', now, id)\n"                                            \
    "pub(id, 'c:'..id)\n"                                                                \
    "return {0, EV}\n"                                                                   \
    "end\n"

/* ARGV: P owner auth id bot title now quota_convs max_convs share */
static const char lua_create[] = PRELUDE CREATE_FN MAIN
    "return do_create(ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7],\n"
    "  tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10]))\n";

/* The owner's conversation titled exactly title, or (create 1) a new one,
 * in one step (chat_store_conv_find_or_create): the first in this order -
 * neither stopped nor archived, stopped, archived, both - most recently
 * updated first within each.
 * ARGV: P owner auth id bot title now quota_convs max_convs flags create
 *       share
 * -> {1 found | 0 created | 2 none (create 0) | status<0, evicted, id,
 *     fields..., nmsgs} */
static const char lua_titled[] = PRELUDE CREATE_FN MAIN
    "local o, title = ARGV[2], ARGV[6]\n"
    "local best, rank = nil, 4\n"
    "for _, cid in ipairs(redis.call('ZREVRANGE', P..'u:'..o, 0, -1)) do\n"
    "  local v = redis.call('HMGET', ckey(cid), 't', 'f')\n"
    "  if v[1] == title then\n"
    "    local f = tonumber(v[2]) or 0\n"
    "    local r = (bit.band(f, 1) ~= 0 and 2 or 0) + (bit.band(f, 2) ~= 0 and 1 or 0)\n"
    "    if r < rank then best, rank = cid, r end\n"
    "  end\n"
    "end\n"
    "local st, ev = 1, 0\n"
    "if not best then\n"
    "  if ARGV[11] ~= '1' then return {2, 0} end\n"
    "  local r = do_create(o, ARGV[3], ARGV[4], ARGV[5], title, ARGV[7],\n"
    "                      tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[12]))\n"
    "  if r[1] ~= 0 then return r end\n"
    "  best, st, ev = ARGV[4], 0, r[2]\n"
    "  if ARGV[10] ~= '0' then redis.call('HSET', ckey(best), 'f', ARGV[10]) end\n"
    "end\n"
    "local v = info(best)\n"
    "table.insert(v, 1, best)\n"
    "table.insert(v, 1, ev)\n"
    "table.insert(v, 1, st)\n"
    "return v\n";

/* ARGV: P owner id -> {0, fields..., nmsgs} | {-60} */
static const char lua_get[] =
    PRELUDE MAIN_RO "if not owned(ARGV[3], ARGV[2]) then return {-60} end\n"
                    "local v = info(ARGV[3])\n"
                    "table.insert(v, 1, 0)\n"
                    "return v\n";

/* list_of(owner) -> {id, fields..., nmsgs}* most recent first (lua_list,
 * and lua_turn's copy for the tab that lists them next) */
#define LIST_FN                                                                          \
    "local function list_of(o)\n"                                                        \
    "  local uz = P..'u:'..o\n"                                                          \
    "  local out = {}\n"                                                                 \
    "  for _, id in ipairs(redis.call('ZREVRANGE', uz, 0, -1)) do\n"                     \
    "    local v = info(id)\n"                                                           \
    "    if v then\n"                                                                    \
    "      table.insert(out, id)\n"                                                      \
    "      for _, x in ipairs(v) do table.insert(out, x) end\n"                          \
    "    else\n"                                                                         \
    "      redis.call('ZREM', uz, id)\n"                                                 \
    "    end\n"                                                                          \
    "  end\n"                                                                            \
    "  return out\n"                                                                     \
    "end\n"

/* ARGV: P owner -> {id, fields..., nmsgs}* most recent first */
static const char lua_list[] = PRELUDE LIST_FN MAIN "return list_of(ARGV[2])\n";

/* ARGV: P owner id what(t|f) v1 v2 now */
static const char lua_update[] = PRELUDE MAIN
    "local id = ARGV[3]\n"
    "if not owned(id, ARGV[2]) then return -60 end\n"
    "if ARGV[4] == 't' then\n"
    "  redis.call('HSET', ckey(id), 't', ARGV[5])\n"
    "else\n"
    "  local f = tonumber(redis.call('HGET', ckey(id), 'f'))\n"
    "  f = bit.band(bit.bor(f, tonumber(ARGV[5])), bit.bnot(tonumber(ARGV[6])))\n"
    "  redis.call('HSET', ckey(id), 'f', f)\n"
    "end\n"
    "changed(id, ARGV[7])\n"
    "return 0\n";

/* ARGV: P owner id */
static const char lua_delete[] =
    PRELUDE MAIN "local id = ARGV[3]\n"
                 "if not owned(id, ARGV[2]) then return -60 end\n"
                 "if redis.call('HGET', ckey(id), 's') ~= '0' then return -62 end\n"
                 "del_conv(id)\n"
                 "return 0\n";

/* ARGV: P op owner id token state qpos now lease_ms
 * op b begin, s state, e end, r request stop, q stop requested?, x end
 * late (the host could not end it while redis was away): the last answer,
 * unless complete, is marked interrupted */
static const char lua_gen[] = PRELUDE MAIN
    "local op, o, id, tok, now = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[8]\n"
    "local c = ckey(id)\n"
    "local v = redis.call('HMGET', c, 'o', 's', 'g', 'st', 'gt')\n"
    "if not v[1] then return op == 'q' and 0 or -60 end\n"
    "if op == 'q' then return (v[3] == tok and v[4] == '1') and 1 or 0 end\n"
    "OWN[id] = v[1]\n"
    "if (op == 'b' or op == 'r') and v[1] ~= o then return -60 end\n"
    "if op == 'b' then\n"
    "  if v[2] ~= '0' and v[3] ~= tok and\n"
    "     tonumber(now) - tonumber(v[5]) < tonumber(ARGV[9]) then return -62 end\n"
    "  redis.call('HMSET', c, 's', ARGV[6], 'g', tok, 'st', 0, 'q', 0, 'gt', now)\n"
    "  redis.call('SADD', P..'gen', id)\n"
    "  changed(id, now)\n"
    "elseif op == 's' then\n"
    "  if v[3] ~= tok then return -60 end\n"
    "  redis.call('HMSET', c, 's', ARGV[6], 'q', ARGV[7], 'gt', now)\n"
    "  changed(id, nil)\n"
    "elseif op == 'e' or op == 'x' then\n"
    "  if v[3] ~= tok then return -60 end\n"
    "  if op == 'x' then last_flags(id, 2, 16, true) end\n"
    "  gen_done(id)\n"
    "  changed(id, now)\n"
    "elseif op == 'r' then\n"
    "  if v[2] ~= '0' then\n"
    "    redis.call('HSET', c, 'st', 1)\n"
    "    pub(id, 's:'..id)\n"
    "    changed(id, nil)\n"
    "  end\n"
    "end\n"
    "return 0\n";

/* do_append(op, o, id, role, flags, now, text, maxm, maxb, hist, uqb, anon,
 * share): append (op a) or extend (op e) a message, with the message,
 * quota and arena limits (room()) -> {status, evicted: one log line each,
 * index} */
#define APPEND_FN                                                                        \
    "local function do_append(op, o, id, role, flags, now, text, maxm, maxb, hist,\n"    \
    "                         uqb, anon, share)\n"                                       \
    "local c, m = ckey(id), mkey(id)\n"                                                  \
    "if OWN[id] ~= o or AUTH[id] == nil then\n" /* lua_turn read both already */         \
    "  local oa = redis.call('HMGET', c, 'o', 'a')\n"                                    \
    "  if oa[1] ~= o then return {-60, 0, 0} end\n"                                      \
    "  OWN[id], AUTH[id] = o, oa[2]\n"                                                   \
    "end\n"                                                                              \
    "local len = #text\n"                                                                \
    "local n, keep = nil, 0\n"                                                           \
    "if op == 'e' then\n"                                                                \
    "  local last = redis.call('LINDEX', m, -1)\n"                                       \
    "  if not last then return {-2, 0, 0} end\n"                                         \
    "  local _, _, _, nn = hdr(last)\n"                                                  \
    "  n, keep = nn, 1\n"                                                                \
    "  if redis.call('STRLEN', xkey(id, n)) + len > maxb then return {-40, 0, 0} end\n"  \
    "else\n"                                                                             \
    "  if len > maxb then return {-40, 0, 0} end\n"                                      \
    "  local nm = NM[id] or redis.call('LLEN', m)\n"                                     \
    "  while nm >= maxm and nm > 0 do drop_oldest(o, id, 0); nm = nm - 1 end\n"          \
    "end\n"                                                                              \
    "if uqb > 0 and len > 0 then\n"                                                      \
    "  if len > uqb then return {-43, EV, 0} end\n"                                      \
    "  while tonumber(redis.call('HGET', P..'ub', o) or '0') + len > uqb do\n"           \
    "    if evict_own(o, id, ' (its owner reached the history quota)') == 0 and\n"       \
    "       drop_oldest(o, id, keep) == 0 then return {-43, EV, 0} end\n"                \
    "  end\n"                                                                            \
    "end\n"                                                                              \
    "if hist > 0 and len > 0 then\n"                                                     \
    "  local _, done = room('b', o, anon, id, len, hist, share,\n"                       \
    "    function() return drop_oldest(o, id, keep) end,\n"                              \
    "    function() return droppable(id, keep) end)\n"                                   \
    "  if not done then return {-41, EV, 0} end\n"                                       \
    "end\n"                                                                              \
    "local idx = 0\n" /* an extend's index is not read */                                \
    "if op == 'a' then\n"                                                                \
    "  n = cincr(id, 'k', 1)\n"                                                          \
    "  idx = redis.call('RPUSH', m, role..':'..flags..':'..now..':'..n) - 1\n"           \
    "  NM[id] = idx + 1\n"                                                               \
    "end\n"                                                                              \
    "if len > 0 then\n"                                                                  \
    "  redis.call('APPEND', xkey(id, n), text)\n"                                        \
    "  acct(o, id, len)\n"                                                               \
    "end\n"                                                                              \
    "if op == 'e' then\n" /* a token: the LRU moves at the turn's start and end */       \
    "  cset(id, 'gt', now)\n"                                                            \
    "  changed(id, nil)\n"                                                               \
    "else\n"                                                                             \
    "  changed(id, now)\n"                                                               \
    "end\n"                                                                              \
    "return {0, EV, idx}\n"                                                              \
    "end\n"

/* ARGV: P op(a|e) owner id role flags now text max_msgs max_msg_bytes
 *       history_bytes owner_quota_bytes auth share -> {status, evicted,
 *       index} */
static const char lua_append[] = PRELUDE APPEND_FN MAIN
    "return do_append(ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8],\n"
    "  tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12]),\n"
    "  ARGV[13] == '0', tonumber(ARGV[14]))\n";

/* Versions and branches (chat/versions.h): the parent of a message is kept
 * in the hash <P>pv:<id> (message number -> the parent's number, "0" for
 * none); a message without an entry follows the previous one in the list.
 * set_parent writes an entry only for a parent that is not that one, and
 * then ends the conversation's linear state ('ln' 1 in its hash from its
 * creation): while it lasts, no message has a parent of its own, so none
 * has a sibling nor CHAT_MSG_ALT, and the active path is the whole list
 * (active_leaf, lua_branch and lua_vread then read no tree). CHAT_MSG_ALT
 * (8192) in a header's flags marks a version that is not the chosen one.
 * tree() reads a conversation's headers and parents (positions 1..N,
 * parent 0 = none); clean drops the entries of messages no longer kept. */
#define VPRELUDE                                                                         \
    "local function tree(id, clean)\n"                                                   \
    "  local hs = redis.call('LRANGE', mkey(id), 0, -1)\n"                               \
    "  local pvk = P..'pv:'..id\n"                                                       \
    "  local raw = redis.call('HGETALL', pvk)\n"                                         \
    "  local pvm = {}\n"                                                                 \
    "  for i = 1, #raw, 2 do pvm[raw[i]] = raw[i + 1] end\n"                             \
    "  local t = {n = {}, f = {}, r = {}, ts = {}, p = {}, pos = {}, N = #hs}\n"         \
    "  for i, e in ipairs(hs) do\n"                                                      \
    "    local r, f, ts, n = hdr(e)\n"                                                   \
    "    t.r[i], t.f[i], t.ts[i], t.n[i] = r, f, ts, n\n"                                \
    "    t.pos[n] = i\n"                                                                 \
    "  end\n"                                                                            \
    "  for i = 1, t.N do\n"                                                              \
    "    local pn = pvm[t.n[i]]\n"                                                       \
    "    if pn == nil then t.p[i] = i - 1\n"                                             \
    "    elseif pn == '0' then t.p[i] = 0\n"                                             \
    "    else t.p[i] = t.pos[pn] or 0 end\n"                                             \
    "    if t.p[i] >= i then t.p[i] = 0 end\n"                                           \
    "  end\n"                                                                            \
    "  if clean then\n"                                                                  \
    "    for k, _ in pairs(pvm) do\n"                                                    \
    "      if not t.pos[k] then redis.call('HDEL', pvk, k) end\n"                        \
    "    end\n"                                                                          \
    "  end\n"                                                                            \
    "  return t\n"                                                                       \
    "end\n"                                                                              \
    "local function setflags(id, t, i, f)\n"                                             \
    "  if t.f[i] ~= f then\n"                                                            \
    "    t.f[i] = f\n"                                                                   \
    "    redis.call('LSET', mkey(id), i - 1, "                                           \
    "t.r[i]..':'..f..':'..t.ts[i]..':'..t.n[i])\n"                                       \
    "  end\n"                                                                            \
    "end\n"                                                                              \
    "local function choose(id, t, parent, keep)\n"                                       \
    "  for i = 1, t.N do\n"                                                              \
    "    if t.p[i] == parent then\n"                                                     \
    "      if i == keep then setflags(id, t, i, bit.band(t.f[i], bit.bnot(ALT)))\n"      \
    "      else setflags(id, t, i, bit.bor(t.f[i], ALT)) end\n"                          \
    "    end\n"                                                                          \
    "  end\n"                                                                            \
    "end\n"                                                                              \
    "local function linear(id)\n"                                                        \
    "  if LIN[id] == nil then LIN[id] = redis.call('HGET', ckey(id), 'ln') == '1' end\n" \
    "  return LIN[id]\n"                                                                 \
    "end\n"                                                                              \
    "local function active_leaf(id)\n"                                                   \
    "  if linear(id) then\n"                                                             \
    "    local last = redis.call('LINDEX', mkey(id), -1)\n"                              \
    "    if not last then return '0' end\n"                                              \
    "    local _, _, _, n = hdr(last)\n"                                                 \
    "    return n\n"                                                                     \
    "  end\n"                                                                            \
    "  local t = tree(id, true)\n"                                                       \
    "  local cur = 0\n"                                                                  \
    "  for i = 1, t.N do\n"                                                              \
    "    if bit.band(t.f[i], 8192) == 0 and t.p[i] == cur then cur = i end\n"            \
    "  end\n"                                                                            \
    "  return cur > 0 and t.n[cur] or '0'\n"                                             \
    "end\n"                                                                              \
    "local function set_parent(id, pn)\n"                                                \
    "  local two = redis.call('LRANGE', mkey(id), -2, -1)\n"                             \
    "  if #two == 0 then return end\n"                                                   \
    "  local _, _, _, nn = hdr(two[#two])\n"                                             \
    "  local prev = '0'\n"                                                               \
    "  if #two == 2 then local _, _, _, pp = hdr(two[1]); prev = pp end\n"               \
    "  if pn ~= prev then\n"                                                             \
    "    redis.call('HSET', P..'pv:'..id, nn, pn)\n"                                     \
    "    redis.call('HDEL', ckey(id), 'ln')\n"                                           \
    "    LIN[id] = false\n"                                                              \
    "  end\n"                                                                            \
    "end\n"                                                                              \
    "local function leaf(t)\n"                                                           \
    "  local cur = 0\n"                                                                  \
    "  for i = 1, t.N do\n"                                                              \
    "    if bit.band(t.f[i], ALT) == 0 and t.p[i] == cur then cur = i end\n"             \
    "  end\n"                                                                            \
    "  return cur\n"                                                                     \
    "end\n"

/* A turn's start or finish in one script (mod_chatbot_store_redis_turn.c).
 * ARGV: P op owner id token now max_msgs max_msg_bytes history_bytes
 *       owner_quota_bytes auth, then
 *   op s (start): state lease_ms text(or "" with has_text 0) has_text flags
 *                 clear_conv_flags -> {status, evicted, index}
 *   op f (finish): answer_set answer_clear err has_err err_flags
 *                  answer_mode ("" none, "a" a new answer, "e" more of the
 *                  last message), ARGV[21] the answer's text still to
 *                  store, ARGV[22] a new answer's flags: the text first,
 *                  then the flags, the error, the end, and with ARGV[23]
 *                  and ARGV[24] (backend ticket) the turn's slot given
 *                  back before anything else (bk_leave; its reply does
 *                  not say: chat_store_turn_finish_release) -> {status, evicted,
 *                  index, list (ARGV[20] 1, else 0), 0}, or {status,
 *                  evicted, 0, 0, 1} if the text was refused (then nothing
 *                  else is done: chat_store_turn_finish_text)
 *   and ARGV[18] the caller's origin tag: the "u:<o>@<tag>" it publishes is
 *   not heard again by the child that sent it (it counted the change);
 *   ARGV[19] the anonymous share (percent); op s: ARGV[20] the bot the
 *   caller believes the conversation has ("": any), checked with the
 *   owner before anything changes (-65, CHAT_ESTALE: the caller looks the
 *   conversation up after all; chat_store_turn_start_bot), and with
 *   ARGV[21..26] (backend name ticket limit queue_cap holder_ttl
 *   waiter_stale): once started, the turn's backend slot or place in line
 *   too (bk_acquire, redis's clock), its reply appended, and with a slot
 *   on a closed breaker the state is generating at once (as lua_gen s
 *   would make it next) -> {0, evicted, index, status, position, breaker,
 *   failures, reaped, generating, list, context}; with ARGV[28..30]
 *   (max_msgs max_bytes skip_flags) and a slot taken, context is what
 *   lua_vtail with meta 1 would read right after the start ({1} if the
 *   conversation has branches), else 0: the request goes out without a
 *   round trip of its own (chat_turn_acquire_t ctx_msgs); list (ARGV[27] 1, else 0) and
 * op f's list (ARGV[20] 1, else 0): the owner's list as lua_list reads it after the
 * change, for the tab that reads it next (rs_list_take). */
static const char lua_turn[] =
    PRELUDE APPEND_FN VPRELUDE RS_LUA_BK_ACQUIRE RS_LUA_BK_LEAVE LIST_FN TAIL_FN
    /* the turn's steps (given ARGV: no helper reads it); the script
     * sends the conversation's hash, kept back (defer), once they are
     * done */
    "local function turn(ARGV)\n"
    "local op, o, id, tok, now = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]\n"
    "local maxm, maxb = tonumber(ARGV[7]), tonumber(ARGV[8])\n"
    "local hist, uqb, anon = tonumber(ARGV[9]), tonumber(ARGV[10]), ARGV[11] == '0'\n"
    "local c = ckey(id)\n"
    /* the turn's backend slot, given back first, whatever the finish */
    "if op == 'f' and ARGV[23] then bk_leave(ARGV[23], ARGV[24], true) end\n"
    /* every field of the conversation the script reads, once (the
     * bot, the linear state, the identity kind, the flags, and the
     * counters its writes, kept back, go on from) */
    "local v = redis.call('HMGET', c, 'o', 's', 'g', 'gt', 'b', 'ln', 'a', 'f',\n"
    "                     'k', 'by', 'sq')\n"
    "if not v[1] or v[1] ~= o then return {-60, 0, 0} end\n"
    "OWN[id], LIN[id], AUTH[id] = o, v[6] == '1', v[7]\n"
    "defer(id, {v[9], v[10], v[11]})\n"
    "local ev, idx = 0, 0\n"
    "if op == 's' then\n"
    "  if ARGV[20] ~= '' and v[5] ~= ARGV[20] then\n"
    "    return {-65, 0, 0}\n"
    "  end\n"
    "  if v[2] ~= '0' and v[3] ~= tok and\n"
    "     tonumber(now) - tonumber(v[4]) < tonumber(ARGV[13]) then return {-62, 0, 0} "
    "end\n"
    "  cset(id, 's', ARGV[12], 'g', tok, 'st', 0, 'q', 0, 'gt', now)\n"
    "  redis.call('SADD', P..'gen', id)\n"
    "  if ARGV[15] == '1' then\n"
    "    local lin, pn = linear(id), nil\n"
    "    if not lin then pn = active_leaf(id) end\n"
    "    local r = do_append('a', o, id, 1, ARGV[16], now, ARGV[14], maxm, maxb, hist,\n"
    "                        uqb, anon, tonumber(ARGV[19]))\n"
    "    if r[1] == 0 and not lin then set_parent(id, pn) end\n"
    "    if r[1] ~= 0 then\n"
    "      gen_done(id)\n"
    "      changed(id, now)\n"
    "      return r\n"
    "    end\n"
    "    ev, idx = r[2], r[3]\n"
    "    local f = tonumber(v[8])\n"
    "    if bit.band(f, tonumber(ARGV[17])) ~= 0 then\n"
    "      cset(id, 'f', bit.band(f, bit.bnot(tonumber(ARGV[17]))))\n"
    "    end\n"
    "  end\n"
    "else\n"
    /* the answer's last piece first (a new message or more of the last):
     * refused, nothing else is done and the caller finishes again */
    "  local fl = ARGV[12] ~= '0'\n" /* the last message's flags still to set */
    "  if ARGV[17] ~= '' then\n"
    "    local r\n"
    "    if ARGV[17] == 'e' then\n"
    "      r = do_append('e', o, id, 0, 0, now, ARGV[21], maxm, maxb, hist, uqb, anon,\n"
    "                    tonumber(ARGV[19]))\n"
    "    else\n"
    "      local lin, pn = linear(id), nil\n"
    "      if not lin then pn = active_leaf(id) end\n"
    /* the new answer is the last message: it gets its flags now */
    "      local af = tonumber(ARGV[22])\n"
    "      if fl then\n"
    "        af = bit.band(bit.bor(af, tonumber(ARGV[12])), "
    "bit.bnot(tonumber(ARGV[13])))\n"
    "      end\n"
    "      r = do_append('a', o, id, 2, af, now, ARGV[21], maxm, maxb, hist,\n"
    "                    uqb, anon, tonumber(ARGV[19]))\n"
    "      if r[1] == 0 and not lin then set_parent(id, pn) end\n"
    "      if r[1] == 0 then fl = false end\n"
    "    end\n"
    "    if r[1] ~= 0 then return {r[1], EV, 0, 0, 1} end\n"
    "    idx = r[3]\n"
    "  end\n"
    "  if fl then\n"
    "    last_flags(id, tonumber(ARGV[12]), tonumber(ARGV[13]), false)\n"
    "  end\n"
    "  if ARGV[15] == '1' then\n"
    "    local lin, pn = linear(id), nil\n"
    "    if not lin then pn = active_leaf(id) end\n"
    "    local r = do_append('a', o, id, 2, ARGV[16], now, ARGV[14], maxm, maxb, hist,\n"
    "                        uqb, anon, tonumber(ARGV[19]))\n"
    "    if r[1] == 0 and not lin then set_parent(id, pn) end\n"
    "  end\n"
    "  ev = EV\n"
    "  if v[3] == tok then gen_done(id) end\n"
    "end\n"
    "changed(id, now)\n"
    "pub(o, 'u:'..o..'@'..ARGV[18])\n"
    "if op == 's' and ARGV[21] then\n"
    "  local t = redis.call('TIME')\n"
    "  local a = bk_acquire(ARGV[21], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) "
    "/ 1000),\n"
    "                       ARGV[22], tonumber(ARGV[23]), tonumber(ARGV[24]),\n"
    "                       tonumber(ARGV[25]), tonumber(ARGV[26]))\n"
    /* a slot on a closed breaker: the request goes out, generating now */
    "  local g = 0\n"
    "  if a[1] == 0 and a[3] == 0 then\n"
    "    cset(id, 's', 2)\n"
    "    g = 1\n"
    "  end\n"
    /* the turn's context, its request going out now (a slot taken) */
    "  local cx = 0\n"
    "  if ARGV[28] and a[1] == 0 then\n"
    "    if linear(id) then\n"
    "      cx = tail_of(id, tonumber(ARGV[28]), tonumber(ARGV[29]), tonumber(ARGV[30]))\n"
    "      cx[#cx + 1] = redis.call('HGET', c, 'mt') or ''\n"
    "    else\n"
    "      cx = {1}\n"
    "    end\n"
    "  end\n"
    "  return {0, ev, idx, a[1], a[2], a[3], a[4], a[5], g,\n"
    "          ARGV[27] == '1' and list_of(o) or 0, cx}\n"
    "elseif op == 'f' then\n"
    "  return {0, ev, idx, ARGV[20] == '1' and list_of(o) or 0, 0}\n"
    "end\n"
    "return {0, ev, idx}\n"
    "end\n" MAIN
    /* the writes kept back go out whatever happens: a command that fails
     * half-way (a missing ACL right, a key of the wrong type) leaves the
     * steps before it written, as when each step wrote its own (the
     * message number above all: a number not counted would be used
     * again), and the failure is the script's reply, its code kept */
    "local ok, res = pcall(turn, ARGV)\n"
    "cflush()\n"
    "if ok then return res end\n"
    "if type(res) == 'table' then return res end\n"
    "return redis.error_reply(tostring(res))\n";

/* ARGV: P owner id set clear now (last message) */
static const char lua_mflags[] = PRELUDE MAIN
    "local id = ARGV[3]\n"
    "if not owned(id, ARGV[2]) then return -60 end\n"
    "if not last_flags(id, tonumber(ARGV[4]), tonumber(ARGV[5]), false) then\n"
    "  return -2\n"
    "end\n"
    /* CHAT_MSG_ALT set by hand: the conversation is no longer one
     * straight path (as CS_CONV_LINEAR in the shm store) */
    "if bit.band(tonumber(ARGV[4]), 8192) ~= 0 then\n"
    "  redis.call('HDEL', ckey(id), 'ln')\n"
    "end\n"
    "changed(id, ARGV[6])\n"
    "return 0\n";

/* ARGV: P owner id keep now */
static const char lua_trunc[] = PRELUDE MAIN
    "local o, id, keep = ARGV[2], ARGV[3], tonumber(ARGV[4])\n"
    "if not owned(id, o) then return -60 end\n"
    "local m = mkey(id)\n"
    "for _, e in ipairs(redis.call('LRANGE', m, keep, -1)) do\n"
    "  local _, _, _, n = hdr(e)\n"
    "  acct(o, id, -redis.call('STRLEN', xkey(id, n)))\n"
    "  redis.call('DEL', xkey(id, n))\n"
    "end\n"
    "if keep == 0 then redis.call('DEL', m) else redis.call('LTRIM', m, 0, keep "
    "- 1) end\n"
    "changed(id, ARGV[5])\n"
    "return 0\n";

/* ARGV: P owner id start stop -> {0, first_index, hdr, text, ...} | {-60} */
static const char lua_read[] = PRELUDE MAIN_RO
    "local id = ARGV[3]\n"
    "if not owned(id, ARGV[2]) then return {-60} end\n"
    "local m = mkey(id)\n"
    "local len = redis.call('LLEN', m)\n"
    "local s = tonumber(ARGV[4])\n"
    "if s < 0 then s = math.max(0, len + s) end\n"
    "local out = {0, s}\n"
    "for _, e in ipairs(redis.call('LRANGE', m, s, tonumber(ARGV[5]))) do\n"
    "  local _, _, _, n = hdr(e)\n"
    "  table.insert(out, e)\n"
    "  table.insert(out, redis.call('GET', xkey(id, n)) or '')\n"
    "end\n"
    "return out\n";

/* ARGV: P key count period_ms burst take(0|1) [key2 count2 period_ms2
 * burst2] -> ms to wait (0: a token); with a second bucket, it is asked
 * only if the first gave a token (chat_store_rate_take2) */
static const char lua_bucket[] =
    "local take\n"
    "local U = 1000000\n"
    "local function one(k, cnt, per, burst)\n"
    "cnt, per, burst = tonumber(cnt), tonumber(per), tonumber(burst)\n"
    "if burst == 0 then burst = cnt end\n"
    "if burst == 0 then burst = 1 end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local v = redis.call('HMGET', k, 't', 'ts')\n"
    "local tok, ts = tonumber(v[1]), tonumber(v[2])\n"
    "local cap = burst * U\n"
    "if not tok then tok, ts = cap, now end\n"
    "if now > ts then\n"
    "  tok = math.min(cap, tok + math.floor((now - ts) * cnt * U / per))\n"
    "  ts = now\n"
    "end\n"
    "local wait = 0\n"
    "if tok >= U then\n"
    "  if take then tok = tok - U end\n"
    "else\n"
    "  wait = math.max(1, math.ceil((U - tok) * per / (cnt * U)))\n"
    "end\n"
    "if take then\n"
    "  redis.call('HMSET', k, 't', string.format('%d', tok), 'ts', string.format('%d', "
    "ts))\n"
    "  redis.call('PEXPIRE', k, math.ceil(per * burst / cnt) + 1000)\n"
    "end\n"
    "return wait\n"
    "end\n" RS_LUA_MAIN_MARK "take = ARGV[6] == '1'\n"
    "local w = one(ARGV[1]..ARGV[2], ARGV[3], ARGV[4], ARGV[5])\n"
    "if w == 0 and ARGV[7] then w = one(ARGV[1]..ARGV[7], ARGV[8], ARGV[9], ARGV[10]) "
    "end\n"
    "return w\n";

/* ARGV: P ttl_cutoff_ms lease_cutoff_ms -> {expired, recovered}
 * Conversations idle since before ttl_cutoff go; generations with no
 * activity since lease_cutoff (their host died) end, their last answer
 * marked interrupted. */
static const char lua_sweep[] = PRELUDE MAIN
    "local gone, rec = 0, 0\n"
    "if tonumber(ARGV[2]) > 0 then\n"
    "  for _, id in ipairs(redis.call('ZRANGEBYSCORE', P..'all', '-inf', ARGV[2],\n"
    "                                 'LIMIT', 0, 256)) do\n"
    "    local s = redis.call('HGET', ckey(id), 's')\n"
    "    if not s or s == '0' then del_conv(id); gone = gone + 1 end\n"
    "  end\n"
    "end\n"
    "for _, id in ipairs(redis.call('SMEMBERS', P..'gen')) do\n"
    "  local v = redis.call('HMGET', ckey(id), 's', 'gt')\n"
    "  if not v[1] or v[1] == '0' then\n"
    "    redis.call('SREM', P..'gen', id)\n"
    "  elseif tonumber(v[2]) < tonumber(ARGV[3]) then\n"
    "    last_flags(id, 2, 16, true)\n"
    "    gen_done(id)\n"
    "    changed(id, nil)\n"
    "    rec = rec + 1\n"
    "  end\n"
    "end\n"
    "return {gone, rec}\n";

/* ARGV: P owner id op(g|s) blob owner_quota_bytes history_bytes
 * -> {0, blob|false} | {code}
 * s with an empty blob removes it. The blob's bytes count in the
 * conversation's and the owner's usage and in the store's; a set over the
 * owner's quota (-43) or over ChatbotHistorySize (-41) is refused rather
 * than evicting for it. */
static const char lua_meta[] =
    PRELUDE MAIN "local id = ARGV[3]\n"
                 "if not owned(id, ARGV[2]) then return {-60} end\n"
                 "local c = ckey(id)\n"
                 "local old = redis.call('HGET', c, 'mt') or ''\n"
                 "if ARGV[4] == 'g' then return {0, old} end\n"
                 "local d = #ARGV[5] - #old\n"
                 "local q = tonumber(ARGV[6])\n"
                 "if d > 0 and q > 0 and\n"
                 "   tonumber(redis.call('HGET', P..'ub', ARGV[2]) or '0') + d > q then\n"
                 "  return {-43}\n"
                 "end\n"
                 "local h = tonumber(ARGV[7] or '0')\n"
                 "if d > 0 and h > 0 and\n"
                 "   tonumber(redis.call('GET', P..'bytes') or '0') + d > h then\n"
                 "  return {-41}\n"
                 "end\n"
                 "if #ARGV[5] > 0 then redis.call('HSET', c, 'mt', ARGV[5])\n"
                 "else redis.call('HDEL', c, 'mt') end\n"
                 "acct(ARGV[2], id, d)\n"
                 "changed(id, nil)\n"
                 "return {0}\n";
/* ARGV: P owner id role flags now text max_msgs max_msg_bytes history_bytes
 *       owner_quota_bytes auth parent(-1 the active path's last, -2 none,
 *       else an index) max_versions share -> {status, evicted, index}
 * A new message under parent, the chosen version among its siblings (the
 * append of lua_append, with parents). */
static const char lua_branch[] = PRELUDE VPRELUDE MAIN
    "local o, id, now = ARGV[2], ARGV[3], ARGV[6]\n"
    "local text = ARGV[7]\n"
    "local maxm, maxb = tonumber(ARGV[8]), tonumber(ARGV[9])\n"
    "local hist, uqb = tonumber(ARGV[10]), tonumber(ARGV[11])\n"
    "local anon = ARGV[12] == '0'\n"
    "local mode, maxv = tonumber(ARGV[13]), tonumber(ARGV[14])\n"
    "local share = tonumber(ARGV[15])\n"
    "local role, flags = ARGV[4], bit.band(tonumber(ARGV[5]), bit.bnot(ALT))\n"
    "local c, m = ckey(id), mkey(id)\n"
    "local oa = redis.call('HMGET', c, 'o', 'a')\n"
    "if oa[1] ~= o then return {-60, 0, 0} end\n"
    "OWN[id], AUTH[id] = o, oa[2]\n"
    "local len = #text\n"
    "if len > maxb then return {-40, 0, 0} end\n"
    /* a linear conversation (no parent ever set, so no versions): the
     * active path is the whole list, and an append under its leaf needs
     * neither tree() nor choose() */
    "local lin = mode == -1 and linear(id)\n"
    "local t, tp, pn\n"
    "if lin then\n"
    "  if maxv <= 0 then return {-42, 0, 0} end\n"
    "  pn = active_leaf(id)\n"
    "else\n"
    "  t = tree(id, true)\n"
    "  if mode == -1 then tp = leaf(t) elseif mode == -2 then tp = 0\n"
    "  else tp = mode + 1; if tp > t.N then return {-60, 0, 0} end end\n"
    "  local kids = 0\n"
    "  for i = 1, t.N do if t.p[i] == tp then kids = kids + 1 end end\n"
    "  if kids >= maxv then return {-42, 0, 0} end\n"
    "  pn = tp > 0 and t.n[tp] or '0'\n"
    "end\n"
    /* the oldest go (one not chosen takes its children off the path:
     * drop_oldest) */
    "local function drop_v() return drop_oldest(o, id, 0) end\n"
    "local nm = redis.call('LLEN', m)\n"
    "while nm >= maxm and nm > 0 do drop_v(); nm = nm - 1 end\n"
    "if uqb > 0 and len > 0 then\n"
    "  if len > uqb then return {-43, EV, 0} end\n"
    "  while tonumber(redis.call('HGET', P..'ub', o) or '0') + len > uqb do\n"
    "    if evict_own(o, id, ' (its owner reached the history quota)') == 0 and\n"
    "       drop_v() == 0 then return {-43, EV, 0} end\n"
    "  end\n"
    "end\n"
    "if hist > 0 and len > 0 then\n"
    "  local _, done = room('b', o, anon, id, len, hist, share, drop_v,\n"
    "    function() return droppable(id, 0) end)\n"
    "  if not done then return {-41, EV, 0} end\n"
    "end\n"
    /* linear: the leaf is the last message, gone only with all of them */
    "if lin then\n"
    "  if redis.call('LLEN', m) == 0 then pn = '0' end\n"
    "else\n"
    "  t = tree(id, true)\n"
    "  local tpos = 0\n"
    "  if pn ~= '0' and t.pos[pn] then tpos = t.pos[pn] else pn = '0' end\n"
    "  choose(id, t, tpos, 0)\n"
    "end\n"
    "local n = redis.call('HINCRBY', c, 'k', 1)\n"
    "local idx = redis.call('RPUSH', m, role..':'..flags..':'..now..':'..n) - 1\n"
    /* linear: the new message follows the leaf, which set_parent would
     * find the previous one (nothing to write) */
    "if not lin then set_parent(id, pn) end\n"
    "if len > 0 then\n"
    "  redis.call('APPEND', xkey(id, n), text)\n"
    "  acct(o, id, len)\n"
    "end\n"
    "changed(id, now)\n"
    "return {0, EV, idx}\n";

/* ARGV: P owner id index now -> status: message index becomes the chosen
 * version among its siblings. */
static const char lua_vselect[] =
    PRELUDE VPRELUDE MAIN "local id, i = ARGV[3], tonumber(ARGV[4]) + 1\n"
                          "if not owned(id, ARGV[2]) then return -60 end\n"
                          "local t = tree(id, false)\n"
                          "if i < 1 or i > t.N then return -60 end\n"
                          "local s = redis.call('HGET', ckey(id), 's')\n"
                          "if s and s ~= '0' then return -62 end\n"
                          "if bit.band(t.f[i], ALT) ~= 0 then\n"
                          "  choose(id, t, t.p[i], i)\n"
                          "  changed(id, ARGV[5])\n"
                          "end\n"
                          "return 0\n";

/* ARGV: P owner id start stop -> {0, first_index, hdr, text, ...} | {-60}
 * as lua_read, each header with a fifth field: the parent's index (-1:
 * none). */
static const char lua_vread[] = PRELUDE VPRELUDE MAIN_RO
    "local id = ARGV[3]\n"
    "if not owned(id, ARGV[2]) then return {-60} end\n"
    "local s, e = tonumber(ARGV[4]), tonumber(ARGV[5])\n"
    /* linear: each message's parent is the one before it; only the range
     * is read */
    "if linear(id) then\n"
    "  local N = redis.call('LLEN', mkey(id))\n"
    "  if s < 0 then s = math.max(0, N + s) end\n"
    "  if e < 0 then e = N + e end\n"
    "  if e > N - 1 then e = N - 1 end\n"
    "  local out = {0, s}\n"
    "  if e < s then return out end\n"
    "  local hs = redis.call('LRANGE', mkey(id), s, e)\n"
    "  local ks = {}\n"
    "  for k, h in ipairs(hs) do\n"
    "    local _, _, _, n = hdr(h)\n"
    "    ks[k] = xkey(id, n)\n"
    "  end\n"
    /* the texts in MGETs of at most 256 keys (one call each, not one per
     * message) */
    "  for b = 1, #hs, 256 do\n"
    "    local last = math.min(#hs, b + 255)\n"
    "    local xs = redis.call('MGET', unpack(ks, b, last))\n"
    "    for k = b, last do\n"
    "      table.insert(out, hs[k]..':'..(s + k - 2))\n"
    "      table.insert(out, xs[k - b + 1] or '')\n"
    "    end\n"
    "  end\n"
    "  return out\n"
    "end\n"
    "local t = tree(id, false)\n"
    "if s < 0 then s = math.max(0, t.N + s) end\n"
    "if e < 0 then e = t.N + e end\n"
    "if e > t.N - 1 then e = t.N - 1 end\n"
    "local out = {0, s}\n"
    "for i = s + 1, e + 1 do\n"
    "  table.insert(out, t.r[i]..':'..t.f[i]..':'..t.ts[i]..':'..t.n[i]..':'..(t.p[i] - "
    "1))\n"
    "  table.insert(out, redis.call('GET', xkey(id, t.n[i])) or '')\n"
    "end\n"
    "return out\n";

/* ARGV: P owner id max_msgs max_bytes skip_flags meta -> tail_of(id, ...)
 * of a linear conversation and, with meta 1, the settings blob last (''
 * if none: the turn's settings in the same round trip,
 * chat_store_msg_tail_meta); {1} if the conversation has branches (the
 * caller then reads the whole tree); {-60} if not the owner's. A turn's
 * start reads the same with its change (lua_turn op s, ARGV[28..30]). */
static const char lua_vtail[] = PRELUDE TAIL_FN MAIN_RO
    "local id = ARGV[3]\n"
    "local v = redis.call('HMGET', ckey(id), 'o', 'ln', 'mt')\n"
    "if v[1] ~= ARGV[2] then return {-60} end\n"
    "if v[2] ~= '1' then return {1} end\n"
    "local out = tail_of(id, tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]))\n"
    "if ARGV[7] == '1' then out[#out + 1] = v[3] or '' end\n"
    "return out\n";

const char *const rs_lua_body[RS_LUA_COUNT] = {
    lua_create, lua_get,   lua_list,   lua_update,  lua_delete, lua_gen,   lua_append,
    lua_mflags, lua_trunc, lua_read,   lua_bucket,  lua_sweep,  lua_turn,  rs_lua_backend,
    lua_titled, lua_meta,  lua_branch, lua_vselect, lua_vread,  lua_vtail,
};
