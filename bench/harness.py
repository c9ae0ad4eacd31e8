"""bench/harness.py - the means of mod_chatbot's benchmarks (bench/bench.py):
the settings read from the environment (documented at the top of bench.py),
the processes (C fake backend, a private httpd, redis-server) and what is
read of them in /proc, the tools that load and measure them (loadgen, wrk,
perf), and the rows of the result table.

The results of one run go to OUT; bench/callgrind.py sets OUT to its own
folder before it uses Fake and loadgen.
"""
import os
import re
import shutil
import socket
import subprocess
import sys
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

def stop_process(proc, logfile):
    """SIGTERM, 5 s to go, then SIGKILL; its log closed."""
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
    logfile.close()


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
        stop_process(self.proc, self.log)


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


class RedisServer:
    """A redis-server for the redis rows: loopback port, data in OUT, the AOF
    on; fsync "always" (what docs/storage.md and docs/deployment.md
    recommend: nothing acknowledged is lost) unless told "everysec" (their
    faster alternative, at most a second of writes lost on a crash)."""

    def __init__(self, fsync="always"):
        self.port = socketpair_port()
        self.dir = os.path.join(OUT, "redis-" + fsync)
        os.makedirs(self.dir, exist_ok=True)
        self.log = open(os.path.join(self.dir, "redis.log"), "w")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             self.dir, "--save", "", "--appendonly", "yes", "--appendfsync", fsync],
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
        stop_process(self.proc, self.log)


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


def lg_common(port, mode, conns, rate, dur=None, warmup=1, tokens=TOKENS, delay_us=0,
              label="-"):
    return ["--mode", mode, "--port", port, "--conns", conns, "--rate", rate,
            "--duration", dur if dur is not None else DURATION, "--warmup", warmup,
            "--tokens", tokens, "--delay-us", delay_us, "--label", label]


# ---- other tools: perf, wrk, server-status ----------------------------------------

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


def evictions(httpd):
    try:
        with urllib.request.urlopen(httpd.url + "/server-status?auto", timeout=5) as r:
            m = re.search(r"(?m)^ChatbotEvictions: (\d+)", r.read().decode())
            return int(m.group(1)) if m else 0
    except (OSError, ValueError):
        return 0
