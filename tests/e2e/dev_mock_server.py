#!/usr/bin/python3
"""DEVELOPMENT-ONLY mock of mod_chatbot, for working on the browser UI.

NOT the test target: the e2e suite is meant to run against httpd with the
real module and the project's fake Ollama backend (BASE_URL / FAKE_URL). This
mock serves htdocs/ with the production Content-Security-Policy and speaks
docs/protocol.md over /ws well enough to develop and smoke-test the UI.

It understands the fake backend's inline directives in user messages:
  [[fake tokens=N delay_ms=N think=N reply_b64=... split_utf8=1 load_ms=N
          fault=drop after=N | fault=notfound | fault=busy | fault=500 | fault=timeout]]
and a small control API (like FAKE_URL) on --control-port:
  GET|POST /down  /up  /reset  /restart (close every socket with 1001)  /state

Usage: dev_mock_server.py [--port 8765] [--control-port 8766] [--demo] [--legacy] [--no-csp]
Needs Debian's python3-websockets (10.x legacy server API).
"""

import argparse
import asyncio
import base64
import json
import mimetypes
import os
import random
import re
import secrets
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import websockets
import websockets.exceptions
import websockets.server

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), '..', '..', 'htdocs'))
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; "
       "object-src 'none'")
NOTICE = 'demo backend: canned replies; set OLLAMA_URL to use a real model'

BOTS = [
    {'id': 'coder', 'model': 'qwen2.5-coder:7b', 'description': 'Writes, reviews and explains code.',
     'backends': ['local'], 'commands': ['ls', 'uptime', 'echo'], 'default': True},
    {'id': 'writer', 'model': 'llama3.2:3b', 'description': 'Drafts and edits prose.',
     'backends': ['local'], 'commands': [], 'default': False},
]
BOT_IDS = {b['id'] for b in BOTS}

CANNED_CODE = """Here is a small example.

```python
def greet(name: str) -> str:
    \"\"\"Return a friendly greeting.\"\"\"
    return f"Hello, {name}!"

print(greet("world"))
```

You can list the files next to it with:

```sh
ls -l
```

| Option | Meaning |
|---|---|
| `-l` | long listing |
| `-a` | include hidden files |

See the [Python docs](https://docs.python.org/3/) for more."""

WORDS = ('the quick brown fox jumps over a lazy dog while streaming tokens arrive one by one '
         'from a model that is doing its best to be helpful and concise').split()


def now_ms():
    return int(time.time() * 1000)


class State:
    def __init__(self, args):
        self.args = args
        self.identities = {}      # sid -> Identity
        self.conns = set()
        self.backend_down = False
        self.active = 0
        self.queue = []           # waiting Turn objects (FIFO)
        self.max_active = 2
        self.ws_sids = {}         # Sec-WebSocket-Key -> sid set in the 101 response

    def identity(self, sid):
        if sid not in self.identities:
            self.identities[sid] = Identity(sid)
        return self.identities[sid]


class Identity:
    def __init__(self, sid):
        self.sid = sid
        self.convs = {}
        self.conns = set()
        self.tokens = 10.0
        self.last_refill = time.monotonic()
        self.current = None

    def take_token(self):
        t = time.monotonic()
        self.tokens = min(10.0, self.tokens + (t - self.last_refill) * (10 / 60))
        self.last_refill = t
        if self.tokens >= 1:
            self.tokens -= 1
            return 0
        return int((1 - self.tokens) / (10 / 60) * 1000) + 1


class Conv:
    def __init__(self, bot_id, title=''):
        self.id = secrets.token_hex(12)
        self.bot_id = bot_id
        self.title = title
        self.messages = []
        self.state = 'idle'
        self.stopped = False
        self.archived = False
        self.updated_ms = now_ms()
        self.turn = None
        self.position = None

    def session(self):
        bot = next((b for b in BOTS if b['id'] == self.bot_id), BOTS[0])
        s = {'conversation_id': self.id, 'bot_id': self.bot_id, 'title': self.title,
             'state': self.state, 'stopped': self.stopped, 'archived': self.archived,
             'messages': len(self.messages), 'updated_ms': self.updated_ms,
             'model': bot['model'], 'backend_health': 'down' if STATE.backend_down else 'up'}
        if self.state == 'queued' and self.position:
            s['position'] = self.position
        return s


