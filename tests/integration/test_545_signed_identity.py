"""Signed identities (issue 14), as an attacker tries them: a cookie of
the right form but made up (000...0), unsigned, signed with another key,
tampered with, or hidden inside another cookie's value must never become
anyone's identity; the server's own cookie must keep working across a
graceful restart, a full restart with a history file and several hosts
sharing a secret; over https the cookie is __Host- and a plain one planted
by a sibling subdomain is ignored."""
import os
import re
import stat
import subprocess

import pytest
import requests

from conftest import APACHE, Server, sign_sid
from conftest import test_root as make_root
from histutil import Conn
from wsclient import handshake

TOKEN = r"([0-9a-f]{32})\.[A-Za-z0-9_-]{43}"
SET_RE = re.compile(r"^(__Host-)?chatbot_sid=%s; Path=/; HttpOnly; SameSite=Strict"
                    r"(; Secure)?; Max-Age=31536000$" % TOKEN)
ZERO = "0" * 32


def issued(resp_headers):
    """(name prefix, id) of the Set-Cookie of a response, or None."""
    v = resp_headers.get("Set-Cookie") or resp_headers.get("set-cookie")
    if not v:
        return None
    m = SET_RE.match(v)
    assert m, v
    return m.group(1) or "", m.group(2)


def cookie_of(resp_headers):
    """The Cookie request header value a browser would send back."""
    v = resp_headers.get("Set-Cookie") or resp_headers.get("set-cookie")
    return v.split(";", 1)[0]


def launch(server, cookie=None, base=None, **kw):
    """A new session (POST /api/session/create), as the browser UI makes it."""
    h = {"Cookie": cookie} if cookie else {}
    r = requests.post((base or server.base) + "/api/session/create", json={}, headers=h,
                      timeout=15, verify=False, **kw)
    assert r.status_code == 201, r.text
    return r


def old_launch(server, bot_id, cookie=None, base=None):
    """The old port-8000 controller's launch (docs/api.md, compatibility)."""
    h = {"Cookie": cookie} if cookie else {}
    r = requests.post((base or server.base) + "/api/bot/launch", json={"bot_id": bot_id},
                      headers=h, timeout=15, verify=False)
    assert r.status_code == 200 and r.json()["success"] is True, r.text
    return r


def old_bots(server, cookie, base=None):
    r = requests.get((base or server.base) + "/api/bots", headers={"Cookie": cookie},
                     timeout=15, verify=False)
    assert r.status_code == 200 and "Set-Cookie" not in r.headers
    return r.json()["bots"]


def sessions(server, cookie, base=None):
    r = requests.get((base or server.base) + "/api/sessions", headers={"Cookie": cookie},
                     timeout=15, verify=False)
    assert r.status_code == 200
    return [s["conversation_id"] for s in r.json()["sessions"]]


@pytest.fixture(scope="module")
def gen(fake):
    """A server with the secret the module makes itself (no secret file)."""
    s = Server(fake.url, extra="ChatbotRateLimit off\n", name="ident-gen", cookie_secret=None)
    yield s
    s.stop()
    assert not s.bad_log_lines()


# ---- forged values ------------------------------------------------------------------


@pytest.mark.parametrize("value", [
    ZERO,                                         # the finding: any 32 hex digits
    "0123456789abcdef0123456789abcdef",
    ZERO + ".",
    ZERO + "." + "A" * 43,                        # right shape, no valid MAC
    sign_sid(ZERO, secret="not-this-servers-key-" + "x" * 20),
])
def test_made_up_cookie_is_never_an_identity(gen, value):
    """The attacker plants chatbot_sid=<value> (from a sibling subdomain or
    plain http) and waits. The victim's request gets a fresh identity and a
    Set-Cookie that replaces the planted one; what the victim writes is
    never visible to the planted value."""
    planted = "chatbot_sid=" + value
    # the victim, carrying the planted cookie, starts a conversation
    r = launch(gen, planted)
    got = issued(r.headers)
    assert got is not None, "a made-up cookie was taken as an identity"
    assert got[1] != value[:32]
    victim_conv = r.json()["conversation_id"]
    # over the WebSocket too
    status, hdrs, sock, rest, key = handshake(gen.port, headers={"Cookie": planted})
    sock.close()
    assert status == 101 and issued(hdrs)[1] != value[:32]
    # the old controller's routes (its browser client) likewise
    r_old = old_launch(gen, "BOT-V", planted)
    got_old = issued(r_old.headers)
    assert got_old is not None and got_old[1] != value[:32]
    assert old_bots(gen, planted) == {}
    assert list(old_bots(gen, cookie_of(r_old.headers))) == ["BOT-V"]
    # the attacker, with the same planted value, owns nothing
    assert sessions(gen, planted) == []
    # and the victim's new cookie is theirs
    assert sessions(gen, cookie_of(r.headers)) == [victim_conv]
    assert "cookie not signed by this server" in gen.read_error_log()


