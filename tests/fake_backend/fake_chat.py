"""The fake backend's chat requests (POST /api/chat and
/v1/chat/completions): checking the request as Ollama does, taking the
queued and inline script, then sending the answer streamed (with gzip,
eol, split_utf8, after_done...), as one object, or at once (--bench), in
the wire format of fake_ollama or fake_openai. A mixin of fake_server.Conn.

Part of the fake backend (tests/fake_backend/fake_backend.py, the entry point).
"""

import time
import zlib

from fake_encoding import BadRequest, chunk_frame, gotype, parse_json_body, split_points
from fake_faults import HANG_CAP_S, STREAM_ERROR_MSG
from fake_http import ClientGone, ConnClosed
from fake_ollama import OllamaFormat
from fake_openai import OpenAIFormat
from fake_scripts import MID_FAULTS, ScriptError, extract_directive, make_plan

SPLIT_PAUSE_S = 0.003       # between the pieces of a split_utf8 line


class ChatMixin:
    """Chat methods of fake_server.Conn (uses HttpConn's primitives and
    FaultsMixin's pre_faults and mid_fault)."""

    # -- chat ----------------------------------------------------------------------

    def chat(self, req, rec, fmt_cls):
        """POST /api/chat or /v1/chat/completions."""
        state = self.srv.state
        openai = fmt_cls is OpenAIFormat
        queued = state.pop_script(req.path, chat=True)
        err_fmt = fmt_cls("", rec["id"])
        try:
            body = parse_json_body(req.body)
            model, stream, messages, options = self.validate(body, openai)
        except BadRequest as e:
            self.send_error(err_fmt, 400, str(e))
            return None
        state.update(rec, format=fmt_cls.kind, stream=stream, model=model)

        last_user = ""
        for msg in messages:
            if msg["role"] == "user":
                last_user = msg["content"]
        try:
            echo_text, inline = extract_directive(last_user)
        except ScriptError as e:
            self.send_error(err_fmt, 400, "fake directive: %s" % e)
            return None
        script = queued or {}
        if inline:
            script.update(inline)
        if script:
            state.update(rec, script=dict(script))

        include_usage = bool(openai and isinstance(body.get("stream_options"), dict)
                             and body["stream_options"].get("include_usage") is True)
        fmt = fmt_cls(model, rec["id"], include_usage, script.get("flavor", "ollama"))
        if model == "nosuchmodel" or (self.srv.strict_models and not self.srv.has_model(model)):
            self.send_error(fmt, 404, "model '%s' not found" % model)
            return None
        if not messages and not openai:
            # Ollama answers an empty conversation with a "load" object.
            self.respond(200, OllamaFormat.json_ctype, fmt.load_body())
            return None

        plan = make_plan(self.srv, script, echo_text, stream, messages, options)
        fault = plan.fault
        outcome = self.pre_faults(script, fmt, model, plan)
        if outcome:
            return outcome
        if self.srv.bench and not script:
            self.bench_reply(rec, fmt, plan)
        elif stream and not script.get("ignore_stream"):
            self.stream_reply(rec, fmt, plan)
        else:
            self.json_reply(rec, fmt, plan)
        return "fault:" + fault if fault else None

    def validate(self, body, openai):
        """Check the request like Ollama's JSON binding does; raises BadRequest."""
        def unmarshal(val, field, gotype_name):
            raise BadRequest("json: cannot unmarshal %s into Go struct field %s of type %s"
                             % (gotype(val), field, gotype_name))
        if not isinstance(body, dict):
            raise BadRequest("json: cannot unmarshal %s into Go value of type api.ChatRequest"
                             % gotype(body))
        model = body.get("model")
        if model is not None and not isinstance(model, str):
            unmarshal(model, "ChatRequest.model", "string")
        stream = body.get("stream")
        if stream is not None and not isinstance(stream, bool):
            unmarshal(stream, "ChatRequest.stream", "bool")
        if stream is None:
            stream = not openai   # Ollama streams by default, OpenAI does not
        msgs = body.get("messages")
        if msgs is None:
            msgs = []
        if not isinstance(msgs, list):
            unmarshal(msgs, "ChatRequest.messages", "[]api.Message")
        out = []
        for m in msgs:
            if not isinstance(m, dict):
                unmarshal(m, "ChatRequest.messages", "api.Message")
            role = m.get("role")
            if role is not None and not isinstance(role, str):
                unmarshal(role, "Message.messages.role", "string")
            if not role:
                raise BadRequest("invalid message format: role is required")
            content = m.get("content")
            if content is None:
                content = ""
            elif isinstance(content, list) and openai:
                texts = []
                for part in content:
                    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                        raise BadRequest("invalid message format")
                    if part["type"] == "text":
                        if not isinstance(part.get("text"), str):
                            raise BadRequest("invalid message format")
                        texts.append(part["text"])
                content = "\n".join(texts)
            elif not isinstance(content, str):
                if openai:
                    raise BadRequest("invalid message content type: %s" % gotype(content))
                unmarshal(content, "Message.messages.content", "string")
            out.append({"role": role, "content": content})
        if not model:
            raise BadRequest("model is required")
        options = body.get("options") if isinstance(body.get("options"), dict) else {}
        if openai:
            for key in ("max_completion_tokens", "max_tokens"):
                if isinstance(body.get(key), int) and not isinstance(body.get(key), bool):
                    options = {"num_predict": body[key]}
        return model, stream, out, options

    def send_error(self, fmt, status, msg):
        ctype, body = fmt.error_body(msg, status)
        self.respond(status, ctype, body)

    def stats(self, rec, plan, n_tokens):
        now = time.time_ns()
        start = int(rec["t_start"] * 1e9)
        ready = self.ready_ns or start
        first = int(rec["t_first_token"] * 1e9) if rec["t_first_token"] else now
        return {"total": max(1, now - start), "load": max(1, ready - start),
                "prompt_n": plan.prompt_n, "prompt_ns": max(1, first - ready),
                "eval_n": n_tokens, "eval_ns": max(1, now - first)}

    # -- streamed replies ------------------------------------------------------------

    def _frame(self, data):
        return chunk_frame(data) if self.chunked else data

    def stream_reply(self, rec, fmt, plan):
        state = self.srv.state
        started = [False]
        head = self.head(200, plan.content_type or fmt.stream_ctype, chunked=self.chunked,
                         extra=("Content-Encoding: gzip",) if plan.gzip else ())
        # gzip: one member, flushed after every write so that tokens still
        # stream (what a compressing server or proxy does at best)
        gz = zlib.compressobj(6, zlib.DEFLATED, 31) if plan.gzip else None

        def encode(data):
            if plan.eol != b"\n":
                data = data.replace(b"\n", plan.eol)
            if gz:
                data = gz.compress(data) + gz.flush(zlib.Z_SYNC_FLUSH)
            return data

        def write(data, split=False):
            pieces = split_points(data) if split else [data]
            for i, piece in enumerate(pieces):
                frame = self._frame(encode(piece))
                if not started[0]:
                    frame = head + frame
                    started[0] = True
                if i and not self.wait(SPLIT_PAUSE_S):
                    raise ClientGone()
                self.send(frame)

        def start():
            if not started[0]:
                started[0] = True
                self.send(head)

        def end():
            start()
            if gz:
                tail = gz.flush(zlib.Z_FINISH)
                if tail:
                    self.send(self._frame(tail))
            if self.chunked:
                self.send(b"0\r\n\r\n")
            else:
                self.close_after = True

        events = [("t", t) for t in plan.thinking] + [("c", c) for c in plan.content]
        last_in_done = plan.last_has_content and events and events[-1][0] == "c"
        n_lines = len(events) - 1 if last_in_done else len(events)
        for b in fmt.preamble():
            write(b)
        sent = 0
        for i in range(n_lines):
            if plan.fault in MID_FAULTS and i == plan.after:
                return self.mid_fault(fmt, plan, write, start, end)
            if plan.fault == "garbage" and i == plan.after:
                write(fmt.garbage())
            if i and not self.wait(plan.delay):
                raise ClientGone()
            if not i and not self.wait(0):
                raise ClientGone()
            write(fmt.token(*events[i]), plan.split)
            sent += 1
            if i == 0:
                state.update(rec, t_first_token=time.time(), tokens_sent=sent)
            else:
                rec["tokens_sent"] = sent
        if plan.fault in MID_FAULTS:
            return self.mid_fault(fmt, plan, write, start, end)
        if plan.fault == "garbage" and plan.after >= n_lines:
            write(fmt.garbage())
        if n_lines and not self.wait(plan.delay):
            raise ClientGone()
        if plan.fault != "no_done":
            if last_in_done:
                state.update(rec, tokens_sent=sent + 1,
                             t_first_token=rec["t_first_token"] or time.time())
            st = self.stats(rec, plan, len(events))
            write(fmt.done(st, plan.done_reason, events[-1][1] if last_in_done else None))
            if plan.after_done:
                write(plan.after_done)
            if plan.hold_after_done and not self.wait(plan.hold_after_done):
                raise ClientGone()
            if plan.fault == "drop_after_done":
                self.abort(rst=False)
                raise ConnClosed("fault:drop_after_done")
        end()
        return None

    # -- non-streamed replies ----------------------------------------------------------

    def json_reply(self, rec, fmt, plan):
        state = self.srv.state
        events = [("t", t) for t in plan.thinking] + [("c", c) for c in plan.content]
        for i in range(len(events)):
            if plan.fault in MID_FAULTS and i == plan.after:
                break
            if not self.wait(plan.delay if i else 0):
                raise ClientGone()
            if i == 0:
                state.update(rec, t_first_token=time.time())
        else:
            if events and not self.wait(plan.delay):
                raise ClientGone()
        fault = plan.fault
        if fault == "hang_mid":
            if not self.wait(HANG_CAP_S):
                raise ClientGone()
            self.abort(rst=False)
            raise ConnClosed("fault:hang_mid")
        if fault in ("drop", "drop_rst"):
            self.abort(rst=fault == "drop_rst")
            raise ConnClosed("fault:" + fault)
        if fault == "error_line":
            self.send_error(fmt, 500, plan.error or STREAM_ERROR_MSG)
            return
        thinking = "".join(plan.thinking)
        content = "".join(plan.content)
        st = self.stats(rec, plan, len(events))
        body = fmt.body(content, thinking, st, plan.done_reason, done=fault != "no_done")
        if fault == "garbage":
            body = b"this is not json"
        elif fault == "invalid_json":
            body = body[:len(body) // 2]
        elif fault == "huge_line":
            body = fmt.huge_prefix()
            if body.startswith(b"data: "):
                body = body[6:]
            body += b"x" * (plan.huge_kb * 1024)
        state.update(rec, tokens_sent=len(events))
        self.respond(200, fmt.json_ctype, body)

    # -- benchmark replies ----------------------------------------------------------

    def bench_reply(self, rec, fmt, plan):
        """Everything in one send: no delays, no per-token polling."""
        rec["t_first_token"] = time.time()
        st = self.stats(rec, plan, len(plan.content))
        out = fmt.bench(plan.content, st, plan.stream)
        if not plan.stream:
            self.respond(200, fmt.json_ctype, out)
        else:
            head = self.head(200, fmt.stream_ctype, chunked=self.chunked)
            if self.chunked:
                out.append(b"")
                body = b"".join(b"%x\r\n%s\r\n" % (len(x), x) for x in out)
            else:
                self.close_after = True
                body = b"".join(out)
            self.send(head + body)
        rec["tokens_sent"] = len(plan.content)
