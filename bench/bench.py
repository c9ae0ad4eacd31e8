#!/usr/bin/python3
"""bench/bench.py - mod_chatbot's benchmarks (`make bench`, see docs/performance.md).

Starts the C fake backend (build/bench/fakebackend) and a private httpd with
build/mod_chatbot.so configured by conf/bench.conf, drives them with
build/bench/loadgen and wrk, measures the processes from /proc, and prints
one table row per scenario (min/median/p99 over repeated runs; raw results
go to build/bench/results/<time>/).

Environment:
  BENCH_QUICK=1            short runs (2 runs x 3 s, idle hold 15 s, soak 60 s)
  BENCH_RUNS, BENCH_DURATION   repeated runs per scenario and seconds each
  BENCH_SOAK_SECONDS       the 500-connection soak (default 600; quick 60)
  BENCH_IDLE_CONNS, BENCH_IDLE_HOLD   idle scenario (10000 connections, 60 s)
  BENCH_ONLY=a,b           scenarios: fake,latency,throughput,redis,evict,relay,idle,http,soak
  BENCH_THREAD_STACK       override conf/bench.conf's ThreadStackSize
  BENCH_PROFILE=0          skip the perf profile of the throughput run
"""
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from array import array

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "scripts"))
import serverroot  # noqa: E402

BUILD = os.path.join(REPO, "build")
LOADGEN = os.path.join(BUILD, "bench", "loadgen")
FAKE = os.path.join(BUILD, "bench", "fakebackend")
APACHE = "/usr/sbin/apache2"
HZ = os.sysconf("SC_CLK_TCK")

QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
RUNS = int(os.environ.get("BENCH_RUNS", 2 if QUICK else 5))
DURATION = float(os.environ.get("BENCH_DURATION", 3 if QUICK else 10))
SOAK = float(os.environ.get("BENCH_SOAK_SECONDS", 60 if QUICK else 600))
IDLE_CONNS = int(os.environ.get("BENCH_IDLE_CONNS", 10000))
IDLE_HOLD = float(os.environ.get("BENCH_IDLE_HOLD", 15 if QUICK else 60))
ONLY = [s for s in os.environ.get("BENCH_ONLY", "").split(",") if s]
PROFILE = os.environ.get("BENCH_PROFILE", "1") != "0"
TOKENS = 20

OUT = os.path.join(BUILD, "bench", "results", time.strftime("%Y%m%d-%H%M%S"))
ROWS = []       # (scenario, what, unit, min, median, p99/max, note)
FACTS = {}      # everything, for results.json


def log(*a):
    print("bench:", *a, file=sys.stderr, flush=True)


# ---- /proc ----------------------------------------------------------------------

def proc_cpu(pid):
    """utime+stime of the whole process (all threads), seconds."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / HZ
    except (OSError, IndexError, ValueError):
        return 0.0


def proc_mem(pid):
    """kB figures from smaps_rollup and the thread count."""
    m = {}
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                    m[parts[0][:-1]] = int(parts[1])
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("Threads:"):
                    m["Threads"] = int(line.split()[1])
    except OSError:
        pass
    return m


def children_of(ppid):
    kids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == ppid:
                kids.append(int(d))
        except (OSError, IndexError, ValueError):
            pass
    return kids


def machine_busy():
    """(busy, total) jiffies of the whole machine."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v[:8]) - idle, sum(v[:8])


# ---- the processes ------------------------------------------------------------------

class Fake:
    def __init__(self, workers=1):
        d = os.path.join(OUT, "fake")
        os.makedirs(d, exist_ok=True)
        pf = os.path.join(d, "port")
        if os.path.exists(pf):
            os.unlink(pf)
        self.log = open(os.path.join(d, "fake.log"), "a")
        self.proc = subprocess.Popen([FAKE, "--port", "0", "--port-file", pf,
                                      "--tokens", str(TOKENS), "--workers", str(workers)],
                                     stdout=self.log, stderr=self.log)
        end = time.time() + 10
        while not os.path.exists(pf) and time.time() < end:
            time.sleep(0.02)
        self.port = int(open(pf).read())
        self.url = "http://127.0.0.1:%d" % self.port

    def pids(self):
        return [self.proc.pid] + children_of(self.proc.pid)

    def cpu(self):
        return sum(proc_cpu(p) for p in self.pids())

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def bench_conf():
    text = open(os.path.join(REPO, "conf", "bench.conf")).read()
    stack = os.environ.get("BENCH_THREAD_STACK")
    if stack:
        text = re.sub(r"(?m)^ThreadStackSize .*$", "ThreadStackSize %s" % stack, text)
    return text


