"""bench/scenarios.py - the scenarios of mod_chatbot's benchmarks
(bench/bench.py runs them in the order of SCENARIOS): what each one starts,
how it drives the load and which rows of the table it adds (harness.row).
"""
import os
import shutil
import statistics
import threading
import time

from harness import (DURATION, FACTS, IDLE_CONNS, IDLE_HOLD, OUT, PROFILE, ROWS, RUNS, SOAK,
                     TOKENS, Fake, Httpd, RedisServer, Window, bench_conf, evictions, fmt,
                     lg_common, loadgen, log, pctl, profile_httpd, row, shipped_mpm, wrk)


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
    """500 connections, 1000 turns/s for BENCH_SOAK_SECONDS: memory must not grow.
    With the shipped MPM settings (2 x 64 threads), as users run it: idle
    WebSockets are parked, so any worker may run a turn, and with bench.conf's
    10,240 threads the first use of each one (its stack, its malloc arena)
    showed as a slowing warm-up of ~180 MB over the 10 minutes
    (docs/performance.md)."""
    fake = Fake()
    httpd = Httpd(fake.url + " max=10240", "httpd-soak", conf=shipped_mpm(bench_conf()))
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


# The added latency of each store at these loads besides the floor's
# (100 connections at 1000 turns/s, where the redis row of a 2-core machine
# is saturated and its p50 is mostly waiting in line): 100 connections at
# half that rate, and one connection in a closed loop (a turn's own round
# trips to redis, nothing queued).
REDIS_LAT_POINTS = ((100, 1000), (100, 500), (1, 0))


def scenario_redis():
    """The store on redis next to shm, measured in one run, alternately: 100
    connections closed loop (turns/s), and the added latency (p50 turn
    time, minus the same turns straight to the fake) at each of
    REDIS_LAT_POINTS. The redis row is redis as docs/storage.md recommends
    it (AOF, appendfsync always); "redis everysec" beside it is the docs'
    faster alternative, a second column."""
    if not shutil.which("redis-server"):
        ROWS.append(("redis", "SKIPPED: redis-server is not installed", "", "", "", "", ""))
        return
    fake = Fake()
    rds, stores = [], [("shm", Httpd(fake.url + " max=10240", "httpd-store-shm"))]
    try:
        for name, fsync in (("redis", "always"), ("redis everysec", "everysec")):
            rd = RedisServer(fsync)
            rds.append(rd)
            stores.append((name, Httpd(fake.url + " max=10240", "httpd-store-" + fsync,
                                       conf=bench_conf() + "\nChatbotStore "
                                       "redis://127.0.0.1:%d/0\n" % rd.port)))
        tps = {name: [] for name, _ in stores}
        added = {(name, pt): [] for name in tps for pt in REDIS_LAT_POINTS}
        errs = {name: 0 for name in tps}
        for i in range(RUNS):
            for name, h in stores:
                r = loadgen(lg_common(h.port, "ws", 100, 0,
                                      label="store-" + name.replace(" ", "-")))
                tps[name].append(r["turns_per_s"])
                errs[name] += int(r["errors"])
            for conns, rate in REDIS_LAT_POINTS:
                tag = "%d-%d" % (conns, rate)
                d = loadgen(lg_common(fake.port, "direct", conns, rate,
                                      label="store-direct-" + tag),
                            samples=os.path.join(OUT, "store-direct-" + tag))
                for name, h in stores:
                    lab = "store-lat-%s-%s" % (name.replace(" ", "-"), tag)
                    r = loadgen(lg_common(h.port, "ws", conns, rate, label=lab),
                                samples=os.path.join(OUT, lab))
                    added[name, (conns, rate)].append(pctl(r["lat"], .5) - pctl(d["lat"], .5))
                    errs[name] += int(r["errors"])
        for name, _ in stores:
            second = "second column: appendfsync everysec" if "everysec" in name else ""
            row("redis", "store %s: 100 conns, 20 tokens, closed loop" % name, "turns/s",
                min(tps[name]), statistics.median(tps[name]), max(tps[name]),
                "; ".join(x for x in ("errors %d" % errs[name], second) if x))
            for conns, rate in REDIS_LAT_POINTS:
                a = added[name, (conns, rate)]
                row("redis", "store %s: ADDED p50, %d conn%s, %s" %
                    (name, conns, "s" if conns > 1 else "",
                     "%d turns/s" % rate if rate else "closed loop"), "us",
                    min(a), statistics.median(a), max(a),
                    "; ".join(x for x in (
                        "" if (conns, rate) == REDIS_LAT_POINTS[0] else "not the floor's load",
                        second) if x))
        row("redis", "redis / shm turns/s (median)", "ratio", "",
            statistics.median(tps["redis"]) / max(1e-9, statistics.median(tps["shm"])), "",
            "floor: 2,000 turns/s and added p50 <= 1 ms (appendfsync always)")
    finally:
        for _, h in stores:
            h.stop()
        for rd in rds:
            rd.stop()
        fake.stop()


SCENARIOS = [("fake", scenario_fake), ("latency", scenario_latency),
             ("throughput", scenario_throughput), ("redis", scenario_redis),
             ("evict", scenario_evict),
             ("relay", scenario_relay),
             ("idle", scenario_idle), ("http", scenario_http), ("soak", scenario_soak)]
