"""Headless Chromium over the DevTools pipe: the browser test and the README screenshot.

No extra package: Chromium's --remote-debugging-pipe speaks JSON messages ending in NUL
on file descriptors 3 (in) and 4 (out).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import logging
import math
import os
import select
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plsearch.errors import PlsearchError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PageResult:
    console_errors: list[str]  # console.error calls, uncaught exceptions, error log entries
    requests: list[str]  # every URL the page requested
    value: Any  # what `evaluate` returned (None without one)
    ready: bool  # the report's figures finished drawing before the timeout


def find_chromium() -> str | None:
    """Path of a Chromium or Chrome executable, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def screenshot(html_path: str | Path, png_path: str | Path, width: int = 1280,
               height: int = 900, full_page: bool = False) -> Path:
    """PNG of a report as headless Chromium draws it (the README screenshot)."""
    result = open_in_chromium(html_path, png_path=png_path, width=width, height=height,
                              full_page=full_page)
    if not result.ready:
        log.warning("%s: figures did not finish drawing; screenshot may be incomplete",
                    html_path)
    return Path(png_path)


def open_in_chromium(html_path: str | Path, *, evaluate: str | None = None,
                     png_path: str | Path | None = None, width: int = 1280, height: int = 900,
                     full_page: bool = False, timeout: float = 120.0,
                     chromium: str | None = None) -> PageResult:
    """Load a local HTML file in headless Chromium and report what happened.

    Talks the DevTools protocol over --remote-debugging-pipe (no extra package). Waits for
    the load event and for ``window.plsearchReady`` (set when every figure is drawn), or an
    uncaught exception, or ``timeout``; then evaluates ``evaluate`` (a JS expression whose
    JSON value is returned) and saves a PNG when ``png_path`` is given.
    """
    exe = chromium or find_chromium()
    if exe is None:
        raise PlsearchError("Chromium not found; install it (Debian: apt-get install chromium)")
    url = Path(html_path).resolve().as_uri()
    deadline = time.monotonic() + timeout
    with _chromium(exe, width, height) as tools:
        target = next(t for t in tools.call("Target.getTargets")["targetInfos"]
                      if t["type"] == "page")
        session = tools.call("Target.attachToTarget",
                             {"targetId": target["targetId"], "flatten": True})["sessionId"]
        for method in ("Runtime.enable", "Log.enable", "Page.enable", "Network.enable"):
            tools.call(method, session=session)
        tools.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                   "deviceScaleFactor": 1, "mobile": False}, session=session)
        tools.events.clear()
        tools.call("Page.navigate", {"url": url}, session=session, timeout=timeout)
        ready = False
        while time.monotonic() < deadline:
            loaded = any(e.get("method") == "Page.loadEventFired" for e in tools.events)
            if any(e.get("method") == "Runtime.exceptionThrown" for e in tools.events):
                break
            left = max(5.0, deadline - time.monotonic())
            if loaded and tools.evaluate("window.plsearchReady === true", session, left):
                ready = True
                break
            tools.wait(0.2)
        value = tools.evaluate(evaluate, session, timeout) if evaluate else None
        if png_path is not None:
            if full_page:  # a viewport as tall as the page, then an ordinary screenshot
                size = tools.call("Page.getLayoutMetrics", session=session)["cssContentSize"]
                tools.call("Emulation.setDeviceMetricsOverride", {
                    "width": width, "height": math.ceil(size["height"]), "deviceScaleFactor": 1,
                    "mobile": False}, session=session)
                tools.wait(0.5)
            png = tools.call("Page.captureScreenshot", {"format": "png"}, session=session,
                             timeout=120)["data"]
            Path(png_path).parent.mkdir(parents=True, exist_ok=True)
            Path(png_path).write_bytes(base64.b64decode(png))
        return PageResult(console_errors=_console_errors(tools.events),
                          requests=[e["params"]["request"]["url"] for e in tools.events
                                    if e.get("method") == "Network.requestWillBeSent"],
                          value=value, ready=ready)