def conf_value(text, name, default):
    m = re.search(r"(?m)^%s\s+(\d+)" % name, text)
    return int(m.group(1)) if m else default


def shipped_mpm(text):
    """bench.conf without its event MPM section: the MPM settings in force
    are then the shipped ones of conf/httpd.conf.in."""
    return re.sub(r"(?ms)^# ---- event MPM .*?(?=^# ----)", "", text)


class Httpd:
    def __init__(self, backend, name, conf=None):
        self.root = os.path.join(OUT, name)
        os.makedirs(self.root, exist_ok=True)
        os.chmod(OUT, 0o755)
        os.chmod(self.root, 0o755)
        s = socketpair_port()
        self.port = s
        self.url = "http://127.0.0.1:%d" % s
        extra = conf if conf is not None else bench_conf()
        # without them in the configuration: the template's (shipped) ones
        self.serverlimit = conf_value(extra, "ServerLimit", 2)
        self.threads = conf_value(extra, "ThreadsPerChild", 64)
        htdocs = os.path.join(REPO, "htdocs")
        if not os.path.exists(os.path.join(htdocs, "index.html")):
            htdocs = placeholder_htdocs()
        self.conf = serverroot.render(self.root, self.port, socketpair_port(), backend, "bench",
                                      htdocs=htdocs, extra=extra,
                                      serverlimit=self.serverlimit, threads=self.threads,
                                      loglevel="warn")
        r = subprocess.run([APACHE, "-f", self.conf, "-k", "start"], capture_output=True,
                           text=True)
        if r.returncode:
            raise RuntimeError("httpd did not start: %s %s" % (r.stdout, r.stderr))
        # every child and all of its threads
        want = self.serverlimit * self.threads
        end = time.time() + 60
        while time.time() < end:
            if self.pid() and sum(proc_mem(p).get("Threads", 0) for p in self.children()) >= want:
                break
            time.sleep(0.2)
        time.sleep(1.0)

    def pid(self):
        try:
            return int(open(os.path.join(self.root, "run", "httpd.pid")).read())
        except (OSError, ValueError):
            return None

    def children(self):
        p = self.pid()
        return children_of(p) if p else []

    def pids(self):
        p = self.pid()
        return ([p] if p else []) + self.children()

    def cpu(self):
        return sum(proc_cpu(p) for p in self.pids())

    def mem(self):
        tot = {}
        for p in self.pids():
            for k, v in proc_mem(p).items():
                tot[k] = tot.get(k, 0) + v
        tot["processes"] = len(self.pids())
        return tot

    def errors(self):
        """Lines of the error log that say something broke."""
        bad = []
        try:
            with open(os.path.join(self.root, "logs", "error_log"), errors="replace") as f:
                for line in f:
                    if re.search(r"\[(?:[a-z0-9_]+:)?(error|crit|alert|emerg)\]|Segmentation|"
                                 r"exit signal|MaxRequestWorkers", line):
                        bad.append(line.rstrip())
        except OSError:
            pass
        return bad

    def busy_workers(self):
        try:
            with urllib.request.urlopen(self.url + "/server-status?auto", timeout=5) as r:
                m = re.search(r"(?m)^BusyWorkers: (\d+)", r.read().decode())
                return int(m.group(1)) if m else None
        except (OSError, ValueError):
            return None

    def stop(self):
        # Let the connections a scenario just dropped finish closing first:
        # an immediate stop while hundreds of workers are freeing their
        # connections can crash a child inside httpd's event MPM (its
        # close_worker_sockets() reads sockets being freed; see
        # docs/performance.md). Only the status request itself is busy.
        end = time.time() + 60
        while time.time() < end:
            n = self.busy_workers()
            if n is None or n <= 1:
                break
            time.sleep(0.5)
        pid = self.pid()
        subprocess.run([APACHE, "-f", self.conf, "-k", "stop"], capture_output=True)
        end = time.time() + 30
        while pid and time.time() < end:
            try:
                os.kill(pid, 0)
                time.sleep(0.1)
            except OSError:
                break
        bad = self.errors()
        if bad:
            log("httpd error log (%s):" % self.root)
            for line in bad[:10]:
                log("  " + line)
        FACTS.setdefault("httpd_errors", {})[self.root] = bad[:50]


