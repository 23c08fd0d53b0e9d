"""W&B that never blocks a run: offline when there are no credentials or no reachable server, one run per job."""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from omegaconf import DictConfig

log = logging.getLogger("robustnoise")
PROBE_TIMEOUT = 2.0


def prepare_loggers(cfg: DictConfig) -> DictConfig | None:
    """W&B offline without credentials or a server reachable within 2 s (else a long wait, then a crash)."""
    loggers = cfg.get("logger")
    if not loggers or not loggers.get("wandb") or os.environ.get("WANDB_MODE") or loggers.wandb.get("offline"):
        return loggers
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    credentials = os.environ.get("WANDB_API_KEY") or (netrc.is_file() and "wandb" in netrc.read_text(errors="ignore"))
    reason = None if credentials else "no W&B credentials found"
    if reason is None:
        host, port = wandb_endpoint()
        if not reachable(host, port):
            reason = f"W&B server {host}:{port} not reachable within {PROBE_TIMEOUT:g} s"
    if reason:
        os.environ["WANDB_MODE"] = "offline"
        log.warning("%s: logging W&B offline (upload later with `wandb sync`)", reason)
    return loggers


def wandb_endpoint() -> tuple[str, int]:
    """Host and port a W&B run connects to first: the HTTPS proxy if one is set, else the server."""
    url = urlsplit(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai")
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and not urllib.request.proxy_bypass(url.hostname or ""):
        url = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    return url.hostname or "", url.port or (443 if url.scheme == "https" else 80)


def reachable(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> bool:
    """A TCP connection opens within ``timeout`` seconds (name lookup included, which has no timeout of its own)."""
    result: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result)


def finish_wandb() -> None:
    """Close the W&B run so the next job of a multirun gets its own."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()
