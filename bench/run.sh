#!/bin/sh
# bench/run.sh - `make bench`: installs the benchmark tools (wrk, perf,
# valgrind), builds the module and the bench binaries, raises the limits a
# 10,000-connection run needs and runs bench/bench.py (see
# docs/performance.md; BENCH_QUICK=1 for a short run).
set -eu
cd "$(dirname "$0")/.."
./scripts/deps.sh bench
make -s module bench-bin
# 10,000 WebSockets: the load generator holds one descriptor per connection,
# httpd three (client socket and libcurl's wakeup pair) plus backend sockets.
ulimit -n 1048576 2>/dev/null || ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
# The headline numbers run as any process would (BENCH_SCHED=none, the
# default). On a shared machine the neighbours' load swamps the numbers; as
# root, BENCH_SCHED=rt puts every process in SCHED_RR priority 1 (the kernel
# still leaves 5% of each second to others) and BENCH_SCHED=nice uses nice
# -15: the summary says which, and docs/performance.md keeps such runs in a
# separate, labelled column.
sched=${BENCH_SCHED:-none}
if [ "$(id -u)" -eq 0 ]; then
    case $sched in
    rt) exec chrt -r 1 /usr/bin/python3 bench/bench.py "$@" ;;
    nice) exec nice -n -15 /usr/bin/python3 bench/bench.py "$@" ;;
    esac
fi
exec /usr/bin/python3 bench/bench.py "$@"
