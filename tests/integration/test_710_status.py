"""Observability the httpd way (issue 7): the Chatbot section of
/server-status (HTML and ?auto), the Prometheus exposition at /metrics
(strictly parsed, summed across children, behind Require), the access log
notes, the per-turn info line and /api/health.

Then /metrics read by the official Prometheus parser
(python3-prometheus-client, installed by scripts/deps.sh) plus the
exposition rules that parser does not enforce, the ?auto keys after a chat
and a command, and configuration errors for out-of-range values."""
import json
import math
import os
import re
import struct
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

import conftest
from cmdutil import api
from conftest import configtest
from wsclient import RawWS


def get(url, timeout=10, method="GET"):
    """(status, headers, body text) without raising on HTTP errors."""
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode(errors="replace")


def chat(srv, text, path="/ws", close=True):
    """One turn on a new connection; returns the final frame (response or
    error) and, if close is False, the open RawWS."""
    ws = RawWS(srv.port, path, timeout=15)
    ws.send_json({"type": "message", "content": text})
    while True:
        m = ws.recv_json(skip_types=("status", "sessions", "ack", "stream", "session"))
        if m["type"] in ("response", "error"):
            break
    if close:
        close_ws(ws)
        return m
    return m, ws


def close_ws(ws):
    """A clean close handshake (1000 both ways)."""
    try:
        ws.send(8, struct.pack("!H", 1000))
        ws.close_code(timeout=5)
    finally:
        ws.close()


# ---- a strict parser for the Prometheus text format (0.0.4) ----------------------

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"'
SAMPLE = re.compile(r"^(%s)(?:\{((?:%s)(?:,%s)*)?,?\})? (?P<value>\S+)(?: (?P<ts>-?\d+))?$"
                    % (NAME, LABEL, LABEL))
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


def _value(s):
    if s in ("+Inf", "Inf"):
        return math.inf
    if s == "-Inf":
        return -math.inf
    if s == "NaN":
        return math.nan
    assert re.match(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$", s), "bad value %r" % s
    return float(s)


def _unescape(v):
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), v)


def parse_prometheus(text):
    """Returns {family: {"type", "help", "samples": [(name, labels, value)]}}.
    Fails on anything the format does not allow: unknown comment lines, a
    TYPE after samples, interleaved families, duplicate series, bad
    names/labels/values, non-cumulative histograms."""
    assert text.endswith("\n"), "the exposition must end with a newline"
    fams = {}
    current = None
    seen = set()
    for lineno, line in enumerate(text.split("\n")[:-1], 1):
        where = "line %d: %r" % (lineno, line)
        assert line.strip() == line and line, "stray whitespace or empty line, " + where
        if line.startswith("#"):
            m = re.match(r"^# (HELP|TYPE) (%s) (.*)$" % NAME, line)
            assert m, "unexpected comment, " + where
            kind, name, rest = m.groups()
            fam = fams.setdefault(name, {"type": None, "help": None, "samples": []})
            if kind == "HELP":
                assert fam["help"] is None, "second HELP, " + where
                assert not re.search(r"\\[^\\n]", rest), "bad escape in HELP, " + where
                fam["help"] = rest
            else:
                assert fam["type"] is None, "second TYPE, " + where
                assert not fam["samples"], "TYPE after samples, " + where
                assert rest in TYPES, "unknown type, " + where
                fam["type"] = rest
            if current != name:
                assert not fams[name]["samples"], "family %s split, %s" % (name, where)
            current = name
            continue
        m = SAMPLE.match(line)
        assert m, "not a sample line, " + where
        sname = m.group(1)
        labels = {}
        if m.group(2):
            for lm in re.finditer(LABEL, m.group(2)):
                assert lm.group(1) not in labels, "duplicate label, " + where
                labels[lm.group(1)] = _unescape(lm.group(2))
        value = _value(m.group("value"))
        fam = current
        ftype = fams[fam]["type"] if fam in fams else None
        allowed = {fam}
        if ftype == "histogram":
            allowed = {fam + "_bucket", fam + "_sum", fam + "_count"}
        elif ftype == "summary":
            allowed = {fam, fam + "_sum", fam + "_count"}
        assert sname in allowed, "sample %s outside its family (%s), %s" % (sname, fam, where)
        if "le" in labels:
            assert sname.endswith("_bucket"), "le label outside a bucket, " + where
        key = (sname, tuple(sorted(labels.items())))
        assert key not in seen, "duplicate series, " + where
        seen.add(key)
        if ftype == "counter":
            assert value >= 0, "negative counter, " + where
        fams[fam]["samples"].append((sname, labels, value))
    for name, fam in fams.items():
        assert fam["type"], "%s has no TYPE" % name
        assert fam["help"], "%s has no HELP" % name
        if fam["type"] == "counter":
            assert name.endswith("_total"), "counter %s should end in _total" % name
        if fam["type"] == "histogram":
            check_histogram(name, fam["samples"])
    return fams


