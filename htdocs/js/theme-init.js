// Applies the user's stored theme choice ("light" or "dark") before the first
// paint so the page never flashes the wrong colours. Without a stored choice
// the CSS follows prefers-color-scheme. Classic script on purpose: it must run
// synchronously in <head>; it is tiny and has no dependencies.
(function () {
    try {
        var t = localStorage.getItem('chatbot.theme');
        if (t === 'light' || t === 'dark') {
            document.documentElement.setAttribute('data-theme', t);
        }
        if (localStorage.getItem('chatbot.status-hidden') === '1') {
            document.documentElement.setAttribute('data-status-hidden', '');
        }
    } catch (e) {
        /* storage disabled: follow the system */
    }
}());
