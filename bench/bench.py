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

This file is the driver: it runs the scenarios BENCH_ONLY names and writes
results.json and summary.md. The scenarios are in bench/scenarios.py; the
processes, the measuring tools and the table's rows in bench/harness.py.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time

from harness import (APACHE, BUILD, DURATION, FACTS, FAKE, LOADGEN, ONLY, OUT, QUICK, REPO, ROWS,
                     RUNS, fmt, log)
from scenarios import SCENARIOS


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
