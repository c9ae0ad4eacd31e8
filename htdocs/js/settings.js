// Per-chat settings (docs/protocol.md "Settings", docs/ui.md): the gear in
// the chat header opens a dialog with the conversation's model, temperature
// and system prompt, showing only what the server allows (hello.settings).
// On a new chat the gear first creates the conversation (launch, as the
// first message would), so the first turn already uses what is chosen.
// Reads with {"type":"settings","conversation_id"} and saves with the whole
// form ("reset" first, then the chosen values), so the dialog is what the
// next turn uses.

import { toast, announce } from './ui.js';

const GET_ID = 'settings-get';
const SET_ID = 'settings-set';
const PEEK_ID = 'settings-peek'; // quiet read when a conversation opens (header)

const num = (v, d) => (typeof v === 'number' && Number.isFinite(v) ? v : d);

export class Settings {
    /** send(obj) -> bool; currentConv() -> conversation id or null;
     *  onChange() after the shown conversation's settings are known;
     *  quiet(obj): send without telling the user when it cannot be sent;
     *  canCreate() -> a new chat could get its conversation now;
     *  create() asks for it (the dialog opens once setConversation names it). */
    constructor({ send, quiet, currentConv, onChange, canCreate, create }) {
        this.send = send;
        this.quiet = quiet || send;
        this.currentConv = currentConv;
        this.canCreate = canCreate || (() => false);
        this.create = create || (() => false);
        this.openWhenCreated = false;
        this.onChange = onChange || (() => {});
        this.policy = { allowed: [], temperature_range: { min: 0, max: 2 }, system_max: 4096 };
        this.conv = null;
        this.data = null;      // the last settings reply for this.conv
        this.opening = false;  // a read for the dialog is on its way
        this.btn = document.getElementById('settings-toggle');
        this.dlg = document.getElementById('settings-dialog');
        this.f = {
            modelRow: document.getElementById('settings-model-row'),
            model: document.getElementById('settings-model'),
            tempRow: document.getElementById('settings-temp-row'),
            range: document.getElementById('settings-temp-range'),
            number: document.getElementById('settings-temp-number'),
            tempDefault: document.getElementById('settings-temp-default'),
            tempHint: document.getElementById('settings-temp-hint'),
            sysRow: document.getElementById('settings-system-row'),
            system: document.getElementById('settings-system'),
            sysHint: document.getElementById('settings-system-hint'),
            error: document.getElementById('settings-error'),
            save: document.getElementById('settings-save'),
            reset: document.getElementById('settings-reset'),
        };
        this.btn.addEventListener('click', () => this.open());
        this.f.range.addEventListener('input', () => {
            this.f.number.value = this.f.range.value;
            this.f.tempDefault.checked = false;
        });
        this.f.number.addEventListener('input', () => {
            const v = Number(this.f.number.value);
            if (this.f.number.value !== '' && Number.isFinite(v)) this.f.range.value = String(v);
            this.f.tempDefault.checked = false;
        });
        this.f.tempDefault.addEventListener('change', () => this.renderTempState());
        this.f.system.addEventListener('input', () => this.renderSystemHint());
        this.f.save.addEventListener('click', () => this.save());
        this.f.reset.addEventListener('click', () => this.save(true));
        this.dlg.addEventListener('keydown', (e) => {
            // Enter in a one-line field saves (a textarea keeps its newlines)
            if (e.key === 'Enter' && e.target.tagName !== 'TEXTAREA' && e.target.tagName !== 'BUTTON') {
                e.preventDefault();
                this.save();
            }
        });
        this.dlg.addEventListener('close', () => { if (this.btn.isConnected && !this.btn.hidden) this.btn.focus(); });
    }

    allowed(what) { return this.policy.allowed.includes(what); }

    setPolicy(p) {
        if (!p || typeof p !== 'object') p = {};
        const r = p.temperature_range || {};
        this.policy = {
            allowed: Array.isArray(p.allowed) ? p.allowed.filter((a) => typeof a === 'string') : [],
            temperature_range: { min: num(r.min, 0), max: num(r.max, 2) },
            system_max: num(p.system_max, 4096),
        };
        const before = this.conv;
        this.setConversation(this.currentConv());
        if (this.conv && this.conv === before && !this.data) this.peek();
    }

    setConversation(id) {
        if (id !== this.conv) {
            this.conv = id || null;
            this.data = null;
            this.btn.dataset.custom = 'false';
            if (this.dlg.open) this.dlg.close();
            // the header shows the conversation's own model
            this.peek();
            if (this.conv && this.openWhenCreated) {
                this.openWhenCreated = false;
                this.open();
            }
        }
        this.btn.hidden = (!this.conv && !this.canCreate()) || this.policy.allowed.length === 0;
    }

    peek() {
        if (this.conv && this.allowed('model')) {
            this.quiet({ type: 'settings', conversation_id: this.conv, id: PEEK_ID });
        }
    }

    /** The launch for the gear failed: nothing opens later. */
    createFailed() { this.openWhenCreated = false; }

    /** The model the shown conversation chose (null: the bot's). */
    model() {
        return this.data && this.data.conversation_id === this.conv && typeof this.data.model === 'string'
            ? this.data.model : null;
    }

