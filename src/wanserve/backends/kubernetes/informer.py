"""List, then watch from the list's resourceVersion; resume a broken watch without gaps.

`Informer` runs in one daemon thread (the official client is synchronous) and hands every
change to `on_change(kind, obj)` through the event loop. A watch that ends (server timeout) or
breaks (connection lost) resumes from the last resourceVersion it saw, so nothing is lost; a
resourceVersion the server has compacted away (410 Gone) triggers a fresh list whose
differences from the cache are delivered as ADDED/MODIFIED/DELETED, so nothing is lost either.
An event whose resourceVersion the cache already holds is dropped, so nothing is duplicated.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from wanserve.backends.kubernetes.api import ListFn, Obj

__all__ = ["Informer"]

log = logging.getLogger(__name__)

OnChange = Callable[[str, Obj], None]


class Informer:
    """A cache of the objects `list_fn` returns for `selector`, kept current by a watch."""

    def __init__(
        self,
        name: str,
        list_fn: ListFn,
        selector: str,
        on_change: OnChange,
        *,
        loop: asyncio.AbstractEventLoop,
        watch_timeout_s: int = 300,
        request_timeout_s: float = 30.0,
    ) -> None:
        self.name = name
        self.cache: dict[str, Obj] = {}
        self.synced = threading.Event()  # set after the first list
        self.relists = 0
        self.resumes = 0
        self._list_fn = list_fn
        self._selector = selector
        self._on_change = on_change
        self._loop = loop
        self._watch_timeout = watch_timeout_s
        self._request_timeout = request_timeout_s
        self._rv: str | None = None
        self._stop = threading.Event()
        self._watch: Any = None
        self._thread = threading.Thread(target=self._run, name=f"informer-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout
        while self._thread.is_alive() and time.monotonic() < deadline:
            # Repeated: a watch that was just being opened has no socket to shut down yet.
            if self._watch is not None:
                self._watch.stop()  # shuts the socket down, so a blocked read returns now
            self._thread.join(0.05)

    def _run(self) -> None:
        from kubernetes.client.exceptions import ApiException

        backoff = 0.05
        while not self._stop.is_set():
            try:
                if self._rv is None:
                    self._relist()
                self._follow()
                backoff = 0.05
            except ApiException as exc:
                if exc.status == 410:  # our resourceVersion was compacted: list again
                    log.info("watch of %s expired (410 Gone); re-listing", self.name)
                    self._rv = None
                    continue
                log.warning("watch of %s failed: %s", self.name, exc)
                self._stop.wait(backoff)
            except Exception as exc:  # a broken connection: resume from _rv
                if self._stop.is_set():
                    break
                log.info("watch of %s broke (%s); resuming from %s", self.name, exc, self._rv)
                self.resumes += 1
                self._stop.wait(backoff)
            backoff = min(backoff * 2, 5.0)

    def _relist(self) -> None:
        response = self._list_fn(
            label_selector=self._selector,
            _preload_content=False,
            _request_timeout=self._request_timeout,
        )
        body = json.loads(response.data)
        fresh = {o["metadata"]["name"]: o for o in body.get("items") or []}
        for name, obj in fresh.items():
            self._apply("ADDED" if name not in self.cache else "MODIFIED", obj)
        for name in set(self.cache) - set(fresh):
            self._apply("DELETED", self.cache[name])
        self._rv = body["metadata"]["resourceVersion"]
        self.relists += 1
        self.synced.set()

    def _follow(self) -> None:
        from kubernetes import watch

        self._watch = watch.Watch()  # type: ignore[no-untyped-call]
        stream = self._watch.stream(
            self._list_fn,
            label_selector=self._selector,
            resource_version=self._rv,
            timeout_seconds=self._watch_timeout,
            allow_watch_bookmarks=True,
            _request_timeout=(self._request_timeout, self._watch_timeout + self._request_timeout),
        )
        for event in stream:
            if self._stop.is_set():
                return
            obj = event["raw_object"]  # the JSON as sent; "object" may be a client model
            if event["type"] != "BOOKMARK":
                self._apply(event["type"], obj)
            self._rv = obj["metadata"]["resourceVersion"]

    def _apply(self, kind: str, obj: Obj) -> None:
        name = obj["metadata"]["name"]
        known = self.cache.get(name)
        rv = obj["metadata"].get("resourceVersion")
        if kind == "DELETED":
            if known is None:
                return
            self.cache.pop(name)
        elif known is not None and known["metadata"].get("resourceVersion") == rv:
            return  # already seen (a replay after a resume or a re-list)
        else:
            self.cache[name] = obj
        self._loop.call_soon_threadsafe(self._on_change, kind, obj)