def check_histogram(name, samples):
    series = {}
    for sname, labels, value in samples:
        base = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        s = series.setdefault(base, {"buckets": [], "sum": None, "count": None})
        if sname.endswith("_bucket"):
            assert "le" in labels, (name, labels)
            s["buckets"].append((_value(labels["le"]), value))
        elif sname.endswith("_sum"):
            s["sum"] = value
        else:
            s["count"] = value
    for base, s in series.items():
        b = s["buckets"]
        assert b, (name, base)
        les = [le for le, _ in b]
        assert les == sorted(les) and len(set(les)) == len(les), (name, les)
        assert les[-1] == math.inf, "%s %s: last bucket must be +Inf" % (name, base)
        counts = [c for _, c in b]
        assert counts == sorted(counts), "%s %s: buckets not cumulative: %s" % (name, base, counts)
        assert s["count"] is not None and s["sum"] is not None, (name, base)
        assert s["count"] == counts[-1], "%s %s: _count != +Inf bucket" % (name, base)


def metrics(srv, path="/metrics"):
    status, hdrs, body = get(srv.base + path)
    assert status == 200, (status, body)
    assert hdrs["Content-Type"].startswith("text/plain; version=0.0.4"), hdrs["Content-Type"]
    return parse_prometheus(body)


def total(fams, name, **match):
    fam = name if name in fams else re.sub(r"_(bucket|sum|count)$", "", name)
    return sum(v for n, labels, v in fams[fam]["samples"]
               if n == name and all(labels.get(k) == val for k, val in match.items()))


def status_auto(srv):
    status, _, body = get(srv.base + "/server-status?auto")
    assert status == 200, body
    out = {}
    for i, line in enumerate(body.splitlines()):
        if not line.startswith("Chatbot"):
            k, _, v = line.partition(":")   # mod_status's own lines
            out[k] = v.strip()
            continue
        assert re.match(r"^Chatbot[A-Za-z]+(\[[\w.-]+\][A-Za-z]+)*(\[[\w.-]+\])?: \S+$",
                        line), "not a Key: value line: %r" % line
        k, _, v = line.partition(": ")
        assert k not in out, "duplicate key %s" % k
        out[k] = v
    return out


def test_parser_rejects_bad_expositions():
    """The parser used below can fail."""
    good = ("# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 3\n"
            "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\n"
            "h_sum 3.5\nh_count 2\n")
    parse_prometheus(good)
    bad = [
        good.replace("h_bucket{le=\"+Inf\"} 2", "h_bucket{le=\"+Inf\"} 0"),   # not cumulative
        good.replace("h_count 2", "h_count 3"),                            # count != +Inf
        good.replace("le=\"+Inf\"", "le=\"5\""),                           # no +Inf
        good.replace("# TYPE a_total counter\n", ""),                      # no TYPE
        good.replace("a_total{x=\"1\"} 3", "a_total{x=\"1\"} 3\na_total{x=\"1\"} 4"),  # dup
        good.replace("{x=\"1\"}", "{x=\"1\\q\"}"),                          # bad escape
        good.replace("a_total{x=\"1\"} 3", "a_total{x=\"1\"} three"),      # bad value
        good + "a_total 1\n",                                              # split family
        good[:-1],                                                         # no final newline
        good.replace("# HELP a_total A.", "# comment"),                    # stray comment
        good.replace("a_total", "a"),                                      # counter naming
    ]
    for b in bad:
        with pytest.raises(AssertionError):
            parse_prometheus(b)


# ---- /metrics ---------------------------------------------------------------------