class Turn:
    def __init__(self, conv, ident, ws, client_id, prompt):
        self.conv = conv
        self.ident = ident
        self.subs = {ws}
        self.client_id = client_id
        self.prompt = prompt
        self.content = ''
        self.thinking = ''
        self.stop = asyncio.Event()
        self.msg = None
        self.task = None
        self.started = asyncio.Event()


STATE = None


async def send(ws, obj):
    try:
        await ws.send(json.dumps(obj, ensure_ascii=False))
    except websockets.exceptions.ConnectionClosed:
        pass


async def push_sessions(ident):
    frame = {'type': 'sessions', 'sessions': [c.session() for c in ident.convs.values() if not c.archived]}
    for ws in list(ident.conns):
        await send(ws, frame)


async def to_subs(turn, obj):
    for ws in list(turn.subs):
        if ws.open:
            await send(ws, obj)
        else:
            turn.subs.discard(ws)


def directives(text):
    d = {}
    for m in re.finditer(r'\[\[fake([^\]]*)\]\]', text):
        for kv in m.group(1).split():
            k, _, v = kv.partition('=')
            d[k] = v
    return d


def chunks_for(text, d):
    if d.get('split_utf8'):
        # Small pieces so multi-byte characters arrive in separate frames.
        out, i = [], 0
        while i < len(text):
            n = random.choice((1, 2, 3))
            out.append(text[i:i + n])
            i += n
        return out
    return [p for p in re.findall(r'\S+\s*|\s+', text)]


def reply_for(prompt, d):
    if 'reply_b64' in d:
        return base64.b64decode(d['reply_b64']).decode('utf-8')
    n = int(d.get('tokens', 0) or 0)
    if n:
        return ' '.join(WORDS[i % len(WORDS)] for i in range(n)) + '.'
    p = re.sub(r'\[\[fake[^\]]*\]\]', '', prompt).strip().lower()
    if any(w in p for w in ('code', 'script', 'python', 'function', 'example')):
        return CANNED_CODE
    return ('Sure! This reply comes from the **development mock**. It streams token by token, '
            'renders *Markdown* and `inline code`, and keeps the history on the server.\n\n'
            '- Ask for *code* to see a highlighted block\n- Press **Esc** to stop an answer\n')


async def update_queue():
    for i, t in enumerate(STATE.queue):
        if t.conv.position != i + 1:
            t.conv.position = i + 1
            await to_subs(t, {'type': 'status', 'conversation_id': t.conv.id, 'state': 'queued', 'position': i + 1})


async def run_turn(turn):
    conv, ident = turn.conv, turn.ident
    d = directives(turn.prompt)
    delay = int(d.get('delay_ms', 30) or 0) / 1000
    try:
        if STATE.active >= STATE.max_active:
            STATE.queue.append(turn)
            conv.state = 'queued'
            await update_queue()
            await push_sessions(ident)
            while STATE.active >= STATE.max_active or STATE.queue[0] is not turn:
                if turn.stop.is_set():
                    break
                await asyncio.sleep(0.05)
            STATE.queue.remove(turn)
            conv.position = None
            await update_queue()
        STATE.active += 1
        try:
            await generate(turn, d, delay)
        finally:
            STATE.active -= 1
    finally:
        conv.turn = None
        conv.state = 'idle'
        conv.updated_ms = now_ms()
        await to_subs(turn, {'type': 'status', 'conversation_id': conv.id, 'state': 'idle'})
        await push_sessions(ident)


async def fail(turn, code, message):
    conv = turn.conv
    partial = bool(turn.content)
    if turn.msg:
        turn.msg['streaming'] = False
        turn.msg['interrupted'] = True
    err = {'type': 'error', 'code': code, 'message': message, 'conversation_id': conv.id}
    if turn.client_id is not None:
        err['id'] = turn.client_id
    if partial:
        err['partial'] = True
    await to_subs(turn, err)


