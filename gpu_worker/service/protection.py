"""ECS task scale-in protection: on while the worker holds a job, off when it holds none.

Through the ECS agent's endpoint ``PUT $ECS_AGENT_URI/task-protection/v1/state``. Protection
expires by itself after :data:`EXPIRES_MINUTES` so a hung worker cannot pin a task forever;
:meth:`TaskProtection.keep` (called by the heartbeat) renews it while jobs run. Without
``ECS_AGENT_URI`` (not on ECS) everything here does nothing. Failures are logged, never
raised: protection is a courtesy to autoscaling, SQS redelivery is what keeps jobs safe.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import urllib3

log = logging.getLogger(__name__)

EXPIRES_MINUTES = 30
RENEW_AFTER = EXPIRES_MINUTES * 60 / 3  # seconds


class TaskProtection:
    """Reference-counted scale-in protection of this ECS task."""

    def __init__(self, agent_uri: str | None, *, timeout: float = 5.0) -> None:
        self.url = f"{agent_uri.rstrip('/')}/task-protection/v1/state" if agent_uri else None
        self.timeout = timeout
        self._lock = threading.Lock()
        self._held = 0
        self._enabled_at: float | None = None
        self._http = urllib3.PoolManager(retries=False, timeout=timeout) if self.url else None

    @contextmanager
    def held(self) -> Iterator[None]:
        """Protection on for the duration of the block (one job)."""
        self.acquire()
        try:
            yield
        finally:
            self.release()

    def acquire(self) -> None:
        with self._lock:
            self._held += 1
            if self._held == 1:
                self._set(True)

    def release(self) -> None:
        with self._lock:
            self._held = max(0, self._held - 1)
            if self._held == 0:
                self._set(False)

    def keep(self) -> None:
        """Renew protection if it is held and a third of its lifetime has passed."""
        with self._lock:
            if self._held and (
                self._enabled_at is None or time.monotonic() - self._enabled_at > RENEW_AFTER
            ):
                self._set(True)

    def _set(self, enabled: bool) -> None:
        if self._http is None or self.url is None:
            return
        body: dict[str, object] = {"ProtectionEnabled": enabled}
        if enabled:
            body["ExpiresInMinutes"] = EXPIRES_MINUTES
        try:
            response = self._http.request(
                "PUT",
                self.url,
                body=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
                redirect=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            log.warning(
                "task protection %s: the ECS agent is unreachable (%s)",
                "on" if enabled else "off",
                type(exc).__name__,
            )
            self._enabled_at = None
            return
        failed = response.status != 200
        if not failed:
            try:
                answer = json.loads(response.data or b"{}")
                failed = bool(answer.get("failure") or answer.get("error"))
            except (ValueError, AttributeError):
                failed = True
        if failed:
            log.warning(
                "task protection %s: the ECS agent answered %d %r",
                "on" if enabled else "off",
                response.status,
                response.data[:200],
            )

            self._enabled_at = None
        else:
            self._enabled_at = time.monotonic() if enabled else None
            log.debug("task protection %s", "on" if enabled else "off")