FAMILIES = {
    "chatbot_info": "gauge",
    "chatbot_websocket_connections_open": "gauge",
    "chatbot_websocket_connections_total": "counter",
    "chatbot_websocket_connections_parked": "gauge",
    "chatbot_websocket_connections_active": "gauge",
    "chatbot_websocket_connections_waiting": "gauge",
    "chatbot_websocket_connections_holding_thread": "gauge",
    "chatbot_websocket_workers_max": "gauge",
    "chatbot_answers_generating": "gauge",
    "chatbot_turns_queued": "gauge",
    "chatbot_client_messages_total": "counter",
    "chatbot_rate_limited_total": "counter",
    "chatbot_evictions_total": "counter",
    "chatbot_commands_total": "counter",
    "chatbot_errors_total": "counter",
    "chatbot_conversations": "gauge",
    "chatbot_conversations_max": "gauge",
    "chatbot_users": "gauge",
    "chatbot_users_max": "gauge",
    "chatbot_history_used_bytes": "gauge",
    "chatbot_history_size_bytes": "gauge",
    "chatbot_shm_size_bytes": "gauge",
    "chatbot_conversations_anonymous": "gauge",
    "chatbot_history_anonymous_bytes": "gauge",
    "chatbot_store_recoveries_total": "counter",
    "chatbot_store_processes_reaped_total": "counter",
    "chatbot_backend_up": "gauge",
    "chatbot_backend_active_requests": "gauge",
    "chatbot_backend_max_requests": "gauge",
    "chatbot_backend_queued_turns": "gauge",
    "chatbot_backend_breaker_state": "gauge",
    "chatbot_answers_total": "counter",
    "chatbot_answers_interrupted_total": "counter",
    "chatbot_turn_errors_total": "counter",
    "chatbot_tokens_total": "counter",
    "chatbot_prompt_tokens_total": "counter",
    "chatbot_time_to_first_token_seconds": "histogram",
    "chatbot_answer_duration_seconds": "histogram",
    "chatbot_tokens_per_second": "histogram",
    "chatbot_queue_wait_seconds": "histogram",
}


def test_metrics_exposition_is_valid_and_complete(httpd):
    srv = httpd(extra="ChatbotRateLimit off\nChatbotHistorySize 1M\n")
    fams = metrics(srv)
    assert {n: f["type"] for n, f in fams.items()} == FAMILIES
    assert fams["chatbot_info"]["samples"] == [("chatbot_info", {"version": "0.1.0"}, 1.0)]
    assert total(fams, "chatbot_history_size_bytes") >= 1000000
    assert total(fams, "chatbot_shm_size_bytes") > total(fams, "chatbot_history_size_bytes")
    assert total(fams, "chatbot_conversations_max") == 1024
    assert total(fams, "chatbot_backend_max_requests", backend="default") == 256
    states = [(lb["state"], v) for _, lb, v in fams["chatbot_backend_breaker_state"]["samples"]]
    assert sorted(states) == [("closed", 1), ("half_open", 0), ("open", 0)]
    # a chat moves the per-(bot, backend) series and the histograms
    assert chat(srv, "hi [[fake tokens=7]]")["type"] == "response"
    fams = metrics(srv)
    lb = {"bot": "default", "backend": "default"}
    assert total(fams, "chatbot_answers_total", **lb) == 1
    assert total(fams, "chatbot_tokens_total", **lb) == 7
    assert total(fams, "chatbot_time_to_first_token_seconds_count", **lb) == 1
    assert total(fams, "chatbot_answer_duration_seconds_count", **lb) == 1
    assert total(fams, "chatbot_answer_duration_seconds_sum", **lb) > 0
    assert total(fams, "chatbot_conversations") == 1
    assert total(fams, "chatbot_history_used_bytes") > 0
    assert total(fams, "chatbot_websocket_connections_total") == 1
    # the gauge drops when the handler has finished, just after the client
    # saw its socket close: give it a moment (bounded)
    end = time.time() + 5
    while total(fams, "chatbot_websocket_connections_open") != 0 and time.time() < end:
        time.sleep(0.05)
        fams = metrics(srv)
    assert total(fams, "chatbot_websocket_connections_open") == 0
    # HEAD: same headers, no body; other methods refused
    status, hdrs, body = get(srv.base + "/metrics", method="HEAD")
    assert status == 200 and body == ""
    status, hdrs, _ = get(srv.base + "/metrics", method="POST")
    assert status == 405 and "GET" in hdrs["Allow"] and "POST" not in hdrs["Allow"], \
        hdrs.get_all("Allow")


def test_metrics_labels_per_bot_and_backend(httpd, fake):
    srv = httpd(extra="ChatbotRateLimit off\n"
                      "ChatbotBackend second %s max=3\n"
                      "<ChatbotBot alpha>\n    ChatbotBotBackend default\n</ChatbotBot>\n"
                      "<ChatbotBot beta>\n    ChatbotBotBackend second\n</ChatbotBot>\n"
                      % fake.url)
    for bot, n in (("alpha", 2), ("beta", 1)):
        for _ in range(n):
            ws = RawWS(srv.port, "/ws", timeout=15)
            ws.send_json({"type": "launch", "bot_id": bot})
            sess = ws.recv_json(skip_types=("status", "sessions"))
            assert sess["type"] == "session", sess
            ws.send_json({"type": "message", "content": "x [[fake tokens=3]]",
                          "conversation_id": sess["session"]["conversation_id"]})
            while True:
                m = ws.recv_json(skip_types=("status", "sessions", "ack", "stream"))
                if m["type"] in ("response", "error"):
                    break
            assert m["type"] == "response", m
            close_ws(ws)
    fams = metrics(srv)
    assert total(fams, "chatbot_answers_total", bot="alpha", backend="default") == 2
    assert total(fams, "chatbot_answers_total", bot="beta", backend="second") == 1
    assert total(fams, "chatbot_tokens_total", bot="beta", backend="second") == 3
    assert total(fams, "chatbot_backend_max_requests", backend="second") == 3
    backends = {lb["backend"] for _, lb, _ in fams["chatbot_backend_up"]["samples"]}
    assert backends == {"default", "second"}


