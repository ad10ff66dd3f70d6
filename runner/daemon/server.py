"""`runbook daemon`: load the config, set up scrubbed logging and serve the HTTP app on
uvicorn until SIGTERM/SIGINT; `runbook daemon --check` validates a config and exits."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("runbook.daemon")


def serve(config_path: Path, host: str | None = None, port: int | None = None) -> int:
    """`runbook daemon`: run until SIGTERM/SIGINT, then shut down gracefully."""
    import uvicorn

    from ..journal import Journal
    from ..paths import home
    from ..registry import default_registry
    from .config import load, warnings
    from .http import build_app
    from .service import Daemon

    config = load(config_path)
    from ..redact import ScrubbingFormatter

    handler = logging.StreamHandler()
    handler.setFormatter(ScrubbingFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    for warning in warnings(config):
        log.warning("config %s: %s", config_path, warning)
    daemon = Daemon(config, Journal(home()), default_registry())
    server = uvicorn.Server(uvicorn.Config(
        build_app(daemon), host=host or config.listen.host, port=port or config.listen.port,
        log_level="warning", access_log=False, timeout_graceful_shutdown=30))
    log.info("runbook daemon on http://%s:%s, journal %s", server.config.host,
             server.config.port, home())
    server.run()
    return 0


def check(config_path: Path) -> int:
    """`runbook daemon --check`: validate the config (an invalid one raises, with
    file:line), print what is unsafe in a valid one, and exit; 0 whenever it loads."""
    from .config import load, warnings

    config = load(config_path)
    found = warnings(config)
    for warning in found:
        print(f"warning: {warning}")
    print(f"{config_path}: valid, {len(config.routes)} route(s), {len(found)} warning(s)")
    return 0