def test_tampered_cookie_is_refused(gen):
    r = launch(gen)
    good = cookie_of(r.headers)
    conv = r.json()["conversation_id"]
    assert sessions(gen, good) == [conv]
    name, val = good.split("=", 1)
    sid, mac = val.split(".")
    other_sid = ("f" if sid[0] != "f" else "e") + sid[1:]
    flip = mac[:-2] + ("A" if mac[-2] != "A" else "B") + mac[-1]
    for forged in (other_sid + "." + mac,          # another id, the same MAC
                   sid + "." + flip,              # a MAC one bit off
                   sid + "." + mac + "=",          # padding added
                   sid.upper() + "." + mac,
                   sid,                            # the id alone
                   " " + sid + "." + mac[:-1]):
        r2 = launch(gen, "chatbot_sid=" + forged)
        assert issued(r2.headers) is not None, forged
        assert sessions(gen, "chatbot_sid=" + forged) == [], forged
    # quoting and blanks around a valid value are fine (RFC 6265)
    assert sessions(gen, 'chatbot_sid="%s"' % val) == [conv]
    assert sessions(gen, "a=1;  chatbot_sid = %s ;b=2" % val) == [conv]


def test_cookie_found_by_name_not_inside_another_value(gen):
    """The finding: the old parser found chatbot_sid=<x> inside another
    cookie's value, and that match won over the real cookie after it."""
    ra, rb = launch(gen), launch(gen)
    a, b = cookie_of(ra.headers), cookie_of(rb.headers)
    a_val = a.split("=", 1)[1]
    conv_a, conv_b = ra.json()["conversation_id"], rb.json()["conversation_id"]
    for header in ("x=chatbot_sid=%s; %s" % (a_val, b),
                   'x="y chatbot_sid=%s"; %s' % (a_val, b),
                   "xchatbot_sid=%s; %s" % (a_val, b),
                   "%s; x=chatbot_sid=%s" % (b, a_val)):
        seen = sessions(gen, header)
        assert conv_b in seen and conv_a not in seen, header
        r = requests.post(gen.base + "/api/session/create", json={}, timeout=15,
                          headers={"Cookie": header})
        assert r.status_code == 201 and "Set-Cookie" not in r.headers, header
        assert r.json()["conversation_id"] in sessions(gen, b)
    assert sessions(gen, a) == [conv_a]
    # alone inside another value: no identity at all
    assert sessions(gen, "x=chatbot_sid=%s" % a_val) == []
    r = launch(gen, "x=chatbot_sid=%s" % a_val)
    assert issued(r.headers)[1] != a_val[:32]


def test_issued_cookie_is_kept_and_never_reissued(gen):
    r = launch(gen)
    me = cookie_of(r.headers)
    for _ in range(3):
        r2 = launch(gen, me)
        assert "Set-Cookie" not in r2.headers
    c = Conn(gen, cookie=me)
    try:
        assert "set-cookie" not in c.headers
        assert len(c.request({"type": "sessions"}, "sessions")["sessions"]) == 4
    finally:
        c.close()


# ---- the secret's lifetime --------------------------------------------------------------


def test_graceful_restart_keeps_the_generated_secret(gen):
    r = launch(gen)
    me, conv = cookie_of(r.headers), r.json()["conversation_id"]
    gen.graceful()
    r2 = requests.get(gen.base + "/api/sessions", headers={"Cookie": me}, timeout=15)
    assert [s["conversation_id"] for s in r2.json()["sessions"]] == [conv]
    assert "Set-Cookie" not in launch(gen, me).headers


def test_full_restart_with_history_file_keeps_identities(httpd):
    """Without ChatbotHistoryFile a full restart loses the history and the
    secret together; with it, both are kept (<file>.key, mode 0600)."""
    s = httpd(extra="ChatbotRateLimit off\nChatbotHistoryFile history.bin\n",
              name="ident-hist", cookie_secret=None)
    key = os.path.join(s.root, "history.bin.key")
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert "cookie secret generated and saved to %s" % key in s.read_error_log()
    r = launch(s)
    me, conv = cookie_of(r.headers), r.json()["conversation_id"]
    first_key = open(key).read()
    s.stop()
    s.start()
    assert open(key).read() == first_key
    assert sessions(s, me) == [conv]
    assert "Set-Cookie" not in launch(s, me).headers


