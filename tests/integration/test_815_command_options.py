"""Command options (issue 14), as an attacker tries them: options come only
from the declaration's list (options=), so recursion and link-following
(-R, -L, --dereference, and the combined -lRL that read a file outside
cwd= through a symbolic link) are refused over every route (`!`, `run`,
POST /api/execute); an option's value is declared, and carries no path;
`dashes=on` without a list is refused by `apachectl -t`."""
import os
import subprocess

import pytest

import serverroot
from conftest import APACHE, Server
from conftest import test_root as make_root
import cmdutil

SECRET = "SECRET-815-outside"


class Tree:
    """data/ with a.txt, sub/b.txt, and two links that lead out of it:
    escape -> ../outside (a directory), link.txt -> ../outside/secret.txt."""

    def __init__(self):
        self.root = make_root("cmdopts")
        self.data = os.path.join(self.root, "data")
        self.outside = os.path.join(self.root, "outside")
        for d in (self.data, self.outside, os.path.join(self.data, "sub")):
            os.makedirs(d)
            os.chmod(d, 0o755)
        for path, text in ((os.path.join(self.data, "a.txt"), "hello from a\nline 2\n"),
                           (os.path.join(self.data, "sub", "b.txt"), "hello from b\n"),
                           (os.path.join(self.outside, "secret.txt"), SECRET + "\n")):
            with open(path, "w") as f:
                f.write(text)
            os.chmod(path, 0o644)
        os.symlink(self.outside, os.path.join(self.data, "escape"))
        os.symlink(os.path.join(self.outside, "secret.txt"),
                   os.path.join(self.data, "link.txt"))

    def conf(self):
        d = self.data
        return "\n".join([
            "ChatbotRateLimit off",
            "ChatbotCommand ls /bin/ls args=many cwd=%s options=-l,-a,-1" % d,
            "ChatbotCommand grep /bin/grep args=many cwd=%s options=-i,-n,-e=,-c" % d,
            "ChatbotCommand head /usr/bin/head args=many cwd=%s options=-n=,--lines=" % d,
            "ChatbotBotCommands ls grep head",
        ]) + "\n"


@pytest.fixture(scope="module")
def tree():
    return Tree()


@pytest.fixture(scope="module")
def srv(fake, tree):
    s = Server(fake.url, extra=tree.conf(), name="cmdopts")
    yield s
    s.stop()
    assert not s.bad_log_lines()


def test_the_attacks_work_on_the_programs_themselves(tree):
    """Without the module's check these arguments do read the secret: the
    refusals below are what stands in the way."""
    out = subprocess.run(["/bin/ls", "-lRL"], cwd=tree.data, capture_output=True,
                         text=True).stdout
    assert "secret.txt" in out
    out = subprocess.run(["/bin/grep", "-R", "SECRET"], cwd=tree.data, capture_output=True,
                         text=True).stdout
    assert SECRET in out


LS_REFUSED = [["-lRL"], ["-R"], ["-L"], ["-l", "-R"], ["-Rl"], ["-lR", "escape"],
              ["--dereference"], ["--deref"], ["--dereference-command-line"],
              ["--recursive"], ["-l", "--", "escape"], ["-la", "-H", "escape"]]


@pytest.mark.parametrize("args", LS_REFUSED, ids=[" ".join(a) for a in LS_REFUSED])
def test_unlisted_options_are_refused_on_every_route(srv, args):
    m = cmdutil.bang(srv, "!ls " + " ".join(args))
    assert m["type"] == "error" and m["code"] == "command_denied", m
    assert SECRET not in str(m) and "secret.txt" not in str(m)
    assert "an option is not one this command allows (allowed: -l,-a,-1)" in m["message"], m
    m = cmdutil.ws_send(srv, {"type": "run", "command": "ls", "args": args})
    assert m["type"] == "error" and m["code"] == "command_denied", m
    st, b = cmdutil.api(srv, {"command": "ls", "args": args})
    assert st == 403 and b["error"] == "command_denied", b
    assert "secret.txt" not in str(b)


