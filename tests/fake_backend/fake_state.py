"""The fake backend's shared state: the queue of scripts (POST
/_fake/script) and the log of recorded requests that tests query
(GET /_fake/requests, wait_closed), with the lock and condition that guard
them across connection threads.

Part of the fake backend (tests/fake_backend/fake_backend.py, the entry point).
"""

import collections
import json
import threading
import time

MAX_RECORDS = 10000


class State:
    def __init__(self):
        self.cond = threading.Condition()
        self.scripts = collections.deque()
        self.records = collections.OrderedDict()
        self.next_id = 1

    def queue(self, scripts):
        with self.cond:
            self.scripts.extend(scripts)
            return len(self.scripts)

    def pop_script(self, path, chat):
        """The first queued script for this request: one naming its path, or,
        for a chat request, one without a path."""
        with self.cond:
            for i, s in enumerate(self.scripts):
                p = s.get("path")
                if p == path or (p is None and chat):
                    del self.scripts[i]
                    return dict(s)
        return None

    def reset(self):
        with self.cond:
            self.scripts.clear()
            self.records.clear()
            self.cond.notify_all()

    def new_record(self, req, peer):
        body = None
        if req.body:
            try:
                body = json.loads(req.body.decode("utf-8"))
            except (ValueError, RecursionError):
                body = req.body.decode("utf-8", "replace")
        with self.cond:
            rid = self.next_id
            self.next_id += 1
            rec = {
                "id": rid, "method": req.method, "path": req.path,
                "target": req.target, "peer": peer,
                "headers": dict(req.headers), "body": body,
                "model": body.get("model") if isinstance(body, dict) else None,
                "format": None, "stream": None, "script": None,
                "status": None, "tokens_sent": 0,
                "t_start": req.t_start, "t_first_token": None, "t_end": None,
                "client_closed_at": None, "outcome": None,
            }
            self.records[rid] = rec
            while len(self.records) > MAX_RECORDS:
                self.records.popitem(last=False)
            return rec

    def update(self, rec, **kw):
        with self.cond:
            rec.update(kw)

    def finish(self, rec, **kw):
        with self.cond:
            rec.update(kw)
            rec["t_end"] = time.time()
            self.cond.notify_all()

    def snapshot(self, rid=None):
        with self.cond:
            if rid is None:
                return [dict(r) for r in self.records.values()]
            r = self.records.get(rid)
            return dict(r) if r else None

    def wait_ended(self, rid, timeout):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                r = self.records.get(rid)
                if r is not None and r["t_end"] is not None:
                    return dict(r), True
                left = deadline - time.monotonic()
                if left <= 0:
                    return (dict(r) if r else None), False
                self.cond.wait(left)
