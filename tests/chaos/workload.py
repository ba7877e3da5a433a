"""Concurrent clients that create, update (If-Match), delete and read a few clusters through
random nodes, recording every operation and what they were told.

Every write carries its own Idempotency-Key. When an attempt's outcome is unknown (a 504, a
timeout, a broken connection), the client retries the same request, with the same key, on
random nodes until an answer settles it or `retry_seconds` pass (also after the workload is
told to stop): the op stays one op of the history, from its first call to its last answer,
and may still end unknown.
"""

from __future__ import annotations

import http.client
import random
import threading
import time
import urllib.error
from collections import Counter
from dataclasses import dataclass, field

from tests.chaos.history import History, Kind, OpHandle
from tests.system.http import Reply, call

TEAM = "chaos"
REQUEST_TIMEOUT = 4.0
RETRY_PAUSE = 0.2
FAIL_PAUSE = 0.05
# Refusals that prove a first attempt wrote nothing (its key was never proposed before).
REFUSALS = {400, 401, 403, 404, 409, 412, 422, 503}


def body(key: str, value: str) -> dict:
    return {"name": key, "team": TEAM, "serviceName": value,
            "endpoints": [{"host": "127.0.0.1", "port": 9000}]}


@dataclass
class Counts:
    """What the clients were told, over the whole run."""

    ok: int = 0
    fail: int = 0
    unknown: int = 0
    attempts: int = 0
    resolved_by_retry: int = 0
    answers: Counter = field(default_factory=Counter)  # HTTP status (or "none") per attempt

    def total(self) -> int:
        return self.ok + self.fail + self.unknown


