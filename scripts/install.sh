#!/bin/sh
# `make install`: installs the module with apxs, the UI into
# /usr/share/mod_chatbot/htdocs, the docs and examples into
# /usr/share/doc/mod_chatbot, and (Debian/Ubuntu layout) conf/chatbot.load
# and conf/chatbot.conf into /etc/apache2/mods-available, so that
# `a2enmod chatbot` enables it.
#
# DESTDIR stages everything under another root (packaging, tests):
#     DESTDIR=/tmp/stage scripts/install.sh
# An existing, locally edited chatbot.conf is never overwritten: the new one
# is installed next to it as chatbot.conf.dist.
set -eu
cd "$(dirname "$0")/.."
APXS=${APXS:-apxs}
DESTDIR=${DESTDIR:-}
LIBEXEC=$($APXS -q LIBEXECDIR)
SYSCONF=$($APXS -q SYSCONFDIR)
SHARE=/usr/share/mod_chatbot
DOC=/usr/share/doc/mod_chatbot
STATE=/var/lib/apache2/chatbot

if [ ! -f build/mod_chatbot.so ]; then
    echo "install.sh: build/mod_chatbot.so is missing; run 'make' first" >&2
    exit 1
fi

# The module, installed by apxs (-i; no -a: Debian enables modules with
# a2enmod, other systems need one LoadModule line, printed below).
install -d "$DESTDIR$LIBEXEC"
$APXS -i -S LIBEXECDIR="$DESTDIR$LIBEXEC" -n chatbot build/mod_chatbot.so
chmod 644 "$DESTDIR$LIBEXEC/mod_chatbot.so"

# The browser UI.
install -d "$DESTDIR$SHARE"
rm -rf "$DESTDIR$SHARE/htdocs"
if [ -d htdocs ]; then
    cp -r htdocs "$DESTDIR$SHARE/htdocs"
    find "$DESTDIR$SHARE/htdocs" -type d -exec chmod 755 {} + \
        -o -type f -exec chmod 644 {} +
else
    echo "install.sh: warning: no htdocs/ (run 'make ui'); the UI is not installed" >&2
fi

# Documentation and configuration examples.
install -d "$DESTDIR$DOC/examples"
install -m 644 docs/*.md "$DESTDIR$DOC/"
install -m 644 conf/examples/*.conf conf/chatbot-log.conf conf/chatbot-csp.conf \
    "$DESTDIR$DOC/examples/"

# History file directory: written by the parent process (root) at stop and
# read at start; conversations are private, so only root may read it.
install -d -m 700 "$DESTDIR$STATE"

if [ -d "$SYSCONF/mods-available" ] || [ -d "$DESTDIR$SYSCONF/mods-available" ]; then
    avail="$DESTDIR$SYSCONF/mods-available"
    install -d "$avail"
    sed "s#/usr/lib/apache2/modules/#$LIBEXEC/#" conf/chatbot.load >"$avail/chatbot.load.new"
    chmod 644 "$avail/chatbot.load.new"
    mv "$avail/chatbot.load.new" "$avail/chatbot.load"
    if [ -e "$avail/chatbot.conf" ] && ! cmp -s conf/chatbot.conf "$avail/chatbot.conf"; then
        install -m 644 conf/chatbot.conf "$avail/chatbot.conf.dist"
        echo "kept your $SYSCONF/mods-available/chatbot.conf; the new one is chatbot.conf.dist"
    else
        install -m 644 conf/chatbot.conf "$avail/chatbot.conf"
    fi
    echo "installed; enable with: a2enmod chatbot && apachectl -t && systemctl reload apache2"
else
    echo "installed $LIBEXEC/mod_chatbot.so; add to httpd.conf:"
    echo "    LoadModule chatbot_module $LIBEXEC/mod_chatbot.so"
    echo "and the settings from $DOC/examples (see $DOC/deployment.md)"
fi