def test_metrics_add_up_across_children(httpd):
    """Chats held open at once land in different children; the shared
    counters see every one of them, and every child reports the same totals.
    An idle chat is parked in the MPM (it holds no thread), so one child may
    take all of a round: rounds go on until two children have served chats."""
    srv = httpd(extra="ChatbotRateLimit off\n"
                      'LogFormat "%P %U tokens=%{chatbot-tokens}n" pidlog\n'
                      'CustomLog "logs/pid_log" pidlog\n',
                serverlimit=3, threads=4)
    n = 9
    log = os.path.join(srv.root, "logs", "pid_log")

    def ws_lines(want):
        end = time.time() + 10
        lines = []
        while time.time() < end:
            lines = [ln for ln in open(log).read().splitlines() if " /ws " in ln] \
                if os.path.exists(log) else []
            if len(lines) >= want:
                break
            time.sleep(0.1)
        return lines

    rounds = 0
    pids = set()
    while rounds < 6 and len(pids) < 2:
        socks = []
        try:
            for i in range(n):
                m, ws = chat(srv, "chat %d.%d [[fake tokens=4]]" % (rounds, i),
                             close=False)
                assert m["type"] == "response", m
                socks.append(ws)
            fams = metrics(srv)
            assert total(fams, "chatbot_websocket_connections_open") == n
            auto = status_auto(srv)
            assert auto["ChatbotConnections"] == str(n)
        finally:
            for ws in socks:
                close_ws(ws)
        rounds += 1
        done = n * rounds
        assert total(fams, "chatbot_answers_total") == done
        assert total(fams, "chatbot_tokens_total") == 4 * done
        assert total(fams, "chatbot_time_to_first_token_seconds_count") == done
        assert total(fams, "chatbot_websocket_connections_total") == done
        assert auto["ChatbotAnswers"] == str(done)
        assert auto["ChatbotTokens"] == str(4 * done)
        lines = ws_lines(done)
        assert len(lines) == done, lines
        assert all(ln.endswith("tokens=4") for ln in lines), lines
        pids = {ln.split()[0] for ln in lines}
    # the chats really were served by several children
    assert len(pids) >= 2, "all chats in %s after %d rounds" % (pids, rounds)
    # every child reports the same totals
    seen = set()
    for _ in range(12):
        seen.add(total(metrics(srv), "chatbot_answers_total"))
    assert seen == {n * rounds}


def test_metrics_access_is_controlled_by_require(httpd):
    srv = httpd(extra="<Location /private>\n    SetHandler chatbot\n"
                      "    Require ip 10.0.0.1\n</Location>\n",
                allow_errors=[r"AH01630: client denied by server configuration"])
    status, _, _ = get(srv.base + "/private/metrics")
    assert status == 403
    status, _, body = get(srv.base + "/metrics")   # Require ip 127.0.0.1 ::1
    assert status == 200 and "chatbot_info" in body


# ---- mod_status ----------------------------------------------------------------

AUTO_KEYS = [
    "ChatbotVersion", "ChatbotConnections", "ChatbotConnectionsTotal", "ChatbotGenerating",
    "ChatbotQueued", "ChatbotClientMessages", "ChatbotConnectionsParked",
    "ChatbotConnectionsActive", "ChatbotConnectionsWaiting", "ChatbotConnectionsHoldingThread",
    "ChatbotMaxWorkers", "ChatbotAnswers", "ChatbotAnswersInterrupted",
    "ChatbotTurnErrors", "ChatbotTokens", "ChatbotPromptTokens", "ChatbotErrors",
    "ChatbotRateLimited", "ChatbotEvictions", "ChatbotCommands", "ChatbotConversations",
    "ChatbotConversationsMax", "ChatbotUsers", "ChatbotUsersMax", "ChatbotHistoryBytesUsed",
    "ChatbotHistoryBytes", "ChatbotShmBytes", "ChatbotConversationsAnonymous",
    "ChatbotHistoryBytesAnonymous", "ChatbotStoreRecoveries", "ChatbotStoreProcessesReaped",
    "ChatbotBackends", "ChatbotBackendsUp",
]