async def generate(turn, d, delay):
    conv = turn.conv
    if turn.stop.is_set():
        await finish(turn, interrupted=True, t0=time.monotonic(), ttft=None)
        return
    conv.state = 'generating'
    await to_subs(turn, {'type': 'status', 'conversation_id': conv.id, 'state': 'generating'})
    await push_sessions(turn.ident)
    t0 = time.monotonic()
    fault = d.get('fault')
    if STATE.backend_down:
        await asyncio.sleep(0.05)
        await fail(turn, 'backend_unreachable', 'connection refused: 127.0.0.1:11434')
        return
    if fault == 'notfound':
        await fail(turn, 'model_not_found', "model '%s' not found" % next(b['model'] for b in BOTS if b['id'] == conv.bot_id))
        return
    if fault == 'busy':
        await fail(turn, 'backend_busy', 'server busy, please try again. maximum pending requests exceeded')
        return
    if fault == '500':
        await fail(turn, 'backend_error', 'backend answered 500')
        return
    load = int(d.get('load_ms', 0) or 0) / 1000
    if load:
        if load > 1.5:
            await asyncio.sleep(1.5)
            await to_subs(turn, {'type': 'status', 'conversation_id': conv.id, 'state': 'loading'})
            load -= 1.5
        await asyncio.sleep(load)
    if fault == 'timeout':
        await fail(turn, 'backend_timeout', 'no first token within 60 s')
        return
    for i in range(int(d.get('think', 0) or 0)):
        piece = ('Let me think about step %d. ' % (i + 1))
        turn.thinking += piece
        await to_subs(turn, {'type': 'thinking', 'content': piece, 'conversation_id': conv.id, 'id': turn.client_id})
        await asyncio.sleep(delay)
    text = reply_for(turn.prompt, d)
    pieces = chunks_for(text, d)
    drop_after = int(d.get('after', 0) or 0) if fault == 'drop' else -1
    ttft = None
    for i, piece in enumerate(pieces):
        # Like a backend: each token takes delay_ms, the first one included;
        # no token after 1.5 s means the model is (re)loading.
        if i == 0 and not turn.thinking and delay > 1.5:
            await asyncio.sleep(1.5)
            await to_subs(turn, {'type': 'status', 'conversation_id': conv.id, 'state': 'loading'})
            await asyncio.sleep(delay - 1.5)
        else:
            await asyncio.sleep(delay)
        if turn.stop.is_set():
            break
        if i == drop_after:
            await fail(turn, 'interrupted', 'the backend closed the stream before it was done')
            return
        if ttft is None:
            ttft = (time.monotonic() - t0) * 1000
            turn.msg = {'index': len(conv.messages), 'role': 'assistant', 'content': '',
                        'ts_ms': now_ms(), 'interrupted': False, 'streaming': True}
            conv.messages.append(turn.msg)
        turn.content += piece
        turn.msg['content'] = turn.content
        await to_subs(turn, {'type': 'stream', 'content': piece, 'conversation_id': conv.id, 'id': turn.client_id})
    await finish(turn, turn.stop.is_set(), t0, ttft, len(pieces))


async def finish(turn, interrupted, t0, ttft, ntok=0):
    conv = turn.conv
    dur = (time.monotonic() - t0) * 1000
    if turn.msg is None:
        turn.msg = {'index': len(conv.messages), 'role': 'assistant', 'content': '', 'ts_ms': now_ms()}
        conv.messages.append(turn.msg)
    turn.msg['streaming'] = False
    turn.msg['interrupted'] = interrupted
    bot = next(b for b in BOTS if b['id'] == conv.bot_id)
    tokens = len(re.findall(r'\S+\s*', turn.content))
    stats = {'model': bot['model'], 'done_reason': 'stopped' if interrupted else 'stop',
             'tokens': tokens, 'prompt_tokens': 26 + len(turn.prompt) // 4,
             'ttft_ms': round(ttft or 0, 1), 'duration_ms': round(dur, 1),
             'tokens_per_sec': round(tokens / max(0.001, (dur - (ttft or 0)) / 1000), 1)}
    await to_subs(turn, {'type': 'response', 'content': turn.content, 'conversation_id': conv.id,
                         'id': turn.client_id, 'index': turn.msg['index'], 'interrupted': interrupted,
                         'stats': stats})


