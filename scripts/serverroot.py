#!/usr/bin/python3
"""Generate a private httpd ServerRoot for mod_chatbot (used by `make run`
and by the integration tests), from conf/httpd.conf.in.

    scripts/serverroot.py --root DIR --port 8000 --sslport 8443 \
        --backend http://127.0.0.1:11434 --model qwen2.5-coder:7b [--demo]

prints the path of the generated httpd.conf. A self-signed certificate is
generated into DIR/ssl on first use; with --history the conversations are
saved to DIR/data/history.bin when httpd stops and loaded when it starts.

Works from any directory, without changing the permissions of the user's
directories. When started as root, httpd's children run as www-data: what
they must reach at run time (the files they serve, the mutex and runtime
files) has to be reachable by www-data. If DIR is (a /tmp clone), all of it
stays in DIR. If DIR sits in a directory www-data cannot enter (root's home
is 0700, and so is every home Debian 12's adduser makes), only those parts
go to a root-owned directory outside, /run/mod_chatbot/<tag>/ (see
outside_dir); the configuration, logs, key and history stay in DIR. Started
as a normal user, the children are that user and everything stays in DIR.
Nothing is ever written to /etc/apache2.
"""
import argparse
import hashlib
import os
import pwd
import stat
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODDIR = "/usr/lib/apache2/modules"
DEMO_NOTICE = ("demo backend: canned replies; set OLLAMA_URL to use a real model")


def child_user():
    """The user httpd's children run as: www-data (or nobody) when httpd is
    started as root (its User directive), else the user starting it."""
    if os.geteuid() != 0:
        return None
    for user, group in (("www-data", "www-data"), ("nobody", "nogroup")):
        try:
            pwd.getpwnam(user)
            return user, group
        except KeyError:
            continue
    raise RuntimeError("neither www-data nor nobody exists to run httpd's children")


def child_ids():
    """(uid, gids) of httpd's children, or None when they are this process's
    user (httpd started by a normal user does not switch users)."""
    cu = child_user()
    if cu is None:
        return None
    pw = pwd.getpwnam(cu[0])
    return pw.pw_uid, set(os.getgrouplist(pw.pw_name, pw.pw_gid))


def _may(st, ids, bit):
    """Whether the user ids (uid, gids) has permission bit (4 read, 1
    search/execute) on a file with stat st, by its mode bits (as the
    kernel decides for a non-root user without ACLs)."""
    uid, gids = ids
    if st.st_uid == uid:
        return bool((st.st_mode >> 6) & bit)
    if st.st_gid in gids:
        return bool((st.st_mode >> 3) & bit)
    return bool(st.st_mode & bit)


def reachable(path, ids):
    """True if the user ids can search every directory from / down to path
    (and read path itself if it is not a directory). ids None: this user."""
    path = os.path.realpath(path)
    if ids is None:
        return os.access(path, os.R_OK | (os.X_OK if os.path.isdir(path) else 0))
    comps = [c for c in path.split(os.sep) if c]
    for i in range(len(comps) + 1):
        cur = os.sep + os.sep.join(comps[:i])
        try:
            st = os.stat(cur)
        except OSError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if not _may(st, ids, 1) or (cur == path and not _may(st, ids, 4)):
                return False
        elif not _may(st, ids, 4):
            return False
    return True


def tree_readable(top, ids):
    """True if the user ids can reach top and read every file below it."""
    if not reachable(top, ids):
        return False
    if ids is None:
        return True
    for dp, dns, fns in os.walk(top):
        for d in dns:
            st = os.stat(os.path.join(dp, d))
            if not (_may(st, ids, 1) and _may(st, ids, 4)):
                return False
        for f in fns:
            if not _may(os.stat(os.path.join(dp, f)), ids, 4):
                return False
    return True


def _private_dir(path, mode):
    """Creates path (mode) or accepts it if it is a real directory owned by
    us and writable by nobody else: anything else (a link, a directory
    another user planted in a shared /tmp) is refused, so nobody can swap
    the files the server is about to serve."""
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise RuntimeError("%s is not a directory of ours that only we can write; "
                           "remove it or set CHATBOT_OUTSIDE_DIR" % path)
    os.chmod(path, mode)
    return path