def _console_errors(events: list[dict]) -> list[str]:
    errors = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            errors.append(" ".join(str(a.get("value", a.get("description", "")))
                                   for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            errors.append(details.get("exception", {}).get("description")
                          or details.get("text", "uncaught exception"))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            errors.append(params["entry"].get("text", ""))
    return errors


@contextlib.contextmanager
def _chromium(exe: str, width: int, height: int):
    tools = _DevTools(exe, width, height)
    try:
        tools.start()
        yield tools
    finally:
        tools.close()


class _DevTools:
    """One headless Chromium process and its DevTools pipe (fd 3 in, fd 4 out, NUL-framed)."""

    def __init__(self, exe: str, width: int, height: int):
        self.profile = tempfile.mkdtemp(prefix="plsearch-chromium-")
        self.exe, self.width, self.height = exe, width, height
        self.events: list[dict] = []
        self._buffer, self._next_id, self.pid = b"", 0, None
        self._write_fd = self._read_fd = None
        self.stderr_path = os.path.join(self.profile, "chromium-stderr.log")

    def start(self) -> None:
        to_chrome_r, self._write_fd = os.pipe()
        self._read_fd, from_chrome_w = os.pipe()
        # Sources of the dup2 onto fd 3 and 4 must not be 3 or 4 themselves.
        child_in = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD_CLOEXEC, 5)
        child_out = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD_CLOEXEC, 5)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync",
                 "--disable-extensions", "--hide-scrollbars", "--remote-debugging-pipe",
                 f"--user-data-dir={self.profile}",
                 f"--window-size={self.width},{self.height}", "about:blank"]
        err = os.open(self.stderr_path, os.O_WRONLY | os.O_CREAT, 0o600)
        null = os.open(os.devnull, os.O_RDWR)
        try:
            self.pid = os.posix_spawn(self.exe, [self.exe, *flags], os.environ, file_actions=[
                (os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, null, 1),
                (os.POSIX_SPAWN_DUP2, err, 2), (os.POSIX_SPAWN_DUP2, child_in, 3),
                (os.POSIX_SPAWN_DUP2, child_out, 4)])
        finally:
            for fd in (err, null, child_in, child_out):
                os.close(fd)

    def close(self) -> None:
        if self.pid is not None:
            with contextlib.suppress(PlsearchError, OSError):
                self.call("Browser.close", timeout=5)
        for fd in (self._write_fd, self._read_fd):
            if fd is not None:
                os.close(fd)
        if self.pid is not None:
            deadline = time.monotonic() + 10
            while os.waitpid(self.pid, os.WNOHANG) == (0, 0):
                if time.monotonic() > deadline:
                    os.kill(self.pid, 9)
                    os.waitpid(self.pid, 0)
                    break
                time.sleep(0.05)
        shutil.rmtree(self.profile, ignore_errors=True)

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._write_fd, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply is None:
                raise self._error(f"Chromium did not answer {method} within {timeout:.0f} s")
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise self._error(f"Chromium refused {method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def evaluate(self, expression: str, session: str, timeout: float = 30.0) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression,
                                                "returnByValue": True}, session=session,
                           timeout=timeout)
        return result.get("result", {}).get("value")

    def wait(self, seconds: float) -> None:
        """Collect events for ``seconds``."""
        deadline = time.monotonic() + seconds
        while (event := self._read(deadline)) is not None:
            self.events.append(event)

    def _read(self, deadline: float) -> dict | None:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if not select.select([self._read_fd], [], [], left)[0]:
                return None
            chunk = os.read(self._read_fd, 1 << 20)
            if not chunk:
                raise self._error("Chromium exited")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(line)

    def _error(self, what: str) -> PlsearchError:
        try:
            with open(self.stderr_path, encoding="utf-8", errors="replace") as f:
                said = " | ".join(f.read().strip().splitlines()[-3:])
        except OSError:
            said = ""
        return PlsearchError(f"{what}; its last words: {said[-400:] or '(none)'}")