def start_turn(conv, ident, ws, client_id, prompt):
    turn = Turn(conv, ident, ws, client_id, prompt)
    conv.turn = turn
    turn.task = asyncio.ensure_future(run_turn(turn))
    return turn


def find_conv(ident, cid):
    return ident.convs.get(cid) if isinstance(cid, str) else None


async def handle(ws, ident, conn, msg):
    t = msg.get('type')
    cid = msg.get('conversation_id')

    async def err(code, message, **extra):
        e = {'type': 'error', 'code': code, 'message': message}
        e.update({k: v for k, v in extra.items() if v is not None})
        await send(ws, e)

    if t == 'ping':
        await send(ws, {'type': 'pong'})
    elif t == 'status':
        await send(ws, {'type': 'status_board', 'backends': [{
            'name': 'local', 'healthy': not STATE.backend_down, 'version': '0.12.6',
            'active': STATE.active, 'queued': len(STATE.queue), 'breaker': 'open' if STATE.backend_down else 'closed'}],
            'connections': len(STATE.conns), 'generating': STATE.active})
    elif t == 'bots':
        await send(ws, {'type': 'bots', 'bots': [dict(b, health='down' if STATE.backend_down else 'up') for b in BOTS]})
    elif t == 'sessions':
        arch = msg.get('archived')
        lst = [c.session() for c in ident.convs.values()
               if (msg.get('bot_id') in (None, c.bot_id)) and (c.archived if arch else not c.archived)]
        await send(ws, {'type': 'sessions', 'sessions': lst})
    elif t == 'launch':
        bot = msg.get('bot_id')
        if bot not in BOT_IDS:
            return await err('not_found', 'no such bot')
        c = Conv(bot, msg.get('title') or '')
        ident.convs[c.id] = c
        conn['current'] = c.id
        await send(ws, {'type': 'session', 'session': c.session()})
        await push_sessions(ident)
    elif t == 'select':
        c = find_conv(ident, cid)
        if not c:
            return await err('not_found', 'no such conversation', conversation_id=cid)
        conn['current'] = c.id
        await send(ws, {'type': 'session', 'session': c.session()})
        await send_history(ws, c, None, 50)
    elif t == 'history':
        c = find_conv(ident, cid or conn.get('current'))
        if not c:
            return await err('not_found', 'no such conversation', conversation_id=cid)
        await send_history(ws, c, msg.get('offset'), msg.get('limit', 50))
    elif t in ('message', 'regenerate', 'edit'):
        if t == 'message' and not isinstance(msg.get('content'), str):
            return await err('bad_request', 'content must be a string', id=msg.get('id'))
        c = find_conv(ident, cid or conn.get('current'))
        if t == 'message' and c is None and not cid:
            bot = msg.get('bot_id') or 'coder'
            c = Conv(bot)
            ident.convs[c.id] = c
            conn['current'] = c.id
        if not c:
            return await err('not_found', 'no such conversation', conversation_id=cid, id=msg.get('id'))
        if c.turn:
            return await err('busy', 'this conversation is already generating', conversation_id=c.id, id=msg.get('id'))
        if c.stopped:
            return await err('not_found', 'session stopped', conversation_id=c.id, id=msg.get('id'))
        wait = ident.take_token()
        if wait:
            return await err('rate_limited', 'rate limit 10/min exceeded', retry_after_ms=wait,
                             conversation_id=c.id, id=msg.get('id'))
        if t == 'message':
            content = msg['content']
            if len(content.encode()) > 65536:
                return await err('too_large', 'message too large', conversation_id=c.id, id=msg.get('id'))
            if content.startswith('!'):
                return await command(ws, ident, c, content[1:].split(), msg.get('id'), content)
            idx = len(c.messages)
            c.messages.append({'index': idx, 'role': 'user', 'content': content, 'ts_ms': now_ms()})
            await send(ws, {'type': 'ack', 'id': msg.get('id'), 'conversation_id': c.id, 'index': idx})
            start_turn(c, ident, ws, msg.get('id'), content)
        elif t == 'regenerate':
            while c.messages and c.messages[-1]['role'] != 'user':
                c.messages.pop()
            if not c.messages:
                return await err('bad_request', 'nothing to regenerate', conversation_id=c.id)
            start_turn(c, ident, ws, None, c.messages[-1]['content'])
        else:
            idx = msg.get('index')
            if not isinstance(idx, int) or idx < 0 or idx >= len(c.messages) or not isinstance(msg.get('content'), str):
                return await err('bad_request', 'bad index', conversation_id=c.id)
            del c.messages[idx:]
            c.messages.append({'index': idx, 'role': 'user', 'content': msg['content'], 'ts_ms': now_ms()})
            await send(ws, {'type': 'ack', 'conversation_id': c.id, 'index': idx})
            start_turn(c, ident, ws, None, msg['content'])
        c.updated_ms = now_ms()
    elif t == 'stop':
        c = find_conv(ident, cid or conn.get('current'))
        if c and c.turn:
            c.turn.stop.set()
    elif t == 'stop_session':
        c = find_conv(ident, cid)
        if not c:
            return await err('not_found', 'no such conversation', conversation_id=cid)
        if c.turn:
            c.turn.stop.set()
        c.stopped = True
        await push_sessions(ident)
    elif t == 'resume':
        c = find_conv(ident, cid)
        if not c:
            return await err('not_found', 'no such conversation', conversation_id=cid)
        off = msg.get('offset', 0)
        if c.turn:
            data = c.turn.content.encode('utf-8')[off:].decode('utf-8', 'replace')
            if data:
                await send(ws, {'type': 'stream', 'content': data, 'conversation_id': c.id, 'id': c.turn.client_id})
            c.turn.subs.add(ws)
        else:
            last = c.messages[-1] if c.messages else None
            if not last or last['role'] != 'assistant':
                return await err('not_found', 'nothing to resume', conversation_id=c.id)
            data = last['content'].encode('utf-8')[off:].decode('utf-8', 'replace')
            if data:
                await send(ws, {'type': 'stream', 'content': data, 'conversation_id': c.id})
            await send(ws, {'type': 'response', 'content': last['content'], 'conversation_id': c.id,
                            'index': last['index'], 'interrupted': last.get('interrupted', False)})
    elif t == 'rename':
        c = find_conv(ident, cid)
        if not c or not isinstance(msg.get('title'), str):
            return await err('not_found', 'no such conversation', conversation_id=cid)
        c.title = msg['title'][:200]
        await send(ws, {'type': 'ok', 'op': 'rename', 'conversation_id': c.id})
        await push_sessions(ident)
    elif t == 'archive':
        c = find_conv(ident, cid)
        if not c:
            return await err('not_found', 'no such conversation', conversation_id=cid)
        c.archived = bool(msg.get('archived', True))
        await send(ws, {'type': 'ok', 'op': 'archive', 'conversation_id': c.id})
        await push_sessions(ident)
    elif t == 'delete':
        c = find_conv(ident, cid)
        if not c:
            return await err('not_found', 'no such conversation', conversation_id=cid)
        if c.turn:
            c.turn.stop.set()
        del ident.convs[c.id]
        await send(ws, {'type': 'ok', 'op': 'delete', 'conversation_id': c.id})
        await push_sessions(ident)
    elif t == 'export':
        c = find_conv(ident, cid)
        if not c:
            return await err('not_found', 'no such conversation', conversation_id=cid)
        fmt = msg.get('format', 'markdown')
        if fmt == 'json':
            content = json.dumps({'conversation_id': c.id, 'bot_id': c.bot_id, 'title': c.title,
                                  'messages': c.messages}, ensure_ascii=False, indent=2)
            name = 'chat-%s.json' % c.id
        else:
            lines = ['# ' + (c.title or 'Conversation'), '']
            for m in c.messages:
                lines += ['**%s:**' % ('You' if m['role'] == 'user' else c.bot_id), '', m['content'], '']
            content = '\n'.join(lines)
            name = 'chat-%s.md' % c.id
        await send(ws, {'type': 'export', 'conversation_id': c.id, 'format': fmt, 'filename': name, 'content': content})
    elif t == 'run':
        c = find_conv(ident, cid or conn.get('current'))
        if not isinstance(msg.get('command'), str):
            return await err('bad_request', 'command must be a string')
        await command(ws, ident, c, [msg['command']] + [str(a) for a in msg.get('args', [])], None, None)
    else:
        await err('unknown_type', 'unknown message type: %s' % t)