def test_full_restart_without_history_file_makes_a_new_secret(httpd):
    s = httpd(extra="ChatbotRateLimit off\n", name="ident-nohist", cookie_secret=None)
    me = cookie_of(launch(s).headers)
    s.stop()
    s.start()
    # the history is gone anyway; the old cookie is simply a new visitor
    assert sessions(s, me) == []
    assert issued(launch(s, me).headers) is not None


def test_hosts_sharing_a_secret_file_accept_each_others_cookies(httpd, fake):
    """Several hosts behind a load balancer: the same ChatbotCookieSecretFile
    on each. One key per line: the first signs, all verify (rotation)."""
    d = make_root("secret")
    old, new = "old-" + os.urandom(20).hex(), "new-" + os.urandom(20).hex()
    path = os.path.join(d, "cookie.key")
    with open(path, "w") as f:
        f.write("# rotation: the new key first\n%s\n\n%s\n" % (new, old))
    os.chmod(path, 0o600)
    extra = "ChatbotRateLimit off\nChatbotCookieSecretFile %s\n" % path
    h1 = httpd(extra=extra, name="host1", cookie_secret=None)
    h2 = httpd(extra=extra, name="host2", cookie_secret=None)
    r = launch(h1)
    me = cookie_of(r.headers)
    assert "Set-Cookie" not in launch(h2, me).headers   # host 2 takes host 1's cookie
    # a cookie signed with the retired key: the same identity, signed anew
    sid = os.urandom(16).hex()
    r = launch(h2, "chatbot_sid=" + sign_sid(sid, secret=old))
    assert issued(r.headers) == ("", sid)
    assert cookie_of(r.headers) == "chatbot_sid=" + sign_sid(sid, secret=new)
    assert sessions(h1, cookie_of(r.headers)) == []  # host 1 has its own store
    assert sessions(h2, "chatbot_sid=" + sign_sid(sid, secret=old)) == \
        [r.json()["conversation_id"]]


def _configtest(extra):
    root = make_root("secretconf")
    import serverroot
    conf = serverroot.render(root, 1, 2, "http://127.0.0.1:9", "m", extra=extra)
    r = subprocess.run([APACHE, "-t", "-f", conf], capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


@pytest.mark.parametrize("content,mode,needle", [
    (None, 0o600, "cannot read it"),
    ("short\n", 0o600, "shorter than 32 bytes"),
    ("# only a comment\n\n", 0o600, "no key in the file"),
    ("k" * 40 + "\n", 0o644, "other users may read or change it"),
    ("k" * 40 + "\n", 0o602, "other users may read or change it"),
])
def test_configtest_refuses_a_bad_secret_file(content, mode, needle):
    d = make_root("badsecret")
    path = os.path.join(d, "cookie.key")
    if content is not None:
        with open(path, "w") as f:
            f.write(content)
        os.chmod(path, mode)
    rc, out = _configtest("ChatbotCookieSecretFile %s\n" % path)
    assert rc != 0, out
    assert "ChatbotCookieSecretFile %s: " % path in out and needle in out, out


# ---- __Host- over https ----------------------------------------------------------------


def test_host_prefixed_cookie_over_https(gen):
    r = launch(gen, base=gen.sbase)
    v = r.headers["Set-Cookie"]
    assert v.startswith("__Host-chatbot_sid=") and "; Secure" in v and "Path=/;" in v
    assert "Domain" not in v
    me = cookie_of(r.headers)
    conv = r.json()["conversation_id"]
    assert sessions(gen, me, base=gen.sbase) == [conv]
    # a plain chatbot_sid, even validly signed (an attacker's own, planted
    # from a sibling subdomain or over http), is not read over https
    mine = launch(gen)
    planted = cookie_of(mine.headers)
    assert sessions(gen, planted, base=gen.sbase) == []
    r = launch(gen, planted + "; " + me, base=gen.sbase)
    assert "Set-Cookie" not in r.headers
    assert r.json()["conversation_id"] in sessions(gen, me, base=gen.sbase)
    assert r.json()["conversation_id"] not in sessions(gen, planted)


def test_host_prefix_can_be_turned_off(httpd):
    s = httpd(extra="ChatbotRateLimit off\nChatbotCookieHostPrefix off\n", name="noprefix")
    v = launch(s, base=s.sbase).headers["Set-Cookie"]
    assert v.startswith("chatbot_sid=") and "; Secure" in v


def test_same_identity_for_the_same_id_under_both_names(server):
    """The store keys the id, not the cookie's name: a browser that moves
    from http to https with the same signed id keeps its conversations."""
    sid = os.urandom(16).hex()
    r = launch(server, "chatbot_sid=" + sign_sid(sid))
    assert "Set-Cookie" not in r.headers
    assert sessions(server, "__Host-chatbot_sid=" + sign_sid(sid), base=server.sbase) == \
        [r.json()["conversation_id"]]