def html_numbers(srv):
    status, hdrs, body = get(srv.base + "/server-status")
    assert status == 200
    i = body.index('<h2><a name="chatbot">Chatbot</a></h2>')
    sect = body[i:]
    m = re.search(r"<dt>(\d+) answers completed, (\d+) interrupted, (\d+) turns failed; "
                  r"(\d+) tokens generated", sect)
    assert m, sect
    return sect, [int(x) for x in m.groups()]


def test_server_status_section_moves_after_a_chat(httpd):
    # per identity only: these chats come from new identities of one address
    srv = httpd(extra="ChatbotRateLimit 2/min burst=2\nChatbotAnonymousRateLimit off\n")
    before = status_auto(srv)
    assert [k for k in before if k.startswith("Chatbot")][:len(AUTO_KEYS)] == AUTO_KEYS
    assert before["ChatbotAnswers"] == "0" and before["ChatbotTokens"] == "0"
    assert before["ChatbotVersion"] == "0.1.0"
    # mod_status's own keys are still there: the section is appended
    assert "Total Accesses" in before and "Scoreboard" in before
    sect, nums = html_numbers(srv)
    assert nums == [0, 0, 0, 0]
    assert "<th>Backend</th>" in sect and "<td>default</td>" in sect

    # the first token 5 ms late: time to first token is counted in ms, and an
    # instant fake on a quiet machine answers within one
    assert chat(srv, "hello [[fake tokens=6 first_delay_ms=5]]")["type"] == "response"
    err = chat(srv, "fail [[fake status=500]]")
    assert err["type"] == "error", err
    m, ws = chat(srv, "one", close=False)
    ws.send_json({"type": "message", "content": "two"})
    ws.send_json({"type": "message", "content": "three"})
    finals = []
    while len(finals) < 2:   # "two" is answered, "three" is over the limit
        f = ws.recv_json(skip_types=("status", "sessions", "ack", "stream"))
        if f["type"] in ("response", "error"):
            finals.append(f.get("code", f["type"]))
    close_ws(ws)
    assert sorted(finals) == ["rate_limited", "response"], finals
    get(srv.base + "/api/health")

    after = status_auto(srv)
    assert int(after["ChatbotAnswers"]) == 3       # hello, one, two (three: limited)
    assert int(after["ChatbotTokens"]) >= 6
    assert int(after["ChatbotTurnErrors"]) == 1
    assert int(after["ChatbotRateLimited"]) >= 1
    assert int(after["ChatbotErrors[rate_limited]"]) >= 1
    assert int(after["ChatbotErrors"]) >= 2
    assert [k for k in after if k.startswith("ChatbotErrors[")], after
    assert int(after["ChatbotConversations"]) == 3
    assert int(after["ChatbotHistoryBytesUsed"]) > int(before["ChatbotHistoryBytesUsed"])
    assert int(after["ChatbotConnectionsTotal"]) == 3
    assert after["ChatbotBackend[default]Health"] == "up"
    assert after["ChatbotBackend[default]Up"] == "1"
    assert after["ChatbotBackendsUp"] == "1"
    assert after["ChatbotBackend[default]Breaker"] == "closed"
    assert int(after["ChatbotBot[default]Backend[default]Answers"]) == 3
    assert float(after["ChatbotBot[default]Backend[default]AvgTimeToFirstTokenMs"]) > 0
    sect, nums = html_numbers(srv)
    assert nums[0] == 3 and nums[2] == 1 and nums[3] >= 6
    assert re.search(r"<td>rate_limited</td><td>\d+</td>", sect), sect
    assert re.search(r"Shared memory: \d+ bytes; history \d+ of \d+ bytes used", sect)
    assert re.search(r"<td>default</td><td>http://127\.0\.0\.1:\d+</td><td>up</td>", sect), sect


def test_server_status_counts_evictions(httpd):
    """A small history arena: new conversations evict old ones, and the
    count shows up in ?auto and /metrics."""
    srv = httpd(extra="ChatbotRateLimit off\nChatbotHistorySize 64k\n"
                      "ChatbotMaxAnswerBytes 32k\n")
    for i in range(8):
        assert chat(srv, ("%d " % i) + "y" * 12000)["type"] == "response"
    auto = status_auto(srv)
    assert int(auto["ChatbotEvictions"]) >= 1, auto
    assert int(auto["ChatbotHistoryBytesUsed"]) <= int(auto["ChatbotHistoryBytes"])
    assert total(metrics(srv), "chatbot_evictions_total") == int(auto["ChatbotEvictions"])


def test_works_without_mod_status(httpd):
    srv = httpd(extra="ChatbotRateLimit off\n", status=False)
    conf = open(srv.conf).read()
    assert "mod_status.so" not in conf
    status, _, _ = get(srv.base + "/server-status")
    assert status == 404
    assert chat(srv, "still works [[fake tokens=2]]")["type"] == "response"
    assert total(metrics(srv), "chatbot_answers_total") == 1