def socketpair_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def placeholder_htdocs():
    """The chat UI is not in this tree yet: a page of the same order of size."""
    d = os.path.join(OUT, "htdocs")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "index.html"), "w") as f:
        f.write("<!doctype html><html><head><meta charset=utf-8><title>chat</title></head>"
                "<body>" + "<p>mod_chatbot benchmark placeholder page</p>\n" * 60 +
                "</body></html>\n")
    os.chmod(d, 0o755)
    return d


# ---- the load generator -------------------------------------------------------------

def parse_kv(line):
    out = {}
    for tok in line.split()[1:]:
        k, _, v = tok.partition("=")
        try:
            out[k] = float(v) if re.match(r"^-?[0-9.]+(e-?[0-9]+)?$", v) else v
        except ValueError:
            out[k] = v
    return out


def loadgen(args, on_event=None, sync=False, samples=None, timeout=None):
    """Runs the load generator; on_event(name, fields) is called on each EVENT
    line (in sync mode the generator waits until it returns). Returns the
    RESULT fields (+ 'lat' and 'relay' arrays when samples is a prefix)."""
    cmd = [LOADGEN] + [str(a) for a in args]
    if sync:
        cmd.append("--sync")
    if samples:
        cmd += ["--samples-out", samples]
    errf = open(os.path.join(OUT, "loadgen.stderr"), "a")
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errf,
                         text=True, bufsize=1)
    result = None
    for line in p.stdout:
        line = line.strip()
        if line.startswith("EVENT"):
            name = line.split()[1]
            if on_event:
                on_event(name, parse_kv(line.split(None, 1)[1]) if " " in line else {})
            if sync:
                p.stdin.write("go\n")
                p.stdin.flush()
        elif line.startswith("RESULT"):
            result = parse_kv(line)
    p.wait(timeout)
    errf.close()
    if result is None:
        raise RuntimeError("loadgen gave no result: %s" % " ".join(cmd))
    if samples:
        for kind in ("lat", "relay"):
            a = array("I")
            with open("%s.%s" % (samples, kind), "rb") as f:
                a.frombytes(f.read())
            result[kind] = a
    return result


def pctl(values, q):
    v = sorted(values)
    if not v:
        return float("nan")
    return v[min(len(v) - 1, int(q * (len(v) - 1) + 0.5))]


def row(scn, what, unit, vmin, vmed, vhi, note=""):
    ROWS.append((scn, what, unit, vmin, vmed, vhi, note))
    log("%-11s %-42s %10s %10s %10s %s %s" % (scn, what, fmt(vmin), fmt(vmed), fmt(vhi), unit,
                                             note))


def fmt(v):
    if isinstance(v, str):
        return v
    if v != v:
        return "-"
    if abs(v) >= 100:
        return "%.0f" % v
    if abs(v) >= 10:
        return "%.1f" % v
    return "%.3f" % v if abs(v) < 1 else "%.2f" % v


class Window:
    """CPU of httpd, the fake and the machine between the loadgen's EVENT
    window and window_end lines."""

    def __init__(self, httpd, fake):
        self.httpd, self.fake = httpd, fake
        self.a = self.b = None

    def snap(self):
        return {"httpd": self.httpd.cpu() if self.httpd else 0.0,
                "fake": self.fake.cpu() if self.fake else 0.0,
                "machine": machine_busy(), "t": time.time()}

    def on_event(self, name, fields):
        if name == "window":
            self.a = self.snap()
        elif name == "window_end":
            self.b = self.snap()

    def cpu(self, key):
        return self.b[key] - self.a[key]

    def foreign(self, own):
        """Share of the machine's 2 cores used by other processes."""
        busy = (self.b["machine"][0] - self.a["machine"][0]) / HZ
        total = (self.b["machine"][1] - self.a["machine"][1]) / HZ
        return max(0.0, busy - own) / total if total else 0.0


# ---- scenarios ------------------------------------------------------------------------

def lg_common(port, mode, conns, rate, dur=None, warmup=1, tokens=TOKENS, delay_us=0,
              label="-"):
    return ["--mode", mode, "--port", port, "--conns", conns, "--rate", rate,
            "--duration", dur if dur is not None else DURATION, "--warmup", warmup,
            "--tokens", tokens, "--delay-us", delay_us, "--label", label]


