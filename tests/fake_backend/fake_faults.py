"""The fake backend's faults that stop or spoil an answer: those that act
before any token (first_delay_ms, refuse, hang_headers, status=,
wrong_content_type, empty, and garbage/drop for non-chat paths) and those
that end a stream after `after` tokens (hang_mid, drop, drop_rst,
error_line, invalid_json, huge_line), with the error messages Ollama sends.
A mixin of fake_server.Conn. Which faults exist is fake_scripts.FAULTS.

Part of the fake backend (tests/fake_backend/fake_backend.py, the entry point).
"""

import time

from fake_encoding import reason_phrase
from fake_http import ClientGone, ConnClosed

HANG_CAP_S = 120.0          # hang faults give up after this long

BUSY_MSG = "server busy, please try again.  maximum pending requests exceeded"
STREAM_ERROR_MSG = "an error was encountered while running the model: unexpected EOF"
RUNNER_ERROR_MSG = "llama runner process has terminated: exit status 2"

HTML_BODY = (b"<!DOCTYPE html>\n<html><head><title>Welcome</title></head>"
             b"<body><h1>It works!</h1><p>This is not an LLM backend.</p></body></html>\n")


class FaultsMixin:
    """Fault methods of fake_server.Conn (uses HttpConn's wait, abort,
    respond and ChatMixin's send_error)."""

    def pre_faults(self, script, fmt, model, plan=None):
        """Faults that act before any token: first_delay_ms, refuse,
        hang_headers, status, wrong_content_type, empty. Returns the outcome
        when one of them answered the request."""
        first_delay = script.get("first_delay_ms", 0) / 1000.0
        if first_delay and not self.wait(first_delay):
            raise ClientGone()
        self.ready_ns = time.time_ns()
        fault = script.get("fault")
        if fault == "refuse":
            self.abort(rst=True)
            raise ConnClosed("fault:refuse")
        if fault == "hang_headers":
            if not self.wait(HANG_CAP_S):
                raise ClientGone()
            self.abort(rst=False)
            raise ConnClosed("fault:hang_headers")
        status = script.get("status")
        if status:
            defaults = {500: RUNNER_ERROR_MSG, 503: BUSY_MSG}
            if model is not None:
                defaults[400] = '"%s" does not support chat' % model
                defaults[404] = "model '%s' not found" % model
            msg = script.get("error") or defaults.get(status) or reason_phrase(status).lower()
            self.send_error(fmt, status, msg)
            return "fault:status"
        if fault == "wrong_content_type":
            self.respond(200, "text/html; charset=utf-8", HTML_BODY)
            return "fault:wrong_content_type"
        if fault == "empty":
            stream = plan.stream if plan else False
            self.respond(200, fmt.stream_ctype if stream else fmt.json_ctype, b"")
            return "fault:empty"
        if fault == "garbage" and plan is None:
            self.respond(200, "application/json; charset=utf-8", b"this is not json")
            return "fault:garbage"
        if fault in ("drop", "drop_rst") and plan is None:
            self.abort(rst=fault == "drop_rst")
            raise ConnClosed("fault:" + fault)
        return None

    def mid_fault(self, fmt, plan, write, start, end):
        fault = plan.fault
        if fault == "hang_mid":
            start()
            if not self.wait(HANG_CAP_S):
                raise ClientGone()
            self.abort(rst=False)
            raise ConnClosed("fault:hang_mid")
        if fault in ("drop", "drop_rst"):
            start()
            self.abort(rst=fault == "drop_rst")
            raise ConnClosed("fault:" + fault)
        if fault == "error_line":
            write(fmt.error_line(plan.error or STREAM_ERROR_MSG))
        elif fault == "invalid_json":
            write(fmt.truncated())
        elif fault == "huge_line":
            write(fmt.huge_prefix())
            left = plan.huge_kb * 1024
            block = b"x" * 65536
            while left > 0:
                if not self.wait(0):
                    raise ClientGone()
                write(block[:min(left, len(block))])
                left -= len(block)
        end()
        return None