# ---- logs -------------------------------------------------------------------------

def wait_lines(path, pred, n=1, timeout=10):
    end = time.time() + timeout
    got = []
    while time.time() < end:
        try:
            got = [ln for ln in open(path, errors="replace").read().splitlines() if pred(ln)]
        except OSError:
            got = []
        if len(got) >= n:
            return got
        time.sleep(0.1)
    return got


def test_access_log_carries_the_notes(httpd):
    srv = httpd(extra="ChatbotRateLimit off\n")
    m, ws = chat(srv, "log me [[fake tokens=5]]", close=False)
    assert m["type"] == "response"
    ws.send_json({"type": "message", "content": "again [[fake tokens=3]]",
                  "conversation_id": m["conversation_id"]})
    while True:
        f = ws.recv_json(skip_types=("status", "sessions", "ack", "stream"))
        if f["type"] in ("response", "error"):
            break
    close_ws(ws)
    lines = wait_lines(srv.access_log, lambda ln: '"GET /ws HTTP/1.1"' in ln)
    assert len(lines) == 1, lines
    ln = lines[0]
    # %>s is 101; the notes: bot, model, tokens (last turn), ttft, turns, close codes
    assert re.search(r'" 101 ', ln), ln
    assert '"default" "test-model"' in ln, ln
    assert " tokens=3 " in ln, ln
    assert re.search(r" ttft_ms=\d+ ", ln), ln
    assert " messages=2 " in ln, ln
    # the child that served it ends the line (pid=%P)
    assert re.search(r" close=1000/1000 pid=\d+$", ln), ln


def turn_lines(srv):
    return [ln for ln in srv.read_error_log().splitlines() if "chatbot: turn " in ln]


def test_turn_logged_once_at_info_without_text(httpd):
    srv = httpd(extra="ChatbotRateLimit off\n")
    marker = "zebra%dquokka" % os.getpid()
    m = chat(srv, "secret %s [[fake tokens=4]]" % marker)
    assert m["type"] == "response"
    lines = wait_lines(srv.error_log, lambda ln: "chatbot: turn " in ln)
    assert len(lines) == 1, lines
    ln = lines[0]
    assert re.search(r"\[chatbot:info\] .*AH10930: chatbot: turn user=anon:[0-9a-f]{8} "
                     r"bot=default model=test-model backend=default conversation=[0-9a-f]+ "
                     r"outcome=complete tokens=4 ttft_ms=[\d.]+ duration_ms=[\d.]+ "
                     r"queue_ms=[\d.]+$", ln), ln
    assert marker not in srv.read_error_log()
    # a failed turn: code and error text of the backend, still one line
    m = chat(srv, "x [[fake status=404]]")
    assert m["type"] == "error"
    lines = wait_lines(srv.error_log, lambda ln: "chatbot: turn " in ln, n=2)
    assert len(lines) == 2
    assert re.search(r"outcome=failed code=model_not_found .* error=\".*\"$", lines[1]), lines[1]


def test_turn_log_includes_text_with_log_content(httpd):
    srv = httpd(extra="ChatbotRateLimit off\nChatbotLogContent on\n")
    marker = "okapi%dnarwhal" % os.getpid()
    m = chat(srv, 'say "%s"\nsecond line' % marker)
    assert m["type"] == "response"
    lines = wait_lines(srv.error_log, lambda ln: "chatbot: turn " in ln)
    assert len(lines) == 1, lines
    ln = lines[0]
    # the text is on the turn line, quoted: its quotes are escaped (and the
    # error log doubles that backslash), the newline is escaped by httpd
    assert ('prompt="say \\\\"%s\\\\"\\nsecond line"' % marker) in ln, ln
    assert ln.endswith(' answer="Echo: say \\\\"%s\\\\"\\nsecond line"' % marker), ln
    assert srv.read_error_log().count(marker) == 2


# ---- health ------------------------------------------------------------------------

def test_health_200_with_backend_and_shm_state(httpd):
    srv = httpd()
    status, hdrs, body = get(srv.base + "/api/health")
    assert status == 200, body
    assert "Set-Cookie" not in hdrs
    h = json.loads(body)
    assert h["status"] == "ok"
    assert [b["name"] for b in h["backends"]] == ["default"]
    assert h["store"]["max_conversations"] == 1024
    assert h["store"]["history_bytes"] > 0


def test_health_503_when_no_backend_is_reachable(httpd):
    dead = "http://127.0.0.1:%d" % conftest.free_port()
    srv = httpd(backend=dead)
    status, _, body = get(srv.base + "/api/health")
    assert status == 503, body
    h = json.loads(body)
    assert h["status"] == "unavailable"
    auto = status_auto(srv)
    assert auto["ChatbotBackend[default]Health"] == "down"
    assert auto["ChatbotBackendsUp"] == "0"
    assert total(metrics(srv), "chatbot_backend_up", backend="default") == 0