def scenario_fake():
    """The fake backend alone (straight from the load generator)."""
    fake = Fake()
    try:
        for conns in (1, 100):
            tps, cpu_f, cpu_l, p50 = [], [], [], []
            for i in range(RUNS):
                w = Window(None, fake)
                r = loadgen(lg_common(fake.port, "direct", conns, 0), on_event=w.on_event)
                tps.append(r["turns_per_s"])
                cpu_f.append(w.cpu("fake") / r["turns"] * 1e6)
                cpu_l.append(r["cpu_s"] / r["turns"] * 1e6)
                p50.append(r["lat_p50_us"])
                FACTS.setdefault("fake", []).append(r)
            row("fake", "fake alone, %d conn closed loop: turns/s" % conns, "turns/s",
                min(tps), statistics.median(tps), max(tps))
            row("fake", "  fake CPU per turn", "us", min(cpu_f), statistics.median(cpu_f),
                max(cpu_f))
            row("fake", "  loadgen CPU per turn (direct)", "us", min(cpu_l),
                statistics.median(cpu_l), max(cpu_l))
    finally:
        fake.stop()


def scenario_latency():
    """Turn time through httpd minus the same request straight to the fake."""
    fake = Fake()
    httpd = Httpd(fake.url + " max=10240", "httpd-latency")
    try:
        for conns, rate in ((1, 0), (100, 1000), (1000, 1000)):
            ws_lat, d_lat, runs_added50, runs_added99, foreign = [], [], [], [], []
            for i in range(RUNS):
                w = Window(httpd, fake)
                r = loadgen(lg_common(httpd.port, "ws", conns, rate, label="lat"),
                            on_event=w.on_event, samples=os.path.join(OUT, "lat-ws"))
                foreign.append(w.foreign(w.cpu("httpd") + w.cpu("fake") + r["cpu_s"]))
                d = loadgen(lg_common(fake.port, "direct", conns, rate, label="lat"),
                            samples=os.path.join(OUT, "lat-direct"))
                ws_lat.extend(r["lat"])
                d_lat.extend(d["lat"])
                runs_added50.append(pctl(r["lat"], .5) - pctl(d["lat"], .5))
                runs_added99.append(pctl(r["lat"], .99) - pctl(d["lat"], .99))
                for x in (r, d):
                    x.pop("lat"), x.pop("relay")
                FACTS.setdefault("latency", []).append({"ws": r, "direct": d})
                if r["errors"] or d["errors"]:
                    log("latency: errors ws=%d direct=%d" % (r["errors"], d["errors"]))
            what = "%d conn%s, %s" % (conns, "" if conns == 1 else "s",
                                      "closed loop" if not rate else "%d turns/s" % rate)
            row("latency", "turn via httpd, " + what, "us", min(ws_lat), pctl(ws_lat, .5),
                pctl(ws_lat, .99))
            row("latency", "turn direct to fake, " + what, "us", min(d_lat), pctl(d_lat, .5),
                pctl(d_lat, .99))
            row("latency", "ADDED by httpd+module, " + what, "us",
                min(ws_lat) - min(d_lat), pctl(ws_lat, .5) - pctl(d_lat, .5),
                pctl(ws_lat, .99) - pctl(d_lat, .99),
                "runs: median %s..%s, p99 %s..%s; others used %.0f%% of the CPU" % (
                    fmt(min(runs_added50)), fmt(max(runs_added50)), fmt(min(runs_added99)),
                    fmt(max(runs_added99)), 100 * statistics.median(foreign)))
    finally:
        httpd.stop()
        fake.stop()


def profile_httpd(httpd, fake, seconds=5):
    """perf record on the whole machine while a throughput run goes on; the
    report keeps apache2's samples, by DSO and by symbol."""
    if not shutil.which("perf"):
        return
    data = os.path.join(OUT, "perf.data")
    rec = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "2000", "-g", "-a",
                            "-o", data, "--", "sleep", str(seconds + 2)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        loadgen(lg_common(httpd.port, "ws", 100, 0, dur=seconds, label="profile"))
    finally:
        rec.wait()
    for name, args in (("perf-dso.txt", ["--sort", "comm,dso"]),
                       ("perf-sym.txt", ["--comm", "apache2", "--sort", "dso,sym"]),
                       ("perf-all.txt", ["--sort", "comm"])):
        with open(os.path.join(OUT, name), "w") as f:
            subprocess.run(["perf", "report", "-i", data, "--no-children", "--stdio",
                            "-g", "none", "--percent-limit", "0.3"] + args,
                           stdout=f, stderr=subprocess.DEVNULL)
    log("perf profile in %s/perf-*.txt" % OUT)


