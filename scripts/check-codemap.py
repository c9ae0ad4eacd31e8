#!/usr/bin/env python3
"""Checks docs/codemap.md, the map of the code: every file git tracks is on
exactly one line (its own, or its folder's for data folders such as the
fuzz corpora), no line is there twice, and every line names a tracked file
or folder. Run by `make check-codemap` (part of `make test`)."""
import collections
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAP = os.path.join(REPO, "docs", "codemap.md")


def main():
    doc = open(MAP, encoding="utf-8").read()
    entries = [m.group(1) for m in re.finditer(r"^- ([^\s:]+/?):", doc, re.M)]
    out = subprocess.run(["git", "-C", REPO, "ls-files"], capture_output=True, text=True)
    if out.returncode != 0:
        print("check-codemap: not a git checkout; skipped")
        return 0
    files = out.stdout.split()
    folders = [e for e in entries if e.endswith("/")]
    count = collections.Counter(entries)
    covered = collections.Counter()
    problems = ["%s: on %d lines" % (e, n) for e, n in count.items() if n > 1]
    for f in files:
        owners = [e for e in entries if e == f] + [d for d in folders if f.startswith(d)]
        if len(owners) != 1:
            problems.append("%s: %s" % (f, "not on the map" if not owners
                                        else "on %d lines (%s)" % (len(owners),
                                                                   ", ".join(owners))))
        for o in owners:
            covered[o] += 1
    problems += ["%s: names no tracked file" % e for e in entries if not covered[e]]
    if problems:
        print("check-codemap: docs/codemap.md must have one line per file:")
        print("\n".join("  " + p for p in problems))
        return 1
    print("check-codemap: %d files on %d lines of docs/codemap.md" % (len(files),
                                                                     len(entries)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