async def command(ws, ident, c, argv, client_id, content):
    bot = next((b for b in BOTS if c and b['id'] == c.bot_id), BOTS[0])
    if not argv or argv[0] not in bot['commands']:
        return await send(ws, {'type': 'error', 'code': 'command_denied',
                               'message': 'command %r is not allowed for bot %s' % (argv[0] if argv else '', bot['id']),
                               'conversation_id': c.id if c else None, 'id': client_id})
    if c and content:
        idx = len(c.messages)
        c.messages.append({'index': idx, 'role': 'user', 'content': content, 'ts_ms': now_ms()})
        await send(ws, {'type': 'ack', 'id': client_id, 'conversation_id': c.id, 'index': idx})
    cmd, args = argv[0], argv[1:]
    if cmd == 'ls':
        out = 'total 12\n-rw-r--r-- 1 www-data www-data  512 Nov 26 09:14 notes.txt\n-rw-r--r-- 1 www-data www-data 2048 Nov 26 09:15 report.md\ndrwxr-xr-x 2 www-data www-data 4096 Nov 26 09:16 data\n'
    elif cmd == 'uptime':
        out = ' 09:20:01 up 3 days,  4:12,  0 users,  load average: 0.08, 0.12, 0.10\n'
    else:
        out = ' '.join(args) + '\n'
    res = {'type': 'command_result', 'command': cmd, 'args': args, 'exit_code': 0, 'output': out,
           'truncated': False, 'timed_out': False, 'duration_ms': 12}
    if c:
        res['conversation_id'] = c.id
    await send(ws, res)
    if c:
        await send(ws, {'type': 'status', 'conversation_id': c.id, 'state': 'idle'})


