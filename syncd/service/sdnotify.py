"""systemd's notification protocol (sd_notify(3)) and the watchdog it drives, without libsystemd.

Under ``Type=notify`` systemd waits for ``READY=1`` before it calls the service started, shows
the latest ``STATUS=`` in ``systemctl status``, and with ``WatchdogSec=`` kills and restarts
the service when ``WATCHDOG=1`` stops arriving. Outside systemd ``$NOTIFY_SOCKET`` is unset and
every call here is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger("syncd.daemon")

# How often the scheduler proves it is alive when systemd asks for no watchdog: /healthz
# judges liveness by these ticks too.
HEARTBEAT_SECONDS = 5.0


def notify(message: str) -> bool:
    """Send one datagram to ``$NOTIFY_SOCKET``; False when not under systemd or it failed."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError:
        log.debug("sd_notify failed", exc_info=True)
        return False
    return True


def watchdog_seconds() -> float | None:
    """The watchdog timeout systemd set for this process, or None when there is none.

    ``$WATCHDOG_PID`` names the process meant; a child that inherited the environment (a
    subprocess, a test runner's worker) must not ping on its parent's behalf.
    """
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1e6 if value > 0 else None


def heartbeat_seconds() -> float:
    """The tick interval: half the watchdog timeout (as sd_watchdog_enabled(3) advises)."""
    watchdog = watchdog_seconds()
    return HEARTBEAT_SECONDS if watchdog is None else min(HEARTBEAT_SECONDS, watchdog / 2)


class Heartbeat:
    """The scheduler's proof of life: ticked by its own job, read by /healthz and metrics."""

    def __init__(self) -> None:
        self.monotonic: float | None = None
        self.unix: float | None = None
        self.watchdog = watchdog_seconds() is not None

    def tick(self) -> None:
        self.monotonic, self.unix = time.monotonic(), time.time()
        if self.watchdog:
            notify("WATCHDOG=1")

    def age(self) -> float | None:
        return None if self.monotonic is None else time.monotonic() - self.monotonic