# ---- docs/operations.md lists every key and metric ---------------------------------

OPERATIONS_MD = os.path.join(conftest.REPO, "docs", "operations.md")


def _doc_table_names(text):
    """First-column `names` of every table."""
    return set(re.findall(r"^\| `([^`]+)` \|", text, re.M))


def test_operations_doc_lists_every_key_and_metric(httpd):
    srv = httpd(extra="ChatbotRateLimit off\n")
    assert chat(srv, "doc [[fake tokens=2]]")["type"] == "response"
    assert chat(srv, "doc [[fake status=404]]")["type"] == "error"
    get(srv.base + "/api/health")
    documented = _doc_table_names(open(OPERATIONS_MD).read())
    keys = set()
    for k in status_auto(srv):
        if not k.startswith("Chatbot"):
            continue
        k = re.sub(r"^ChatbotErrors\[[^]]+\]$", "ChatbotErrors[code]", k)
        k = re.sub(r"^ChatbotBackend\[[^]]+\]", "ChatbotBackend[name]", k)
        k = re.sub(r"^ChatbotBot\[[^]]+\]Backend\[[^]]+\]", "ChatbotBot[bot]Backend[name]", k)
        keys.add(k)
    assert "ChatbotErrors[code]" in keys and "ChatbotBot[bot]Backend[name]Answers" in keys
    assert keys - documented == set(), "?auto keys missing from operations.md"
    doc_keys = {d for d in documented if re.match(r"^Chatbot[A-Za-z]+(\[\w+\][A-Za-z]*)*$", d)}
    assert doc_keys - keys == set(), "operations.md documents ?auto keys that do not exist"
    fams = metrics(srv)
    assert set(fams) - documented == set(), "metrics missing from operations.md"
    doc_metrics = {d for d in documented if d.startswith("chatbot_")}
    assert doc_metrics - set(fams) == set(), "operations.md documents metrics that do not exist"


def test_bucket_bounds_are_plain_decimals(httpd):
    srv = httpd()
    _, _, body = get(srv.base + "/metrics")
    les = set(re.findall(r'le="([^"]*)"', body))
    assert les and all(re.match(r"^(\+Inf|\d+(\.\d+)?)$", le) for le in les), les
    assert "0.05" in les and "120" in les


# ==== the official parser, ?auto after a chat and a command, out-of-range values ====


@pytest.fixture
def busy(httpd, fake):
    """A server with two bots on two backends that has answered and run a
    command."""
    srv = httpd(extra="ChatbotRateLimit off\n"
                      "ChatbotBackend sec.ond-1 %s max=4\n"
                      "ChatbotCommand up /usr/bin/uptime\n"
                      "<ChatbotBot a.b-c_1>\n    ChatbotBotBackend sec.ond-1 default\n"
                      "    ChatbotBotCommands up\n</ChatbotBot>\n"
                      "<ChatbotBot z>\n</ChatbotBot>\n"
                      "ChatbotDefaultBot a.b-c_1\n" % fake.url)
    before = status_auto(srv)
    assert chat(srv, "hi [[fake tokens=5]]")["type"] == "response"
    status, m = api(srv, {"command": "up"})
    assert status == 200 and m["exit_code"] == 0, m
    srv.before = before
    return srv


def _exposition_rules(body):
    """What text format 0.0.4 requires beyond what the parser checks:
    HELP and TYPE once per family, before its samples, and a family's
    samples contiguous; no series twice."""
    help_, type_, done, series = {}, {}, set(), set()
    current = None
    for line in body.splitlines():
        m = re.match(r"^# (HELP|TYPE) (\S+) (.*)$", line)
        if m:
            kind, name = m.group(1), m.group(2)
            seen = help_ if kind == "HELP" else type_
            assert name not in seen, "%s %s twice" % (kind, name)
            assert name not in done, "%s %s after its samples" % (kind, name)
            seen[name] = m.group(3)
            if current and current != name:
                done.add(current)
            current = name
            continue
        assert line and not line.startswith("#"), "unexpected line %r" % line
        name = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)", line).group(1)
        family = re.sub(r"_(bucket|sum|count)$", "", name) \
            if type_.get(re.sub(r"_(bucket|sum|count)$", "", name)) == "histogram" else name
        assert family == current, "sample %r outside its family block (%s)" % (line, current)
        assert family in help_ and family in type_, "no HELP/TYPE before %r" % line
        key = line.rsplit(" ", 1)[0]
        assert key not in series, "series twice: %s" % key
        series.add(key)
    assert set(help_) == set(type_)
    return type_


