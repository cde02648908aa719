"""A headless Chromium driven over the DevTools protocol on a pipe (no websocket, no dependency).

`Browser(path).open(url)` loads a page and records what a person's browser would show: console
messages and uncaught exceptions, every network request the page makes, and lets a test
evaluate JavaScript in the page and take screenshots. Chromium's `--remote-debugging-pipe`
speaks the protocol as NUL-terminated JSON messages on file descriptors 3 (commands) and 4
(replies and events).
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from typing import Any, Dict, List, Optional

#: Flags that keep a headless run quiet and offline (no first-run, sync or update traffic).
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--mute-audio", "--hide-scrollbars")


def find_chromium() -> Optional[str]:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class BrowserError(RuntimeError):
    pass


class Browser:
    """One Chromium process with one page. Use as a context manager."""

    def __init__(self, path: str, width: int = 1280, height: int = 900,
                 timeout: float = 60.0, javascript: bool = True) -> None:
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="tcpflow-check-chromium-")
        cmd_r, self._cmd_w = os.pipe()          # we write commands; Chromium reads fd 3
        self._out_r, out_w = os.pipe()          # Chromium writes fd 4; we read
        args = [path, *FLAGS, "--remote-debugging-pipe", "--user-data-dir=" + self.profile,
                "--window-size=%d,%d" % (width, height), "about:blank"]

        def child_fds() -> None:
            # Through fresh descriptors: a pipe end may already be 3 or 4 itself, and
            # dup2 onto itself would leave it close-on-exec.
            a, b = os.dup(cmd_r), os.dup(out_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, preexec_fn=child_fds,
                                     close_fds=False)   # fds 3 and 4 must survive the exec
        os.close(cmd_r)
        os.close(out_w)
        self._buf = b""
        self._next_id = 0
        self.events: List[Dict[str, Any]] = []
        self.session = ""
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target,
                                 flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(domain + ".enable")
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=False)
        if not javascript:
            self.call("Emulation.setScriptExecutionDisabled", value=True)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        try:
            os.close(self._cmd_w)
        except OSError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._out_r)
        shutil.rmtree(self.profile, ignore_errors=True)

    # -- protocol -----------------------------------------------------------------------------

    def call(self, method: str, **params: Any) -> Dict[str, Any]:
        self._next_id += 1
        msg: Dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            msg["sessionId"] = self.session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError("%s: %s" % (method, reply["error"].get("message")))
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def _read(self) -> Dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._out_r], [], [], left)[0]:
                raise BrowserError("no answer from Chromium in %.0f s" % self.timeout)
            chunk = os.read(self._out_r, 1 << 20)
            if not chunk:
                raise BrowserError("Chromium exited (status %s)" % self.proc.poll())
            self._buf += chunk
        line, self._buf = self._buf.split(b"\0", 1)
        return json.loads(line)

    def wait_event(self, method: str) -> Dict[str, Any]:
        for i, ev in enumerate(self.events):
            if ev["method"] == method:
                return self.events.pop(i)
        while True:
            ev = self._read()
            if ev.get("method") == method:
                return ev
            if "method" in ev:
                self.events.append(ev)

    # -- what a test asks ---------------------------------------------------------------------

    def open(self, url: str) -> float:
        """Load `url` and wait for its load event; returns the seconds it took."""
        start = time.monotonic()
        self.call("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired")
        return time.monotonic() - start

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise BrowserError("script failed: %s" % result["exceptionDetails"].get("text"))
        return result["result"].get("value")

    def requests(self) -> List[str]:
        """URLs of every request the page made (the page itself included)."""
        return [ev["params"]["request"]["url"] for ev in self.events
                if ev["method"] == "Network.requestWillBeSent"]

    def problems(self) -> List[str]:
        """Console errors and warnings, uncaught exceptions and browser log errors."""
        out = []
        for ev in self.events:
            m, p = ev["method"], ev.get("params", {})
            if m == "Runtime.exceptionThrown":
                out.append("exception: %s" % p["exceptionDetails"].get("text"))
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning",
                                                                       "assert"):
                out.append("console.%s: %s" % (p["type"], " ".join(
                    str(a.get("value", a.get("description", ""))) for a in p.get("args", []))))
            elif m == "Log.entryAdded" and p["entry"].get("level") in ("error", "warning"):
                out.append("log: %s" % p["entry"].get("text"))
        return out

    def screenshot(self, path: str, selector: Optional[str] = None, full_page: bool = False,
                   scale: float = 1.0, max_height: Optional[float] = None) -> None:
        """A PNG of the viewport, the whole page, or one element (by CSS selector; its top
        `max_height` pixels when given)."""
        params: Dict[str, Any] = {"format": "png"}
        if selector is not None:
            box = self.evaluate(
                "(() => { const r = document.querySelector(%s).getBoundingClientRect();"
                " return [r.left + scrollX, r.top + scrollY, r.width, r.height]; })()"
                % json.dumps(selector))
            height = box[3] if max_height is None else min(box[3], max_height)
            params["clip"] = {"x": box[0], "y": box[1], "width": box[2], "height": height,
                              "scale": scale}
            params["captureBeyondViewport"] = True
        elif full_page:
            w, h = self.evaluate("[document.documentElement.scrollWidth,"
                                 " document.documentElement.scrollHeight]")
            params["clip"] = {"x": 0, "y": 0, "width": w, "height": h, "scale": scale}
            params["captureBeyondViewport"] = True
        data = self.call("Page.captureScreenshot", **params)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
