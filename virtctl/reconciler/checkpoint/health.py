"""The health gate's wait: until the guest runs and every declared probe answers, or
the timeout. Condition-based: the driver is asked again with a growing pause (0.2 s up
to 2 s), never a fixed sleep; a guest that stopped or crashed fails at once."""

from __future__ import annotations

from typing import Any

from ...errors import DriverError
from ...model import DomainState
from ...checkpoints import Health


def failing(driver: Any, name: str, health: Health | None) -> tuple[str, bool]:
    """(what is not healthy yet, "" when all is; whether waiting cannot help)."""
    state = driver.domain_state(name)
    if state is None:
        return "the guest is gone", True
    if state in (DomainState.SHUTOFF, DomainState.CRASHED):
        return f"the guest is {state}", True
    if state is not DomainState.RUNNING:
        return f"the guest is {state}", False
    if health is None:
        return "", False
    try:
        if health.agent and not driver.agent_ping(name):
            return "its guest agent does not answer", False
        if health.tcp_port is not None and not driver.tcp_open(name, health.tcp_port):
            return f"TCP port {health.tcp_port} is closed", False
        if health.cloud_init and not driver.cloud_init_done(name):
            return "cloud-init has not finished", False
    except DriverError as exc:
        return f"its probe failed: {exc.message}", False
    return "", False


def wait_healthy(driver: Any, name: str, health: Health | None, clock: Any) -> str:
    """"" once healthy; else why not, when the timeout passed or waiting cannot help."""
    timeout = health.timeout if health is not None else 0.0
    deadline = clock.now() + timeout
    pause = 0.2
    while True:
        why, final = failing(driver, name, health)
        if not why:
            return ""
        left = deadline - clock.now()
        if final or left <= 0:
            return why if final else f"{why} after {timeout:g}s"
        clock.sleep(min(pause, left))
        pause = min(pause * 2, 2.0)