    open() {
        if (!this.conv) {
            // a new chat: its conversation first (the next setConversation opens)
            if (this.canCreate() && this.create()) this.openWhenCreated = true;
            return;
        }
        this.opening = true;
        if (!this.send({ type: 'settings', conversation_id: this.conv, id: GET_ID })) this.opening = false;
    }

    // ------------------------------------------------------------ frames
    onFrame(f) {
        if (f.conversation_id !== this.conv) return;
        this.data = f;
        this.btn.dataset.custom = String(f.model != null || f.system != null || f.temperature != null);
        this.onChange();
        if (f.id === SET_ID) {
            if (this.dlg.open) this.dlg.close();
            announce('Chat settings saved.');
            toast('Chat settings saved.');
            return;
        }
        if (f.id === GET_ID && this.opening) {
            this.opening = false;
            this.fill(f);
            this.f.error.hidden = true;
            if (!this.dlg.open) this.dlg.showModal();
            const first = [this.f.model, this.f.range, this.f.system].find((x) => !x.closest('[hidden]'));
            if (first) first.focus();
        }
    }

    /** Errors of our requests: shown in the dialog (or as a toast). */
    onError(f) {
        if (f.id === PEEK_ID) return true; // the header keeps the bot's model
        if (f.id !== GET_ID && f.id !== SET_ID) return false;
        const msg = typeof f.message === 'string' && f.message ? f.message : 'The settings could not be changed.';
        if (f.id === GET_ID) {
            this.opening = false;
            toast('Chat settings are not available: ' + msg, { error: true });
            return true;
        }
        this.f.error.textContent = msg.charAt(0).toUpperCase() + msg.slice(1) + '.';
        this.f.error.hidden = false;
        this.f.save.disabled = false;
        return true;
    }

    // ------------------------------------------------------------ form
    fill(d) {
        const defaults = d.defaults || {};
        // model
        this.f.modelRow.hidden = !this.allowed('model');
        const models = Array.isArray(d.models) ? d.models.filter((m) => typeof m === 'string') : [];
        const opts = [new Option('Bot default (' + (defaults.model || '?') + ')', '')];
        for (const m of models) if (m !== defaults.model) opts.push(new Option(m, m));
        if (d.model && !models.includes(d.model)) opts.push(new Option(d.model, d.model));
        this.f.model.replaceChildren(...opts);
        this.f.model.value = d.model || '';
        // temperature
        this.f.tempRow.hidden = !this.allowed('temperature');
        const { min, max } = this.policy.temperature_range;
        for (const inp of [this.f.range, this.f.number]) { inp.min = String(min); inp.max = String(max); }
        const t = typeof d.temperature === 'number' ? d.temperature
            : typeof defaults.temperature === 'number' ? defaults.temperature : Math.min(max, Math.max(min, 0.8));
        this.f.range.value = String(t);
        this.f.number.value = String(t);
        this.f.tempDefault.checked = d.temperature == null;
        this.f.tempHint.textContent = 'From ' + min + ' (focused) to ' + max + ' (creative).' +
            (typeof defaults.temperature === 'number' ? ' The bot uses ' + defaults.temperature + '.' : '');
        this.renderTempState();
        // system prompt
        this.f.sysRow.hidden = !this.allowed('system');
        this.f.system.value = typeof d.system === 'string' ? d.system : '';
        this.f.system.placeholder = defaults.system ? "Leave empty to use the bot's own" : 'No system prompt';
        this.renderSystemHint();
        this.f.save.disabled = false;
    }

    renderTempState() {
        this.f.range.setAttribute('aria-valuetext', this.f.tempDefault.checked ? "the bot's default" : this.f.range.value);
    }

    renderSystemHint() {
        const n = new TextEncoder().encode(this.f.system.value).length;
        const max = this.policy.system_max;
        this.f.sysHint.textContent = n + ' / ' + max + ' bytes';
        this.f.system.setAttribute('aria-invalid', String(n > max));
    }

    save(reset = false) {
        if (!this.conv) return;
        const obj = { type: 'settings', conversation_id: this.conv, id: SET_ID, reset: true };
        if (!reset) {
            if (this.allowed('model')) obj.model = this.f.model.value;
            if (this.allowed('system')) obj.system = this.f.system.value;
            if (this.allowed('temperature') && !this.f.tempDefault.checked) {
                const v = Number(this.f.number.value);
                const { min, max } = this.policy.temperature_range;
                if (this.f.number.value === '' || !Number.isFinite(v) || v < min || v > max) {
                    this.f.error.textContent = 'The temperature must be between ' + min + ' and ' + max + '.';
                    this.f.error.hidden = false;
                    this.f.number.focus();
                    return;
                }
                obj.temperature = v;
            }
            if (this.allowed('system') && new TextEncoder().encode(obj.system).length > this.policy.system_max) {
                this.f.error.textContent = 'The system prompt is too long (at most ' + this.policy.system_max + ' bytes).';
                this.f.error.hidden = false;
                this.f.system.focus();
                return;
            }
        }
        this.f.error.hidden = true;
        this.f.save.disabled = true;
        if (!this.send(obj)) this.f.save.disabled = false;
    }
}