def scenario_throughput():
    fake = Fake()
    httpd = Httpd(fake.url + " max=10240", "httpd-throughput")
    try:
        tps, cpu_h, cpu_f, cpu_l, foreign, errs = [], [], [], [], [], 0
        for i in range(RUNS):
            w = Window(httpd, fake)
            r = loadgen(lg_common(httpd.port, "ws", 100, 0, label="throughput"),
                        on_event=w.on_event)
            tps.append(r["turns_per_s"])
            cpu_h.append(w.cpu("httpd") / r["turns"] * 1e6)
            cpu_f.append(w.cpu("fake") / r["turns"] * 1e6)
            cpu_l.append(r["cpu_s"] / r["turns"] * 1e6)
            own = w.cpu("httpd") + w.cpu("fake") + r["cpu_s"]
            foreign.append(w.foreign(own))
            errs += int(r["errors"])
            r["httpd_cpu_s"], r["fake_cpu_s"] = w.cpu("httpd"), w.cpu("fake")
            FACTS.setdefault("throughput", []).append(r)
        row("throughput", "100 conns, 20 tokens, closed loop", "turns/s", min(tps),
            statistics.median(tps), max(tps),
            "errors %d; others used %.0f%% of the CPU" % (errs, 100 * statistics.median(foreign)))
        row("throughput", "  httpd CPU per turn (all children)", "us", min(cpu_h),
            statistics.median(cpu_h), max(cpu_h))
        row("throughput", "  fake backend CPU per turn", "us", min(cpu_f),
            statistics.median(cpu_f), max(cpu_f))
        row("throughput", "  loadgen CPU per turn", "us", min(cpu_l),
            statistics.median(cpu_l), max(cpu_l))
        if PROFILE:
            profile_httpd(httpd, fake)
    finally:
        httpd.stop()
        fake.stop()


def scenario_relay():
    """Tokens paced 5 ms apart: backend write -> client receive."""
    fake = Fake()
    httpd = Httpd(fake.url + " max=10240", "httpd-relay")
    try:
        ws_r, d_r = [], []
        for i in range(RUNS):
            args = dict(conns=100, rate=200, delay_us=5000, label="relay")
            r = loadgen(lg_common(httpd.port, "ws", **args), samples=os.path.join(OUT, "relay-ws"))
            d = loadgen(lg_common(fake.port, "direct", **args),
                        samples=os.path.join(OUT, "relay-direct"))
            ws_r.extend(x / 1000 for x in r["relay"])
            d_r.extend(x / 1000 for x in d["relay"])
            for x in (r, d):
                x.pop("lat"), x.pop("relay")
            FACTS.setdefault("relay", []).append({"ws": r, "direct": d})
        row("relay", "token relay via httpd (100 conns, 5 ms/token)", "us", min(ws_r),
            pctl(ws_r, .5), pctl(ws_r, .99))
        row("relay", "token relay direct from fake", "us", min(d_r), pctl(d_r, .5),
            pctl(d_r, .99))
        row("relay", "ADDED by httpd+module", "us", min(ws_r) - min(d_r),
            pctl(ws_r, .5) - pctl(d_r, .5), pctl(ws_r, .99) - pctl(d_r, .99))
    finally:
        httpd.stop()
        fake.stop()