def test_listed_options_work(srv):
    m = cmdutil.bang(srv, "!ls -la")
    assert m["type"] == "command_result" and m["exit_code"] == 0, m
    # the links themselves, not what they lead to
    assert "a.txt" in m["output"] and "escape ->" in m["output"]
    assert SECRET not in m["output"]
    m = cmdutil.bang(srv, "!ls -1 sub")
    assert m["type"] == "command_result" and m["output"] == "b.txt\n", m


def test_grep_recursion_and_links(srv):
    for line in ("!grep -R SECRET", "!grep -r SECRET .", "!grep -ri secret",
                 "!grep --dereference-recursive SECRET"):
        m = cmdutil.bang(srv, line)
        assert m["code"] == "command_denied" and SECRET not in str(m), (line, m)
    # a link named as a file is refused by the path check, whatever the options
    m = cmdutil.bang(srv, "!grep -i secret link.txt")
    assert m["code"] == "command_denied" and "symbolic link" in m["message"], m
    m = cmdutil.bang(srv, "!grep -in hello a.txt")
    assert m["type"] == "command_result" and m["output"] == "1:hello from a\n", m
    # -e takes a value: the next argument is the pattern, not a file
    m = cmdutil.bang(srv, "!grep -c -e hello a.txt")
    assert m["type"] == "command_result" and m["output"] == "1\n", m
    m = cmdutil.bang(srv, "!grep -ehello a.txt")
    assert m["type"] == "command_result" and m["output"] == "hello from a\n", m


def test_values_are_declared_and_carry_no_path(srv):
    for line in ("!head -n 1 a.txt", "!head -n1 a.txt", "!head --lines=1 a.txt",
                 "!head --lines 1 a.txt"):
        m = cmdutil.bang(srv, line)
        assert m["type"] == "command_result" and m["output"] == "hello from a\n", (line, m)
    for line, why in (("!head -n", "the last option needs a value"),
                      ("!head a.txt -n", "the last option needs a value"),
                      ("!head -n ../outside/secret.txt", "may not carry a path"),
                      ("!head -n/etc/passwd", "may not carry a path"),
                      ("!head --lines=../x a.txt", "may not carry a path"),
                      ("!head --lines=1=2 a.txt", None),
                      ("!head -c 5 a.txt", "not one this command allows")):
        m = cmdutil.bang(srv, line)
        if why is None:
            # the value is "1=2": declared, and head itself refuses it
            assert m["type"] == "command_result" and m["exit_code"] != 0, (line, m)
            continue
        assert m["code"] == "command_denied" and why in m["message"], (line, m)


def _configtest(tree, decl):
    root = make_root("optconf")
    conf = serverroot.render(root, 1, 2, "http://127.0.0.1:9", "m",
                             extra="%s\nChatbotBotCommands x\n" % decl)
    r = subprocess.run([APACHE, "-t", "-f", conf], capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


def test_configtest_refuses_dashes_on_without_a_list(tree):
    """The finding's declaration: /bin/ls -l ... dashes=on allowed -lRL."""
    rc, out = _configtest(tree, "ChatbotCommand x /bin/ls -l args=many cwd=%s dashes=on"
                          % tree.data)
    assert rc != 0 and "ChatbotCommand x: dashes=on needs options=" in out, out
    rc, out = _configtest(tree, "ChatbotCommand x /bin/ls args=many cwd=%s options=-l,-lR"
                          % tree.data)
    assert rc != 0 and "options=-l,-lR: each entry is -x" in out, out
    rc, out = _configtest(tree, "ChatbotCommand x /bin/ls args=many cwd=%s options=-l "
                          "dashes=on" % tree.data)
    assert rc == 0, out


def test_configtest_warns_about_listed_link_following(tree):
    rc, out = _configtest(tree, "ChatbotCommand x /bin/ls args=many cwd=%s options=-l,-L,-R"
                          % tree.data)
    assert rc == 0, out
    assert "ChatbotCommand x" in out and "options= allows -L" in out, out
    assert "options= allows -R" in out and "options= allows -l" not in out
    # paths=off: the arguments are no file names; nothing to warn about
    rc, out = _configtest(tree, "ChatbotCommand x /bin/ls args=many paths=off options=-R")
    assert rc == 0 and "options= allows" not in out, out
