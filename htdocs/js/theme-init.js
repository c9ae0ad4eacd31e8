// Applies the user's stored theme choice ("light" or "dark") before the first
// paint so the page never flashes the wrong colours. Without a stored choice
// the CSS follows prefers-color-scheme. The status board (wide screens) stays
// closed until the user opens it once ("chatbot.status-hidden" = "0").
// Classic script on purpose: it must run synchronously in <head>; it is tiny
// and has no dependencies.
(function () {
    var statusShown = false;
    try {
        var t = localStorage.getItem('chatbot.theme');
        if (t === 'light' || t === 'dark') {
            document.documentElement.setAttribute('data-theme', t);
        }
        statusShown = localStorage.getItem('chatbot.status-hidden') === '0';
    } catch (e) {
        /* storage disabled: follow the system, status board closed */
    }
    if (!statusShown) {
        document.documentElement.setAttribute('data-status-hidden', '');
    }
}());