async def send_history(ws, c, offset, limit):
    total = len(c.messages)
    limit = max(1, min(int(limit or 50), 200))
    if offset is None:
        offset = max(0, total - limit)  # newest page
    page = c.messages[offset:offset + limit]
    await send(ws, {'type': 'history', 'conversation_id': c.id, 'bot_id': c.bot_id, 'total': total,
                    'offset': offset, 'limit': limit, 'has_more': offset > 0,
                    'messages': [dict(m) for m in page]})


def cookie_sid(headers):
    for part in headers.get('Cookie', '').split(';'):
        k, _, v = part.strip().partition('=')
        if k == 'chatbot_sid' and v:
            return v
    return None


async def ws_handler(ws, path):
    sid = cookie_sid(ws.request_headers) or STATE.ws_sids.pop(ws.request_headers.get('Sec-WebSocket-Key'), None) \
        or secrets.token_hex(16)
    ident = STATE.identity(sid)
    conn = {'current': ident.current}
    STATE.conns.add(ws)
    ident.conns.add(ws)
    try:
        if not STATE.args.legacy:
            await send(ws, {'type': 'hello', 'protocol': 1, 'server': 'mod_chatbot/0.1.0 (dev mock)',
                            'user': None, 'bots': BOTS, 'conversation_id': conn['current'],
                            'demo': STATE.args.demo, 'notice': NOTICE if STATE.args.demo else None,
                            'limits': {'max_message_bytes': 65536, 'rate': '10/min', 'burst': 10}})
        async for raw in ws:
            if isinstance(raw, bytes):
                await ws.close(1003, 'binary frames are not supported')
                break
            try:
                msg = json.loads(raw)
                assert isinstance(msg, dict) and isinstance(msg.get('type'), str)
            except Exception:
                await send(ws, {'type': 'error', 'code': 'bad_json', 'message': 'not a JSON object with a type'})
                continue
            if STATE.args.legacy:
                await legacy(ws, ident, conn, msg)
            else:
                await handle(ws, ident, conn, msg)
            ident.current = conn.get('current')
    except websockets.exceptions.ConnectionClosed:
        pass
    finally:
        STATE.conns.discard(ws)
        ident.conns.discard(ws)
        for c in ident.convs.values():
            if c.turn:
                c.turn.subs.discard(ws)


