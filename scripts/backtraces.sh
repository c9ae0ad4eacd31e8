#!/bin/sh
# Prints the backtraces of httpd children that dumped core (for CI logs).
# Usage: [CRASH_SINCE=file] scripts/backtraces.sh DIR...
# DIRs: where cores land (CoreDumpDirectory, see CHATBOT_COREDIR in
# scripts/serverroot.py, or the directory of kernel.core_pattern). Only
# cores newer than CRASH_SINCE if given. Threads waiting idly (futex, poll)
# are left out; at most 3 cores.
set -u
n=0
for d in "$@"; do
    [ -d "$d" ] || continue
    for c in "$d"/core*; do
        [ -f "$c" ] || continue
        if [ -n "${CRASH_SINCE:-}" ] && ! [ "$c" -nt "$CRASH_SINCE" ]; then
            continue
        fi
        n=$((n + 1))
        [ $n -le 3 ] || continue
        if ! command -v gdb >/dev/null 2>&1; then
            apt-get install -y -q gdb >/dev/null 2>&1 || { echo "backtraces: no gdb"; exit 0; }
        fi
        echo "== backtraces: $c"
        gdb -q -batch -ex "bt 20" -ex "thread apply all bt 14" /usr/sbin/apache2 "$c" 2>/dev/null |
            awk '/^Thread /{if (keep) printf "%s", buf; buf=$0 "\n"; keep=0; seen=1; next}
                 /^#/ && !seen {print "(faulting thread) " $0; next}
                 /^#/{buf=buf $0 "\n";
                      if ($0 ~ /signal handler called/) keep=1;
                      if ($0 ~ /^#0 / && $0 !~ /futex|__GI___poll|epoll_wait|libc_read|nanosleep|select/) keep=1;
                      next}
                 END{if (keep) printf "%s", buf}' | head -200
    done
done
[ $n -eq 0 ] && echo "backtraces: no core files"
exit 0
