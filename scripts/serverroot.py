#!/usr/bin/python3
"""Generate a private httpd ServerRoot for mod_chatbot (used by `make run`
and by the integration tests), from conf/httpd.conf.in.

    scripts/serverroot.py --root DIR --port 8000 --sslport 8443 \
        --backend http://127.0.0.1:11434 --model qwen2.5-coder:7b [--demo]

prints the path of the generated httpd.conf. Nothing outside DIR is touched
(a self-signed certificate is generated into DIR/ssl on first use).
"""
import argparse
import os
import pwd
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODDIR = "/usr/lib/apache2/modules"
DEMO_NOTICE = ("demo backend: canned replies; set OLLAMA_URL to use a real model")


def world_traversable(path):
    """True if every directory from / to path is o+x (httpd children run
    as an unprivileged user and must reach htdocs)."""
    path = os.path.abspath(path)
    while True:
        try:
            if not os.stat(path).st_mode & 0o001:
                return False
        except FileNotFoundError:
            pass
        parent = os.path.dirname(path)
        if parent == path:
            return True
        path = parent


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
           system_prompt="You are a helpful assistant."):
    """Writes root/conf/httpd.conf and returns its path."""
    root = os.path.abspath(root)
    for d in ("conf", "logs", "run", "ssl"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    os.chmod(root, 0o755)
    module = os.path.abspath(module or os.path.join(REPO, "build", "mod_chatbot.so"))
    htdocs = os.path.abspath(htdocs or os.path.join(REPO, "htdocs"))
    if not world_traversable(htdocs):
        # children (www-data) cannot reach the repo: serve a copy
        copy = os.path.join(root, "htdocs")
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(htdocs, copy)
        for dp, dns, fns in os.walk(copy):
            os.chmod(dp, 0o755)
            for f in fns:
                os.chmod(os.path.join(dp, f), 0o644)
        htdocs = copy
    for f in ("chatbot-log.conf", "chatbot-csp.conf"):
        shutil.copy(os.path.join(REPO, "conf", f), os.path.join(root, "conf", f))
    cert, key = ensure_cert(os.path.join(root, "ssl"))
    usergroup = ""
    if os.geteuid() == 0:
        user = "www-data"
        try:
            pwd.getpwnam(user)
        except KeyError:
            user = "nobody"
        usergroup = "User %s\nGroup %s" % (user, "www-data" if user == "www-data" else "nogroup")
    with open(os.path.join(REPO, "conf", "httpd.conf.in")) as f:
        text = f.read()
    subst = {
        "ROOT": root, "MODDIR": MODDIR, "MODULE": module, "HTDOCS": htdocs,
        "CONFDIR": os.path.join(root, "conf"), "PORT": str(port), "SSLPORT": str(sslport),
        "LISTEN": listen, "SERVERNAME": servername, "USERGROUP": usergroup,
        "CERT": cert, "KEY": key, "BACKEND_URL": backend, "MODEL": model,
        "SYSTEM_PROMPT": system_prompt.replace('"', '\\"'),
        "DEMO_NOTICE": ('ChatbotDemoNotice "%s"' % DEMO_NOTICE) if demo else "",
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
    args = ap.parse_args()
    print(render(args.root, args.port, args.sslport, args.backend, args.model,
                 listen=args.listen, demo=args.demo, servername=args.servername))


if __name__ == "__main__":
    sys.exit(main())
