"""`runbook daemon`: load the config, set up scrubbed logging and serve the HTTP app on
uvicorn until SIGTERM/SIGINT; `runbook daemon --check` validates a config and exits."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..errors import Problem
    from ..registry import Registry
    from .config import DaemonConfig

log = logging.getLogger("runbook.daemon")


def serve(config_path: Path, host: str | None = None, port: int | None = None) -> int:
    """`runbook daemon`: run until SIGTERM/SIGINT, then shut down gracefully."""
    from ..extras import require

    require("daemon", "runbook daemon")  # [daemon]: starlette, uvicorn, prometheus-client
    import uvicorn

    from ..journal import Journal
    from ..paths import home
    from ..registry import default_registry
    from .config import load, warnings
    from .http import build_app
    from .service import Daemon

    config = load(config_path)
    registry = default_registry()
    unknown = refuse_on_problems(config_path, config, registry)  # before listening
    from ..redact import ScrubbingFormatter

    handler = logging.StreamHandler()
    handler.setFormatter(ScrubbingFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    for warning in warnings(config):
        log.warning("config %s: %s", config_path, warning)
    for problem in unknown:
        log.warning("config %s", problem)
    journal = Journal(home(), dsn=config.journal.dsn() if config.journal else None)
    daemon = Daemon(config, journal, registry)
    server = uvicorn.Server(uvicorn.Config(
        build_app(daemon), host=host or config.listen.host, port=port or config.listen.port,
        log_level="warning", access_log=False, timeout_graceful_shutdown=30))
    log.info("runbook daemon on http://%s:%s, journal %s (%s)", server.config.host,
             server.config.port, home(), journal.kind)
    server.run()
    return 0


def check(config_path: Path) -> int:
    """`runbook daemon --check`: validate the config and check it against the playbooks,
    inventory and notifiers it names (problems raise, with file:line:col, as the daemon
    itself refuses to start on them), print what is unsafe in a valid one, and exit."""
    from ..registry import default_registry
    from .config import load, warnings

    config = load(config_path)
    unknown = refuse_on_problems(config_path, config, default_registry())
    found = [*warnings(config), *map(str, unknown)]
    for warning in found:
        print(f"warning: {warning}")
    print(f"{config_path}: valid, {len(config.routes)} route(s), {len(found)} warning(s)")
    return 0


def refuse_on_problems(config_path: Path, config: DaemonConfig, registry: Registry
                       ) -> list[Problem]:
    """Raise on the config's problems against its playbooks and inventory; return what
    is only warned about (allow-listed names this inventory lacks)."""
    from ..errors import PlaybookError
    from .preflight import problems

    found, unknown = problems(config_path, config, registry)
    if found:
        raise PlaybookError(found)
    return unknown
