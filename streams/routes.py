"""What a worker runs, whichever runtime drives it: routes from input topics to handlers.

A handler turns one consumed message into the messages to produce. Component faults are data by the
time they leave a handler; the only exceptions a runtime expects are infrastructure faults (Redis or
Kafka down), which block the message's partition and are retried, never skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from shadowline.errors import StoreError, TransportError
from streams.messages import Inbound, Outbound

RETRYABLE = (StoreError, TransportError)
FIRST_RETRY_S = 0.2
MAX_RETRY_S = 10.0


class Handler(Protocol):
    def handle(self, msg: Inbound) -> list[Outbound]: ...


@dataclass(frozen=True)
class Route:
    """One agent: what it reads and the handler that turns each message into outputs."""

    name: str
    topics: tuple[str, ...]
    handler: Handler


def retry_delay(failures: int) -> float:
    """Seconds to wait before the next try after ``failures`` consecutive retryable errors (>= 1)."""
    return min(FIRST_RETRY_S * 2 ** (failures - 1), MAX_RETRY_S)
