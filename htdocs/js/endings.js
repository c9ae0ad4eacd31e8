// How answers that ended early ended, as this browser saw it. History marks
// an answer cut short only as "interrupted", whether by the user's Stop or by
// an error; the page keeps the difference (and a failure's code and the
// server's sentence) in localStorage, shared by the browser's tabs and
// bounded, so that a reload or another tab still shows a failure with its
// reason, and a Stop as a Stop (docs/ui.md, "How an answer ended").

const ENDINGS_KEY = 'chatbot.endings';
const ENDINGS_MAX = 300;

function store(value) {
    try { localStorage.setItem(ENDINGS_KEY, value); } catch { /* storage full or disabled */ }
}
function recall() {
    try { return localStorage.getItem(ENDINGS_KEY); } catch { return null; }
}

function loadEndings() {
    try {
        const o = JSON.parse(recall() || '{}');
        return o && typeof o === 'object' ? o : {};
    } catch { return {}; }
}

/**
 * ending: {stopped: true} or {code, message}; text: the answer as it ended
 * (a later answer at the same index, after a regenerate, is another text).
 */
export function rememberEnding(cid, index, ending, text) {
    const all = loadEndings();
    all[cid + ':' + index] = { ...ending, n: String(text || '').length, t: Date.now() };
    const keys = Object.keys(all);
    if (keys.length > ENDINGS_MAX) {
        keys.sort((a, b) => (all[a].t || 0) - (all[b].t || 0));
        for (const k of keys.slice(0, keys.length - ENDINGS_MAX)) delete all[k];
    }
    store(JSON.stringify(all));
}

export function recallEnding(cid, index, text) {
    if (!cid || typeof index !== 'number') return null;
    const e = loadEndings()[cid + ':' + index];
    if (!e || typeof e !== 'object' || e.n !== String(text || '').length) return null;
    if (e.stopped === true) return { stopped: true };
    return typeof e.code === 'string' ? { code: e.code, message: typeof e.message === 'string' ? e.message : '' } : null;
}
