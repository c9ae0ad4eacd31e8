#!/bin/sh
# Fails if a .c file of mod_chatbot/ (glue or core) declares a function
# prototype that is not static and not for a function the same file defines
# (at file scope or inside a function): a function used across files is
# declared once, in a header (docs/STYLE: no local prototypes).
#   ./scripts/check-prototypes.sh [files...]   (default: mod_chatbot/**/*.c)
set -eu
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || set -- mod_chatbot/*.c mod_chatbot/core/*.c
bad=$(awk '
# One file at a time: comments, string and character literals and
# preprocessor lines are dropped, the rest is cut into statements at
# ";", "{" and "}". A statement "[extern] type [*]name(...)" with no "="
# ended by ";" is a prototype; ended by "{" at file scope, a definition.
function flush_file(   i) {
    for (i = 1; i <= nproto; i++) {
        if (!(pname[i] in defined)) {
            printf "%s:%d: %s\n", FILENAME_prev, pline[i], ptext[i]
        }
    }
    nproto = 0
    split("", defined)
}
function statement(s, end,   t, name, kw) {
    gsub(/[ \t\n]+/, " ", s)
    sub(/^ /, "", s)
    sub(/ $/, "", s)
    if (s == "" || index(s, "=") || index(s, "(") == 0) {
        return
    }
    if (s !~ /^(extern |static |inline |const |unsigned |signed |volatile )*((struct|enum|union) )?[A-Za-z_][A-Za-z0-9_]*( const)?( |( ?\*+ ?(const )?)+)[A-Za-z_][A-Za-z0-9_]* ?\(/) {
        return
    }
    split(s, kw, " ")
    if (kw[1] ~ /^(return|else|case|goto|do|sizeof|typedef)$/) {
        return
    }
    t = s
    sub(/ ?\(.*/, "", t)
    name = t
    sub(/.*[ *]/, "", name)
    if (end == "{") {
        if (depth == 0) {
            defined[name] = 1
        }
        return
    }
    if (s ~ /^(extern |inline |const )*static /) {
        return
    }
    nproto++
    pname[nproto] = name
    pline[nproto] = stmt_line
    ptext[nproto] = s ";"
}
FNR == 1 {
    if (NR > 1) {
        flush_file()
    }
    FILENAME_prev = FILENAME
    incomment = 0
    inpp = 0
    depth = 0
    buf = ""
    stmt_line = 1
}
{
    line = $0
    if (inpp) {
        inpp = (line ~ /\\$/)
        next
    }
    if (!incomment && line ~ /^[ \t]*#/) {
        inpp = (line ~ /\\$/)
        next
    }
    out = ""
    while (length(line) > 0) {
        if (incomment) {
            p = index(line, "*/")
            if (p == 0) {
                line = ""
                break
            }
            line = substr(line, p + 2)
            incomment = 0
            out = out " "
            continue
        }
        c = substr(line, 1, 1)
        c2 = substr(line, 1, 2)
        if (c2 == "/*") {
            incomment = 1
            line = substr(line, 3)
            continue
        }
        if (c2 == "//") {
            break
        }
        if (c == "\"" || c == "\047") {
            # skip the literal, honouring backslash escapes
            i = 2
            while (i <= length(line)) {
                d = substr(line, i, 1)
                if (d == "\\") {
                    i += 2
                    continue
                }
                if (d == c) {
                    break
                }
                i++
            }
            line = substr(line, i + 1)
            out = out "0"
            continue
        }
        out = out c
        line = substr(line, 2)
    }
    # cut into statements
    while (length(out) > 0) {
        if (buf ~ /^[ \t]*$/) {
            stmt_line = FNR
        }
        if (match(out, /[;{}]/) == 0) {
            buf = buf " " out
            break
        }
        c = substr(out, RSTART, 1)
        buf = buf " " substr(out, 1, RSTART - 1)
        out = substr(out, RSTART + 1)
        if (c == "}") {
            depth--
            buf = ""
            continue
        }
        statement(buf, c)
        if (c == "{") {
            depth++
        }
        buf = ""
    }
    if (buf !~ /^[ \t]*$/) {
        buf = buf "\n"
    }
}
END {
    if (NR > 0) {
        flush_file()
    }
}
' "$@")
if [ -n "$bad" ]; then
    echo "check-prototypes: a function used across files is declared in a header," >&2
    echo "not in a .c file; move these declarations:" >&2
    echo "$bad" >&2
    exit 1
fi
echo "check-prototypes: no local prototypes ($# files)"
