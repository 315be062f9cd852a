"""Runs fuzz cases in a pool of worker processes (fuzz_worker.py), each case under a time bound,
and judges each outcome: a finished video, or a job error whose code the case allows.

A worker that dies (a signal, an abort) or does not answer in time is reported against the
case it was running, with the tail of its stderr, and replaced by a fresh one.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
WORKER = HERE / "fuzz_worker.py"
REPO = HERE.parents[1]
STARTUP_TIMEOUT = 120.0  # seconds a worker may take to import the renderer

# The codes a corrupt input may end with; every case kind allows these at least.
MEDIA_CODES = frozenset({"input_unreadable", "unsupported_input", "limit_exceeded", "invalid_job"})
FONT_CODES = MEDIA_CODES | {"glyph_missing", "text_overflow"}
OVERLAY_CODES = MEDIA_CODES | {"input_forbidden"}  # an SVG whose mutation names another file
JOB_CODES = FONT_CODES | OVERLAY_CODES | {"input_not_found", "font_not_found"}


class _Worker:
    def __init__(self) -> None:
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (open for the life of the worker)
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONFAULTHANDLER="1")
        env.setdefault("GPU_WORKER_MAX_OUTPUT_SECONDS", "3")  # a fuzzed job stays a tiny one
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.ready = False
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()

    def _read(self, stream: IO[str] | None) -> None:
        assert stream is not None
        for line in stream:
            self.lines.put(line)
        self.lines.put(None)

    def ask(self, case: dict[str, Any], timeout: float) -> dict[str, Any]:
        assert self.proc.stdin is not None
        if not self.ready:  # the worker's imports are not counted in a case's time
            try:
                self.ready = self.lines.get(timeout=STARTUP_TIMEOUT) is not None
            except queue.Empty:
                self.ready = False
            if not self.ready:
                message = f"the worker did not start: {self.stderr_tail()}"
                return {"id": case["id"], "code": "crash", "message": message}
        try:
            self.proc.stdin.write(json.dumps(case) + "\n")
            self.proc.stdin.flush()
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            self.stop()
            return {"id": case["id"], "code": "hang", "message": f"no answer in {timeout:g} s"}
        except BrokenPipeError:
            line = None
        if line is None:
            status = self.proc.wait()
            name = signal.Signals(-status).name if status < 0 else f"exit status {status}"
            return {"id": case["id"], "code": "crash", "message": f"{name}: {self.stderr_tail()}"}
        result: dict[str, Any] = json.loads(line)
        return result

    def stderr_tail(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-1500:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.log.close()


def judge(case: dict[str, Any], result: dict[str, Any]) -> str | None:
    """Why the outcome is wrong, or None: a video with frames and nothing else left, or a job
    error with an allowed code and no output left behind."""
    code = result.get("code")
    where = (
        f"{case['id']} ({', '.join(f'{k}: {v}' for k, v in result.get('mutations', {}).items())})"
    )
    if code == "ok":
        if not result.get("frames"):
            return f"{where}: rendered, but the video has no frames"
        return None
    if result.get("left_behind"):
        return f"{where}: {code}, and left {result['left_behind']} behind"
    if code in case["allowed"]:
        return None
    detail = result.get("traceback") or ""
    return f"{where}: {code}: {result.get('message', '')}\n{detail}".rstrip()


class Pool:
    """Worker processes that stay up between cases (a dead or stuck one is replaced)."""

    def __init__(self, workers: int = 2, timeout: float = 60.0) -> None:
        self.size = workers
        self.timeout = timeout
        self._idle: queue.Queue[_Worker] = queue.Queue()
        for _ in range(workers):
            self._idle.put(_Worker())

    def ask(self, case: dict[str, Any]) -> dict[str, Any]:
        """Run one case on a free worker (within its ``timeout``, if it gives one); its result."""
        worker = self._idle.get()
        try:
            result = worker.ask(case, case.get("timeout", self.timeout))
        finally:
            if worker.proc.poll() is not None:
                worker.stop()
                worker = _Worker()
            self._idle.put(worker)
        return result

    def run(self, cases: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
        """Every case's result, and the failures (empty when all is well)."""
        todo = list(cases)
        results: list[dict[str, Any]] = []
        failures: list[str] = []
        lock = threading.Lock()

        def drive() -> None:
            while True:
                with lock:
                    if not todo:
                        return
                    case = todo.pop(0)
                result = self.ask(case)
                failure = judge(case, result)
                with lock:
                    results.append(result)
                    if failure:
                        failures.append(failure)

        threads = [threading.Thread(target=drive) for _ in range(self.size)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return results, failures

    def close(self) -> None:
        while not self._idle.empty():
            self._idle.get().stop()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