def outside_dir(root):
    """A directory outside root that httpd's children can reach, for the
    parts of a ServerRoot they use at run time. One per ServerRoot (the tag
    is a hash of its path), so runs of several clones never mix. Root gets
    /run/mod_chatbot/<tag> (tmpfs, root-owned: no other user can plant or
    change anything there); CHATBOT_OUTSIDE_DIR overrides the base."""
    base = os.environ.get("CHATBOT_OUTSIDE_DIR")
    if not base:
        base = "/run/mod_chatbot" if os.geteuid() == 0 else os.path.join(
            "/tmp", "mod_chatbot-%d" % os.geteuid())
    _private_dir(base, 0o755)
    tag = hashlib.sha1(os.path.realpath(root).encode()).hexdigest()[:12]
    return _private_dir(os.path.join(base, tag), 0o755)


def publish(src, dst):
    """Copies the tree src to dst (replacing it), readable by everyone."""
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    for dp, dns, fns in os.walk(dst):
        os.chmod(dp, 0o755)
        for f in fns:
            os.chmod(os.path.join(dp, f), 0o644)
    return dst


def ensure_cert(ssldir):
    cert = os.path.join(ssldir, "localhost.crt")
    key = os.path.join(ssldir, "localhost.key")
    if os.path.exists(cert) and os.path.exists(key):
        return cert, key
    os.makedirs(ssldir, exist_ok=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
         "-subj", "/CN=localhost", "-addext", "basicConstraints=critical,CA:FALSE", "-addext",
         "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1",
         "-keyout", key, "-out", cert],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.chmod(key, 0o600)
    return cert, key


def coredump_directive():
    """CHATBOT_COREDIR=/dir makes crashed children leave a core there (for
    a backtrace with gdb); the shell must also allow it (ulimit -c)."""
    d = os.environ.get("CHATBOT_COREDIR")
    if not d:
        return ""
    os.makedirs(d, exist_ok=True)
    os.chmod(d, 0o1777)
    return "\nCoreDumpDirectory %s\n" % d


