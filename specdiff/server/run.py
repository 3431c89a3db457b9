"""Running the app on uvicorn, draining on SIGTERM.

uvicorn's own SIGTERM handling stops listening at once and re-raises the signal after shutting down
(the exit status is then the signal's). ``DrainingServer`` instead marks the app draining: new
requests get a 503 while in-flight requests finish (or ``drain_timeout_s`` passes); then uvicorn
shuts down gracefully and the process exits 0. A second SIGINT or SIGTERM exits at once.
"""

from __future__ import annotations

import logging
import threading
import time
from types import FrameType
from typing import Any

import uvicorn

from specdiff.server.app import ServerConfig, create_app

log = logging.getLogger("specdiff.server")


class DrainingServer(uvicorn.Server):
    """A uvicorn server whose exit signals drain the specdiff app first."""

    def __init__(self, config: uvicorn.Config, app: Any, drain_timeout_s: float) -> None:
        super().__init__(config)
        self.specdiff_app, self.drain_timeout_s = app, drain_timeout_s

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        state = self.specdiff_app.state
        if state.draining:  # asked twice: stop now
            self.should_exit = self.force_exit = True
            return
        state.draining = True
        log.warning("draining: %d request(s) in flight; new requests get 503", state.engine.in_flight)
        threading.Thread(target=self._exit_when_idle, name="specdiff-drain", daemon=True).start()

    def _exit_when_idle(self) -> None:
        deadline = time.monotonic() + self.drain_timeout_s
        engine = self.specdiff_app.state.engine
        while engine.in_flight and time.monotonic() < deadline:
            time.sleep(0.05)
        self.should_exit = True


def serve(decoder: Any, config: ServerConfig = ServerConfig(), log_level: str = "info") -> None:
    """Serve ``decoder`` until SIGTERM or SIGINT (then drain and return)."""
    app = create_app(decoder, config)
    uv_config = uvicorn.Config(app, host=config.host, port=config.port, log_level=log_level,
                               timeout_graceful_shutdown=config.drain_timeout_s)
    DrainingServer(uv_config, app, config.drain_timeout_s).run()