def scenario_idle():
    fake = Fake()
    # the shipped MPM settings: idle WebSockets are parked, they need no
    # thread (issue 13)
    httpd = Httpd(fake.url + " max=10240", "httpd-idle", conf=shipped_mpm(bench_conf()))
    snaps = {}
    try:
        def on_event(name, fields):
            snaps[name] = {"mem": httpd.mem(), "cpu": httpd.cpu(), "t": time.time(),
                           "open": fields.get("open")}
            log("idle: %s open=%s pss=%d MB threads=%d" % (
                name, fields.get("open"), snaps[name]["mem"].get("Pss", 0) // 1024,
                snaps[name]["mem"].get("Threads", 0)))
        on_event("before", {"open": 0})
        r = loadgen(["--mode", "idle", "--port", httpd.port, "--conns", IDLE_CONNS,
                     "--hold", IDLE_HOLD, "--ping-s", 10, "--sample", 100,
                     "--tokens", TOKENS, "--parallel", 128, "--label", "idle"],
                    on_event=on_event, sync=True, timeout=IDLE_HOLD + 300)
        b, o, h = snaps["before"], snaps["opened"], snaps["held"]
        n = max(1, int(h["open"] or 0))
        FACTS["idle"] = {"result": r, "snaps": snaps}
        d_pss = (h["mem"]["Pss"] - b["mem"]["Pss"]) / n
        d_anon = (h["mem"].get("Pss_Anon", 0) - b["mem"].get("Pss_Anon", 0)) / n
        d_rss = (h["mem"]["Rss"] - b["mem"]["Rss"]) / n
        idle_cpu = (h["cpu"] - o["cpu"]) / (h["t"] - o["t"])
        row("idle", "WebSockets held %ds (of %d opened)" % (IDLE_HOLD, IDLE_CONNS), "conns",
            "", int(h["open"] or 0), "", "connect failures %d" % r["connect_failed"])
        row("idle", "PSS per idle connection (added)", "KB", "", d_pss, "",
            "Pss_Anon %.1f KB, sum of RSS %.1f KB" % (d_anon, d_rss))
        row("idle", "PSS total / connections", "KB", "", h["mem"]["Pss"] / n, "",
            "all %d httpd processes: %d MB" % (h["mem"]["processes"], h["mem"]["Pss"] // 1024))
        row("idle", "httpd threads", "threads", "", h["mem"]["Threads"], "")
        row("idle", "httpd CPU while idle", "% of a core", "", 100 * idle_cpu, "",
            "%.1f us per connection per second" % (idle_cpu * 1e6 / n))
        row("idle", "chat turn on %d sampled conns" % r["lat_n"], "us", r["lat_min_us"],
            r["lat_p50_us"], r["lat_p99_us"], "errors %d" % r["errors"])
    finally:
        httpd.stop()
        fake.stop()


WRK_LAT = re.compile(r"^\s*(50|75|90|99)%\s+([0-9.]+)(us|ms|s)\s*$", re.M)


def wrk(url, seconds, conns=50):
    out = subprocess.run(["wrk", "-t2", "-c%d" % conns, "-d%ds" % seconds, "--latency", url],
                         capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))
    lat = {}
    for q, v, unit in WRK_LAT.findall(out):
        lat[q] = float(v) * {"us": 1, "ms": 1000, "s": 1e6}[unit]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return rps, lat, int(non2xx.group(1)) if non2xx else 0, out


def scenario_http():
    fake = Fake()
    httpd = Httpd(fake.url + " max=10240", "httpd-http")
    try:
        for path in ("/api/health", "/"):
            rps, p50, p99, bad = [], [], [], 0
            for i in range(RUNS):
                x, lat, nb, out = wrk("http://127.0.0.1:%d%s" % (httpd.port, path),
                                      int(DURATION))
                rps.append(x)
                p50.append(lat.get("50", float("nan")))
                p99.append(lat.get("99", float("nan")))
                bad += nb
                FACTS.setdefault("http", []).append({"path": path, "rps": x, "lat": lat,
                                                     "non2xx": nb})
            row("http", "GET %s, wrk 2 threads 50 conns" % path, "req/s", min(rps),
                statistics.median(rps), max(rps), "non-2xx %d" % bad)
            row("http", "  GET %s latency p50 (median run)" % path, "us", min(p50),
                statistics.median(p50), max(p50))
            row("http", "  GET %s latency p99 (median run)" % path, "us", min(p99),
                statistics.median(p99), max(p99))
    finally:
        httpd.stop()
        fake.stop()


def scenario_soak():
    """500 connections, 1000 turns/s for BENCH_SOAK_SECONDS: memory must not grow."""
    fake = Fake()
    httpd = Httpd(fake.url + " max=10240", "httpd-soak")
    series = []
    stop = threading.Event()
    try:
        warm = min(30.0, SOAK / 10)
        result = {}

        def sampler():
            t0 = time.time()
            while not stop.wait(5.0):
                m = httpd.mem()
                series.append((round(time.time() - t0, 1), m.get("Pss", 0),
                               m.get("Pss_Anon", 0), m.get("Rss", 0), m.get("Threads", 0)))

        th = threading.Thread(target=sampler, daemon=True)
        th.start()
        marks = {}

        def on_event(name, fields):
            if name in ("window", "window_end"):
                marks[name] = httpd.mem()
        result = loadgen(lg_common(httpd.port, "ws", 500, 1000, dur=SOAK, warmup=warm,
                                   label="soak"), on_event=on_event, timeout=SOAK + 300)
        stop.set()
        th.join()
        a, b = marks["window"], marks["window_end"]
        FACTS["soak"] = {"result": result, "series": series, "start": a, "end": b}
        row("soak", "500 conns, 1000 turns/s, %ds: turns/s" % SOAK, "turns/s", "",
            result["turns_per_s"], "", "errors %d, p99 %s us" % (result["errors"],
                                                                 fmt(result["lat_p99_us"])))
        row("soak", "httpd PSS start -> end", "MB", a["Pss"] / 1024, b["Pss"] / 1024,
            "", "growth %+.1f MB" % ((b["Pss"] - a["Pss"]) / 1024))
        row("soak", "httpd Pss_Anon start -> end", "MB", a.get("Pss_Anon", 0) / 1024,
            b.get("Pss_Anon", 0) / 1024, "",
            "growth %+.1f MB (heap, stacks)" % ((b.get("Pss_Anon", 0) - a.get("Pss_Anon", 0))
                                                / 1024))
        row("soak", "httpd Pss_Shmem start -> end", "MB", a.get("Pss_Shmem", 0) / 1024,
            b.get("Pss_Shmem", 0) / 1024, "", "the history store being filled")
    finally:
        stop.set()
        httpd.stop()
        fake.stop()


# The store at capacity: an arena of 8,192 blocks for 100 clients whose
# conversations grow by two messages a turn, so that answers evict whole
# conversations all the time (and their clients start new ones).
EVICT_CONF = ("\nChatbotMaxConversations 200\nChatbotHistorySize 2M\n"
              "ChatbotMaxAnswerBytes 64k\nChatbotQuota anonymous sessions=off\n")


def scenario_evict():
    """Throughput with the store full and evicting (compare with throughput)."""
    fake = Fake()
    httpd = Httpd(fake.url + " max=10240", "httpd-evict", conf=bench_conf() + EVICT_CONF)
    try:
        tps, cpu_h, errs, ev = [], [], 0, []
        for i in range(RUNS):
            w = Window(httpd, fake)
            before = evictions(httpd)
            r = loadgen(lg_common(httpd.port, "ws", 100, 0, label="evict"),
                        on_event=w.on_event)
            tps.append(r["turns_per_s"])
            cpu_h.append(w.cpu("httpd") / r["turns"] * 1e6)
            errs += int(r["errors"])
            ev.append((evictions(httpd) - before) / max(1.0, r["turns"]))
            FACTS.setdefault("evict", []).append(r)
        row("evict", "store full, evicting: 100 conns, 20 tokens", "turns/s", min(tps),
            statistics.median(tps), max(tps),
            "errors %d; %.2f evictions per turn" % (errs, statistics.median(ev)))
        row("evict", "  httpd CPU per turn (all children)", "us", min(cpu_h),
            statistics.median(cpu_h), max(cpu_h))
    finally:
        httpd.stop()
        fake.stop()


def evictions(httpd):
    try:
        with urllib.request.urlopen(httpd.url + "/server-status?auto", timeout=5) as r:
            m = re.search(r"(?m)^ChatbotEvictions: (\d+)", r.read().decode())
            return int(m.group(1)) if m else 0
    except (OSError, ValueError):
        return 0


class RedisServer:
    """A redis-server for the redis row: loopback port, AOF with fsync every
    second (what docs/storage.md recommends), data in OUT."""

    def __init__(self):
        self.port = socketpair_port()
        self.dir = os.path.join(OUT, "redis")
        os.makedirs(self.dir, exist_ok=True)
        self.log = open(os.path.join(self.dir, "redis.log"), "w")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             self.dir, "--save", "", "--appendonly", "yes", "--appendfsync", "everysec"],
            stdout=self.log, stderr=self.log)
        end = time.time() + 15
        while time.time() < end:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def scenario_redis():
    """The store on redis next to shm, measured in one run, alternately: 100
    connections closed loop (turns/s) and 100 connections at 1000 turns/s
    (p50 turn time, minus the same turns straight to the fake)."""
    if not shutil.which("redis-server"):
        ROWS.append(("redis", "SKIPPED: redis-server is not installed", "", "", "", "", ""))
        return
    fake = Fake()
    rd = RedisServer()
    shm = Httpd(fake.url + " max=10240", "httpd-store-shm")
    red = Httpd(fake.url + " max=10240", "httpd-store-redis",
                conf=bench_conf() + "\nChatbotStore redis://127.0.0.1:%d/0\n" % rd.port)
    try:
        tps = {"shm": [], "redis": []}
        added = {"shm": [], "redis": []}
        errs = {"shm": 0, "redis": 0}
        for i in range(RUNS):
            d = loadgen(lg_common(fake.port, "direct", 100, 1000, label="store-direct"),
                        samples=os.path.join(OUT, "store-direct"))
            for name, h in (("shm", shm), ("redis", red)):
                r = loadgen(lg_common(h.port, "ws", 100, 0, label="store-" + name))
                tps[name].append(r["turns_per_s"])
                errs[name] += int(r["errors"])
                r = loadgen(lg_common(h.port, "ws", 100, 1000, label="store-lat-" + name),
                            samples=os.path.join(OUT, "store-lat-" + name))
                added[name].append(pctl(r["lat"], .5) - pctl(d["lat"], .5))
                errs[name] += int(r["errors"])
        for name in ("shm", "redis"):
            row("redis", "store %s: 100 conns, 20 tokens, closed loop" % name, "turns/s",
                min(tps[name]), statistics.median(tps[name]), max(tps[name]),
                "errors %d" % errs[name])
            row("redis", "store %s: ADDED p50, 100 conns, 1000 turns/s" % name, "us",
                min(added[name]), statistics.median(added[name]), max(added[name]))
        row("redis", "redis / shm turns/s (median)", "ratio", "",
            statistics.median(tps["redis"]) / max(1e-9, statistics.median(tps["shm"])), "",
            "floor: 2,000 turns/s and added p50 <= 1 ms")
    finally:
        red.stop()
        shm.stop()
        rd.stop()
        fake.stop()