def render(root, port, sslport, backend, model, module=None, htdocs=None,
           listen="127.0.0.1", demo=False, extra="", status=True, servername="localhost",
           serverlimit=2, threads=64, loglevel="info",
           system_prompt="You are a helpful assistant.", history=False, cookie_secret=None):
    """Writes root/conf/httpd.conf and returns its path. In extra, @HTDOCS@
    is the directory actually served (the repository's htdocs or a copy).
    cookie_secret (text): written to root/conf/cookie.key and used as
    ChatbotCookieSecretFile (the tests sign their own cookies with it);
    None: the module makes one."""
    root = os.path.abspath(root)
    for d in ("conf", "logs", "run", "ssl"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    os.chmod(root, 0o755)
    module = os.path.abspath(module or os.path.join(REPO, "build", "mod_chatbot.so"))
    htdocs = os.path.abspath(htdocs or os.path.join(REPO, "htdocs"))
    ids = child_ids()
    # Runtime files (mutexes: a flock mutex is reopened by name in every
    # child) and the documents must be reachable by the children; the rest
    # (configuration, logs, key, history) is read and written by the parent
    # only and stays in root, however private.
    rundir = os.path.join(root, "run")
    outside = None
    if not reachable(rundir, ids):
        outside = outside_dir(root)
        rundir = _private_dir(os.path.join(outside, "run"), 0o755)
    note = os.path.join(root, "conf", "outside")
    if outside:
        with open(note, "w") as f:
            f.write(outside + "\n")
    elif os.path.exists(note):
        os.remove(note)
    if not tree_readable(htdocs, ids):
        # the children cannot read the repository's copy: serve a copy
        htdocs = publish(htdocs, os.path.join(outside or root, "htdocs"))
    extra = extra.replace("@HTDOCS@", htdocs)
    if history:
        data = os.path.join(root, "data")
        os.makedirs(data, exist_ok=True)
        os.chmod(data, 0o700)  # every conversation is in there
        extra = 'ChatbotHistoryFile "%s"\n' % os.path.join(data, "history.bin") + extra
    for f in ("chatbot-log.conf", "chatbot-csp.conf"):
        shutil.copy(os.path.join(REPO, "conf", f), os.path.join(root, "conf", f))
    cert, key = ensure_cert(os.path.join(root, "ssl"))
    usergroup = ""
    cu = child_user()
    if cu:
        usergroup = "User %s\nGroup %s" % cu
    secret_line = ""
    if cookie_secret is not None:
        keyfile = os.path.join(root, "conf", "cookie.key")
        fd = os.open(keyfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(cookie_secret + "\n")
        os.chmod(keyfile, 0o600)
        secret_line = 'ChatbotCookieSecretFile "%s"' % keyfile
    with open(os.path.join(REPO, "conf", "httpd.conf.in")) as f:
        text = f.read()
    subst = {
        "ROOT": root, "RUNDIR": rundir, "MODDIR": MODDIR, "MODULE": module, "HTDOCS": htdocs,
        "CONFDIR": os.path.join(root, "conf"), "PORT": str(port), "SSLPORT": str(sslport),
        "LISTEN": listen, "SERVERNAME": servername, "USERGROUP": usergroup,
        "CERT": cert, "KEY": key, "BACKEND_URL": backend, "MODEL": model,
        "SYSTEM_PROMPT": system_prompt.replace('"', '\\"'),
        "DEMO_NOTICE": ('ChatbotDemoNotice "%s"' % DEMO_NOTICE) if demo else "",
        "COOKIE_SECRET": secret_line,
        "STATUS_MODULE": ("LoadModule status_module %s/mod_status.so" % MODDIR) if status else "",
        "STATUS_LOCATION": ("<Location \"/server-status\">\n    SetHandler server-status\n"
                            "    Require ip 127.0.0.1 ::1\n</Location>\nExtendedStatus On")
                           if status else "",
        "SERVERLIMIT": str(serverlimit), "THREADS": str(threads),
        "MAXWORKERS": str(serverlimit * threads), "CHATBOT_LOGLEVEL": loglevel,
        "EXTRA": extra + coredump_directive(),
    }
    for k, v in subst.items():
        text = text.replace("@%s@" % k, v)
    if "@" in text.replace("@localhost", ""):
        left = [w for w in text.split() if w.startswith("@") and w.endswith("@")]
        if left:
            raise RuntimeError("unfilled template variables: %s" % left)
    conf = os.path.join(root, "conf", "httpd.conf")
    with open(conf, "w") as f:
        f.write(text)
    return conf


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True)
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--sslport", type=int, default=8443)
    ap.add_argument("--listen", default="*")
    ap.add_argument("--backend", default="http://127.0.0.1:11434")
    ap.add_argument("--model", default="qwen2.5-coder:7b")
    ap.add_argument("--demo", action="store_true")
    ap.add_argument("--servername", default="localhost")
    ap.add_argument("--history", action="store_true",
                    help="keep the history in ROOT/data/history.bin across restarts")
    ap.add_argument("--store", default=os.environ.get("CHATBOT_STORE", ""),
                    help="ChatbotStore value (default: $CHATBOT_STORE, else shm): "
                         "shm, redis://[user:password@]host:port/db or "
                         "unix:/path/to/redis.sock[?db=N]")
    args = ap.parse_args()
    extra = ""
    if args.store and args.store != "shm":
        if any(c in args.store for c in '"\n\r'):
            ap.error("--store: quotes and line breaks are not allowed")
        extra = 'ChatbotStore "%s"\n' % args.store
    print(render(args.root, args.port, args.sslport, args.backend, args.model,
                 listen=args.listen, demo=args.demo, servername=args.servername,
                 history=args.history, extra=extra))


if __name__ == "__main__":
    sys.exit(main())