def test_metrics_pass_the_official_parser_and_format_rules(busy):
    status, hdrs, body = get(busy.base + "/metrics")
    assert status == 200
    assert hdrs["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert body.endswith("\n")
    assert _exposition_rules(body) == FAMILIES
    fams = {f.name: f for f in text_string_to_metric_families(body)}
    # the client library names counters without their _total suffix
    names = {(n[:-6] if FAMILIES[n] == "counter" and n.endswith("_total") else n): t
             for n, t in FAMILIES.items()}
    assert {n: f.type for n, f in fams.items()} == names
    for name, f in fams.items():
        if f.type != "histogram":
            continue
        by = {}
        for s in f.samples:
            lb = dict(s.labels)
            le = lb.pop("le", None)
            by.setdefault(tuple(sorted(lb.items())), []).append((s.name, le, s.value))
        assert by, name
        for key, samples in by.items():
            assert set(dict(key)) == {"bot", "backend"}
            buckets = [(float(le), v) for n, le, v in samples if n.endswith("_bucket")]
            count = [v for n, _, v in samples if n.endswith("_count")]
            sums = [v for n, _, v in samples if n.endswith("_sum")]
            assert len(count) == 1 and len(sums) == 1, (name, key)
            assert buckets[-1][0] == math.inf and buckets[-1][1] == count[0], (name, key)
            assert [b for b, _ in buckets] == sorted(b for b, _ in buckets)
            assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:])), (name, key)
    answers = {tuple(sorted(s.labels.items())): s.value
               for s in fams["chatbot_answers"].samples if s.name == "chatbot_answers_total"}
    assert answers[(("backend", "sec.ond-1"), ("bot", "a.b-c_1"))] == 1
    ttft = [s for s in fams["chatbot_time_to_first_token_seconds"].samples
            if s.name.endswith("_count") and s.labels["backend"] == "sec.ond-1"]
    assert ttft[0].value == 1
    cmds = fams["chatbot_commands"].samples
    assert [s.value for s in cmds if s.name == "chatbot_commands_total"] == [1]


def test_status_auto_keys_and_movement(busy):
    status, _, body = get(busy.base + "/server-status?auto")
    assert status == 200
    ours = [l for l in body.splitlines() if l.startswith("Chatbot")]
    assert ours
    for line in ours:
        assert re.match(r"^[A-Za-z][A-Za-z0-9\[\]._-]*: \S+$", line), line
    after = status_auto(busy)
    for k in ("ChatbotAnswers", "ChatbotTokens", "ChatbotConnectionsTotal",
              "ChatbotClientMessages", "ChatbotCommands"):
        assert int(after[k]) > int(busy.before[k]), (k, busy.before[k], after[k])
    assert after["ChatbotBot[a.b-c_1]Backend[sec.ond-1]Answers"] == "1"


@pytest.mark.parametrize("extra,needles", [
    ("ChatbotHistorySize 99999999999G", ["ChatbotHistorySize", "'99999999999G'", "64k and 4G"]),
    ("ChatbotHistorySize 18446744073709551616", ["ChatbotHistorySize", "out of range"]),
    ("ChatbotMaxUsers 4294967297", ["ChatbotMaxUsers", "'4294967297'", "between 8 and"]),
    ("ChatbotIdleTimeout 9223372036854775807ms", ["ChatbotIdleTimeout", "out of range"]),
    ("ChatbotRateLimit 99999999999999999999/min", ["ChatbotRateLimit", "between 1 and"]),
    ("ChatbotOption seed -99999999999999999999999", ["ChatbotOption", "out of range"]),
    ("ChatbotCommand t /bin/ls timeout=99999999999999999999s",
     ["ChatbotCommand t: timeout=99999999999999999999s", "between 100ms and 1m"]),
    ("ChatbotCommand t /bin/ls args=many paths=off maxarglen=99999999999999999999",
     ["ChatbotCommand t: maxarglen=", "between 1 and 4096"]),
    ("<ChatbotBot a>\n</ChatbotBot>\n<ChatbotBot a>\n</ChatbotBot>",
     ["<ChatbotBot a>", "already defined"]),
    ("<ChatbotBot a>\n    ChatbotBotBackend nosuch\n</ChatbotBot>",
     ["bot 'a'", "backend 'nosuch'", "not declared"]),
    ("<Location /x>\n    ChatbotHistorySize 1M\n</Location>",
     ["ChatbotHistorySize cannot occur within <Location /x>"]),
])
def test_out_of_range_and_misplaced_values_are_named(extra, needles):
    rc, out = configtest(extra)
    assert rc != 0, out
    for n in needles:
        assert n in out, (n, out)