class Workload:
    """`clients` threads issuing random operations until stopped (bounded in count)."""

    def __init__(self, apis: list[str], token: str, history: History, *, keys: int = 3,
                 clients: int = 5, seed: int = 1, max_ops: int = 20_000,
                 retry_seconds: float = 8.0, first_process: int = 0) -> None:
        self.apis = apis
        self.token = token
        self.history = history
        self.keys = [f"k{i}" for i in range(keys)]
        self.clients = clients
        self.seed = seed
        self.max_ops = max_ops
        self.retry_seconds = retry_seconds
        # Client processes are numbered from here: workloads run one after another on one
        # history keep their ops (and written values) apart.
        self.first_process = first_process
        self.stop = threading.Event()
        self.counts = Counts()
        self.extra_keys: list[str] = []  # keys written by bursts, read at the end too
        self.acked_keys: set[str] = set()  # keys some write was acknowledged on
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._bursts = 0

    def start(self) -> None:
        for process in range(self.first_process, self.first_process + self.clients):
            self._spawn(self._client, process)

    def finish(self) -> None:
        """Stop issuing ops and wait for the clients (a retry loop ends at its deadline)."""
        self.stop.set()
        for t in self._threads:
            t.join(timeout=self.retry_seconds + REQUEST_TIMEOUT * 2)

    def _spawn(self, target, *args) -> threading.Thread:
        t = threading.Thread(target=target, args=args, daemon=True)
        t.start()
        self._threads.append(t)
        return t

    def _client(self, process: int) -> None:
        rng = random.Random(self.seed * 1000 + process)
        seen: dict[str, int] = {}  # key -> last revision this client saw
        n = 0
        while not self.stop.is_set():
            with self._lock:
                if self.counts.total() >= self.max_ops:
                    return
            n += 1
            key = rng.choice(self.keys)
            kind = rng.choices(("read", "update", "create", "delete"), (40, 30, 15, 15))[0]
            if kind == "read":
                status = self.read(process, rng.choice(self.apis), key, seen)
            else:
                status = self.write(process, rng, key, kind, f"p{process}-{n}", seen)
            if status != "ok":
                self.stop.wait(FAIL_PAUSE)  # pacing: no busy loop on a node that is down

    def burst(self, api: str, count: int) -> list[str]:
        """Start `count` concurrent creates of new keys on `api` (the leader's, say): many
        entries in flight at once. Returns their keys; the ops run in their own threads."""
        with self._lock:
            self._bursts += 1
            first = 10_000 * self._bursts
        keys = [f"b{self._bursts}-{i}" for i in range(count)]
        self.extra_keys.extend(keys)
        for i, key in enumerate(keys):
            rng = random.Random(self.seed * 7919 + first + i)
            self._spawn(self.write, first + i, rng, key, "create", f"burst-{key}", {}, api)
        return keys

    # ---- one op ----------------------------------------------------------------------------
    def read(self, process: int, api: str, key: str, seen: dict[str, int]) -> str:
        """One linearizable read; returns its status."""
        handle = self.history.invoke(process, key, "read")
        r = self._send(api, key, "read", None, None, None)
        if r is not None and r.status == 200:
            seen[key] = r.body["revision"]
            handle.ok(value=r.body.get("serviceName"), revision=r.body["revision"])
            return self._count("ok")
        if r is not None and r.status == 404 and "no clusters" in str(r.body):
            seen.pop(key, None)
            handle.ok(value=None)
            return self._count("ok")
        handle.fail()  # a read that failed observed nothing
        return self._count("fail")

    def write(self, process: int, rng: random.Random, key: str, kind: Kind, value: str,
              seen: dict[str, int], api: str | None = None) -> str:
        """One write, retried while its outcome is unknown; returns its status."""
        expected = seen.get(key) if kind in ("update", "delete") else None
        written = value if kind != "delete" else None
        handle = self.history.invoke(process, key, kind, value=written,
                                     expected_revision=expected)
        idem = f"s{self.seed}-p{process}-{key}-{value}"
        deadline = time.monotonic() + self.retry_seconds
        first = True
        while True:
            r = self._send(api or rng.choice(self.apis), key, kind, written, expected, idem)
            status = self._settle(handle, r, first, kind, key, seen)
            if status:
                return status
            first = False
            if time.monotonic() > deadline:
                handle.unknown()
                return self._count("unknown")
            time.sleep(RETRY_PAUSE)  # pacing between retries, not a synchronisation
            api = None  # a retry goes to any node

    def _settle(self, handle: OpHandle, r: Reply | None, first: bool, kind: str, key: str,
                seen: dict[str, int]) -> str:
        """Complete the op if `r` settles it (its status), else "" (retry)."""
        if r is None:
            return ""
        if r.status in (200, 201):
            revision = r.body["revision"]
            if kind == "delete":
                seen.pop(key, None)
            else:
                seen[key] = revision
            handle.ok(revision=revision)
            self.acked_keys.add(key)
            return self._count("ok", retried=not first)
        # After an unknown attempt only an answer from apply (it carries the revision the
        # key's first command was applied at) proves nothing else will apply.
        applied = isinstance(r.body, dict) and "revision" in r.body
        if (r.status in REFUSALS - {503} and (first or applied)) or (r.status == 503 and first):
            handle.fail()
            return self._count("fail", retried=not first)
        return ""

    def _send(self, api: str, key: str, kind: str, value: str | None, expected: int | None,
              idem: str | None) -> Reply | None:
        url = f"{api}/clusters/{key}"
        headers = {"Idempotency-Key": idem} if idem else {}
        if expected:
            headers["If-Match"] = str(expected)
        if kind == "read":
            method, url, payload = "GET", url + "?consistency=linearizable", None
        elif kind == "create":
            method, url, payload = "POST", f"{api}/clusters", body(key, value or "")
        else:
            method = "PUT" if kind == "update" else "DELETE"
            payload = body(key, value or "") if kind == "update" else None
        try:
            r: Reply | None = call(method, url, payload, auth=self.token, headers=headers,
                                   timeout=REQUEST_TIMEOUT)
        except (OSError, urllib.error.URLError, http.client.HTTPException, ValueError):
            r = None  # sent or not, answered or not: unknown
        with self._lock:
            self.counts.attempts += 1
            self.counts.answers[f"{kind} {r.status if r else 'none'}"] += 1
        return r

    def _count(self, status: str, retried: bool = False) -> str:
        with self._lock:
            setattr(self.counts, status, getattr(self.counts, status) + 1)
            self.counts.resolved_by_retry += retried
        return status
