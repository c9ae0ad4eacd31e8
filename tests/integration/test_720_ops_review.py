"""Review of operations: /metrics read by the official Prometheus parser
(python3-prometheus-client, installed by scripts/deps.sh) plus the
exposition rules that parser does not enforce, the ?auto keys after a chat
and a command, and configuration errors for out-of-range values."""
import math
import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from test_700_config import configtest
from test_800_commands import api
from test_710_status import FAMILIES, chat, get, status_auto


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
