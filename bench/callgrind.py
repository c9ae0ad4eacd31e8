#!/usr/bin/python3
"""bench/callgrind.py - instructions per chat turn, counted by valgrind's
callgrind (deterministic: unlike wall-clock or perf samples it does not
depend on what else the machine runs, so before/after comparisons of the
module's CPU cost are exact on a shared machine).

    make module bench-bin && bench/callgrind.py [--turns-seconds 20] [--conns 10]

Runs the C fake backend and httpd (conf/bench.conf, sized down to one
process: `apache2 -X`) under callgrind; warms up, zeroes the counters,
drives closed-loop 20-token turns with build/bench/loadgen for the given
time, dumps the counters and prints the instructions (Ir) per turn in
total, by shared object and for the top functions. Results and the raw
callgrind file go to build/bench/callgrind/<time>/.
"""
import argparse
import collections
import os
import re
import subprocess
import sys
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "bench"))
sys.path.insert(0, os.path.join(REPO, "scripts"))
import harness  # noqa: E402
import serverroot  # noqa: E402


def wait_http(url, seconds):
    end = time.time() + seconds
    while time.time() < end:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return True
        except OSError:
            time.sleep(0.5)
    return False


def valgrind_pid(pid):
    """The valgrind process itself (runuser forks it as a child)."""
    for _ in range(50):
        kids = harness.children_of(pid)
        if not kids:
            return pid
        pid = kids[0]
    return pid


def by_object(annotated):
    """Sums the self Ir of callgrind_annotate's lines by shared object."""
    objs = collections.Counter()
    funcs = []
    for line in annotated.splitlines():
        if "=>" in line or not line.rstrip().endswith("]"):
            continue  # call-tree and source lines
        m = re.match(r"^\s*([0-9,]+)\s+\(\s*[0-9.]+%\)\s+(\S.*?)\s*$", line)
        if not m:
            continue
        ir = int(m.group(1).replace(",", ""))
        what = m.group(2)
        om = re.search(r"\[([^\]]+)\]\s*$", what)
        obj = os.path.basename(om.group(1)) if om else "?"
        obj = re.sub(r"\.so(\.[0-9.]+)?$", ".so", obj)
        objs[obj] += ir
        funcs.append((ir, what))
    return objs, funcs


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--turns-seconds", type=float, default=20)
    ap.add_argument("--conns", type=int, default=10)
    ap.add_argument("--label", default="")
    ap.add_argument("--analyze", metavar="DIR", help="only summarise an earlier run's dump")
    args = ap.parse_args()
    if args.analyze:
        return summarise(args.analyze, args.label, None, 0, args.conns)

    out = os.path.join(harness.BUILD, "bench", "callgrind", time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(out, exist_ok=True)
    harness.OUT = out
    fake = harness.Fake()
    conf_text = harness.bench_conf()
    # one process under valgrind: -X, and few threads (valgrind serialises them)
    for k, v in (("ServerLimit", 1), ("StartServers", 1), ("ThreadLimit", 64),
                 ("ThreadsPerChild", 64), ("MaxRequestWorkers", 64), ("MaxSpareThreads", 64)):
        conf_text = re.sub(r"(?m)^%s .*$" % k, "%s %d" % (k, v), conf_text)
    root = os.path.join(out, "httpd")
    port = harness.socketpair_port()
    conf = serverroot.render(root, port, harness.socketpair_port(), fake.url + " max=10240",
                             "bench", extra=conf_text, serverlimit=1, threads=64,
                             loglevel="warn")
    cg = os.path.join(out, "callgrind.out")
    # valgrind's control FIFOs do not survive httpd's switch to User: run
    # the whole thing as that user from the start (httpd then stays it)
    user = []
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", "www-data", out], check=True)
        user = ["runuser", "-u", "www-data", "--"]
    vg = subprocess.Popen(user + ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + cg,
                                  "--dump-instr=no", "--collect-atstart=yes",
                                  "/usr/sbin/apache2", "-X", "-f", conf],
                          stdout=open(os.path.join(out, "valgrind.log"), "w"),
                          stderr=subprocess.STDOUT)
    try:
        if not wait_http("http://127.0.0.1:%d/api/health" % port, 180):
            sys.exit("callgrind: httpd did not answer under valgrind")
        vgpid = valgrind_pid(vg.pid)
        harness.loadgen(harness.lg_common(port, "ws", args.conns, 0, dur=5, warmup=1,
                                          label="warmup"))
        subprocess.run(user + ["callgrind_control", "-z", str(vgpid)], check=True,
                       capture_output=True)
        r = harness.loadgen(harness.lg_common(port, "ws", args.conns, 0,
                                              dur=args.turns_seconds, warmup=0,
                                              label="callgrind"))
        subprocess.run(user + ["callgrind_control", "-d", str(vgpid)], check=True,
                       capture_output=True)
        turns = int(r["turns"])
        errors = int(r["errors"])
    finally:
        vg.terminate()
        try:
            vg.wait(60)
        except subprocess.TimeoutExpired:
            vg.kill()
        fake.stop()
    summarise(out, args.label, turns, errors, args.conns)


def summarise(out, label, turns, errors, conns):
    if turns is None:
        with open(os.path.join(out, "turns")) as f:
            turns, errors = (int(x) for x in f.read().split())
    with open(os.path.join(out, "turns"), "w") as f:
        f.write("%d %d\n" % (turns, errors))
    dumps = sorted(f for f in os.listdir(out) if f.startswith("callgrind.out."))
    if not dumps:
        sys.exit("callgrind: no dump written")
    dump = os.path.join(out, dumps[-1])
    ann = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100",
                          "--show-percs=yes", "--tree=none", dump],
                         capture_output=True, text=True).stdout
    with open(os.path.join(out, "annotate.txt"), "w") as f:
        f.write(ann)
    m = re.search(r"^\s*([0-9,]+)\s+\(\s*100\.0%\)\s+PROGRAM TOTALS", ann, re.M)
    total = int(m.group(1).replace(",", "")) if m else 0
    objs, funcs = by_object(ann)
    # frames that were running when the counters were zeroed (the worker
    # threads' entry points) are charged everything below them: drop them
    for ir, what in [f for f in funcs if f[0] > total / 2]:
        funcs.remove((ir, what))
        om = re.search(r"\[([^\]]+)\]\s*$", what)
        obj = re.sub(r"\.so(\.[0-9.]+)?$", ".so", os.path.basename(om.group(1))) if om else "?"
        objs[obj] -= ir
    lines = ["callgrind %s: %d turns (%d errors), %d conns, 20 tokens; Ir per turn %.0f"
             % (label, turns, errors, conns, total / max(1, turns)),
             "", "| object | Ir per turn | share |", "|---|---:|---:|"]
    for obj, ir in objs.most_common(12):
        lines.append("| %s | %.0f | %.1f%% |" % (obj, ir / max(1, turns), 100.0 * ir / total))
    lines += ["", "| function | Ir per turn |", "|---|---:|"]
    for ir, what in sorted(funcs, reverse=True)[:40]:
        what = re.sub(r"\s*\[[^\]]*\]$", "", what)
        lines.append("| %s | %.0f |" % (what, ir / max(1, turns)))
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write(text)
    print(text)
    print("raw: %s" % out)


if __name__ == "__main__":
    main()