async def legacy(ws, ident, conn, msg):
    """The old controller: message in, stream/response/error out, nothing else."""
    if msg['type'] != 'message' or not isinstance(msg.get('content'), str):
        return
    d = directives(msg['content'])
    text = reply_for(msg['content'], d)
    delay = int(d.get('delay_ms', 30) or 0) / 1000
    if STATE.backend_down:
        return await send(ws, {'type': 'error', 'message': 'backend unreachable'})
    out = ''
    for piece in chunks_for(text, d):
        out += piece
        await send(ws, {'type': 'stream', 'content': piece})
        await asyncio.sleep(delay)
    await send(ws, {'type': 'response', 'content': out})


def process_request(path, headers):
    p = path.split('?', 1)[0]
    if p == '/ws':
        origin = headers.get('Origin')
        host = headers.get('Host')
        if origin and host and origin.split('://', 1)[-1] != host:
            return HTTPStatus.FORBIDDEN, [('Content-Type', 'text/plain')], b'bad origin\n'
        return None
    if p == '/':
        p = '/index.html'
    f = os.path.normpath(os.path.join(ROOT, p.lstrip('/')))
    base = [('X-Content-Type-Options', 'nosniff'), ('Referrer-Policy', 'no-referrer'), ('Cache-Control', 'no-cache')]
    if not STATE.args.no_csp:
        base.append(('Content-Security-Policy', CSP))
    if not cookie_sid(headers):
        base.append(('Set-Cookie', 'chatbot_sid=%s; Path=/; HttpOnly; SameSite=Strict' % secrets.token_hex(16)))
    if not f.startswith(ROOT) or not os.path.isfile(f):
        return HTTPStatus.NOT_FOUND, base + [('Content-Type', 'text/plain')], b'not found\n'
    ctype = mimetypes.guess_type(f)[0] or 'application/octet-stream'
    if f.endswith(('.js', '.mjs')):
        ctype = 'text/javascript'
    with open(f, 'rb') as fh:
        body = fh.read()
    if ctype.startswith('text/') or ctype.endswith(('json', 'svg+xml')):
        ctype += '; charset=utf-8'
    return HTTPStatus.OK, base + [('Content-Type', ctype)], body


def extra_headers(path, headers):
    if cookie_sid(headers):
        return []
    sid = secrets.token_hex(16)
    STATE.ws_sids[headers.get('Sec-WebSocket-Key')] = sid
    return [('Set-Cookie', 'chatbot_sid=%s; Path=/; HttpOnly; SameSite=Strict' % sid)]


def control_server(loop, port):
    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            self.do_GET()

        def do_GET(self):
            p = self.path.rstrip('/').rsplit('/', 1)[-1]
            if p == 'down':
                STATE.backend_down = True
            elif p == 'up':
                STATE.backend_down = False
            elif p == 'reset':
                STATE.backend_down = False
                for i in STATE.identities.values():
                    i.tokens = 10.0
            elif p == 'restart':
                async def close_all():
                    for ws in list(STATE.conns):
                        await ws.close(1001, 'server restart')
                asyncio.run_coroutine_threadsafe(close_all(), loop)
            elif p != 'state':
                self.send_response(404)
                self.end_headers()
                return
            body = json.dumps({'backend_down': STATE.backend_down, 'connections': len(STATE.conns)}).encode()
            self.send_response(200)
            self.send_header('Content-Type', 'application/json')
            self.end_headers()
            self.wfile.write(body)

    srv = ThreadingHTTPServer(('127.0.0.1', port), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()


async def main():
    global STATE
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--port', type=int, default=8765)
    ap.add_argument('--control-port', type=int, default=8766)
    ap.add_argument('--demo', action='store_true', help='announce a demo backend in hello')
    ap.add_argument('--legacy', action='store_true', help='behave like the old controller (no hello)')
    ap.add_argument('--no-csp', action='store_true', help='omit the CSP header (checks the tests add it)')
    args = ap.parse_args()
    STATE = State(args)
    control_server(asyncio.get_running_loop(), args.control_port)
    async with websockets.server.serve(ws_handler, '127.0.0.1', args.port, process_request=process_request,
                                       extra_headers=extra_headers, max_size=65536 + 1024):
        print('dev mock: http://127.0.0.1:%d/  control: http://127.0.0.1:%d/' % (args.port, args.control_port), flush=True)
        await asyncio.Future()


if __name__ == '__main__':
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
