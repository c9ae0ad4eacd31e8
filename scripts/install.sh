#!/bin/sh
# `make install`: installs the module with apxs, the UI into
# /usr/share/mod_chatbot/htdocs, and conf/chatbot.{load,conf} into Debian's
# /etc/apache2/mods-available (enable with `a2enmod chatbot`).
set -eu
cd "$(dirname "$0")/.."
APXS=${APXS:-apxs}
LIBEXEC=$($APXS -q LIBEXECDIR)
DESTDIR=${DESTDIR:-}
install -d "$DESTDIR$LIBEXEC"
install -m 644 build/mod_chatbot.so "$DESTDIR$LIBEXEC/mod_chatbot.so"
install -d "$DESTDIR/usr/share/mod_chatbot"
rm -rf "$DESTDIR/usr/share/mod_chatbot/htdocs"
cp -r htdocs "$DESTDIR/usr/share/mod_chatbot/htdocs"
find "$DESTDIR/usr/share/mod_chatbot/htdocs" -type d -exec chmod 755 {} + \
    -o -type f -exec chmod 644 {} +
install -d "$DESTDIR/usr/share/doc/mod_chatbot"
cp docs/*.md conf/examples/*.conf "$DESTDIR/usr/share/doc/mod_chatbot/"
if [ -d "$DESTDIR/etc/apache2/mods-available" ] || [ -z "$DESTDIR" ] && [ -d /etc/apache2/mods-available ]; then
    install -m 644 conf/chatbot.load "$DESTDIR/etc/apache2/mods-available/chatbot.load"
    if [ ! -e "$DESTDIR/etc/apache2/mods-available/chatbot.conf" ]; then
        install -m 644 conf/chatbot.conf "$DESTDIR/etc/apache2/mods-available/chatbot.conf"
    else
        install -m 644 conf/chatbot.conf "$DESTDIR/etc/apache2/mods-available/chatbot.conf.dist"
    fi
    install -d -o www-data -g www-data "$DESTDIR/var/lib/apache2/chatbot" 2>/dev/null || \
        install -d "$DESTDIR/var/lib/apache2/chatbot"
    echo "installed; enable with: a2enmod chatbot && apachectl -t && systemctl reload apache2"
else
    echo "installed the module into $LIBEXEC; add LoadModule chatbot_module to httpd.conf"
fi