SCENARIOS = [("fake", scenario_fake), ("latency", scenario_latency),
             ("throughput", scenario_throughput), ("redis", scenario_redis),
             ("evict", scenario_evict),
             ("relay", scenario_relay),
             ("idle", scenario_idle), ("http", scenario_http), ("soak", scenario_soak)]


def machine():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ver = subprocess.run([APACHE, "-v"], capture_output=True, text=True).stdout
    m = re.search(r"Server version:\s*(\S+)", ver)
    curl = subprocess.run(["curl", "--version"], capture_output=True, text=True).stdout.split()
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": os.uname().release,
            "httpd": m.group(1) if m else "?", "curl": curl[1] if len(curl) > 1 else "?",
            "mem_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
            "nice": os.nice(0), "sched": {0: "other", 1: "fifo", 2: "rr"}.get(
                os.sched_getscheduler(0), "?"), "quick": QUICK, "runs": RUNS, "duration": DURATION,
            "git": subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                                  capture_output=True, text=True).stdout.strip(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def write_summary(info):
    lines = ["Machine: %(cpu)s, %(cores)d cores, %(mem_gb)d GB, Linux %(kernel)s, "
             "%(httpd)s, libcurl %(curl)s; commit %(git)s, %(date)s; %(runs)d runs x "
             "%(duration)gs per row%(q)s; scheduling %(sched)s, nice %(nice)d." % dict(
                 info, q=" (BENCH_QUICK)" if QUICK else ""),
             "",
             "| scenario | measure | unit | min | median | p99 / max | notes |",
             "|---|---|---|---:|---:|---:|---|"]
    for scn, what, unit, a, b, c, note in ROWS:
        lines.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            scn, what.strip(), unit, fmt(a) if a != "" else "", fmt(b) if b != "" else "",
            fmt(c) if c != "" else "", note))
    text = "\n".join(lines) + "\n"
    with open(os.path.join(OUT, "summary.md"), "w") as f:
        f.write(text)
    return text


def main():
    os.makedirs(OUT, exist_ok=True)
    for b in (LOADGEN, FAKE):
        if not os.access(b, os.X_OK):
            sys.exit("bench: %s is missing (make bench-bin)" % b)
    info = machine()
    FACTS["machine"] = info
    log("results in %s" % OUT)
    for name, fn in SCENARIOS:
        if ONLY and name not in ONLY:
            continue
        log("== %s" % name)
        t0 = time.time()
        try:
            fn()
        except Exception as e:  # keep going: report what failed
            log("scenario %s failed: %r" % (name, e))
            ROWS.append((name, "FAILED: %s" % e, "", "", "", "", ""))
        log("   %s took %.0fs" % (name, time.time() - t0))
        FACTS["rows"] = ROWS
        with open(os.path.join(OUT, "results.json"), "w") as f:
            json.dump(FACTS, f, indent=1, default=str)
    print(write_summary(info))
    latest = os.path.join(BUILD, "bench", "results", "latest")
    if os.path.islink(latest) or os.path.exists(latest):
        os.unlink(latest)
    os.symlink(OUT, latest)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))
    main()
