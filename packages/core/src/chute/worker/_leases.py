"""The lease heartbeat: every delivery a worker holds is extended well before it expires."""

from __future__ import annotations

import logging

import anyio

from chute.broker import Delivery

log = logging.getLogger("chute.worker")


class Leases:
    """The deliveries one worker holds, each with its lease length.

    Deliveries are tracked from the moment they are received, not only while they run, so a
    job waiting for a free slot is never redelivered elsewhere for having waited.
    """

    def __init__(self, default_lease: float) -> None:
        self.default_lease = default_lease
        # Keyed by identity: a broker's delivery type need not be hashable.
        self._held: dict[int, tuple[Delivery, float]] = {}

    def __len__(self) -> int:
        return len(self._held)

    def track(self, delivery: Delivery, lease: float | None = None) -> None:
        self._held[id(delivery)] = (delivery, lease or self.default_lease)

    def set_lease(self, delivery: Delivery, lease: float) -> None:
        if id(delivery) in self._held:
            self._held[id(delivery)] = (delivery, lease)

    def untrack(self, delivery: Delivery) -> None:
        self._held.pop(id(delivery), None)

    def interval(self, shortest_lease: float) -> float:
        """How often to beat: a third of the shortest lease, so two beats may fail in a row."""
        return max(0.05, min(self.default_lease, shortest_lease) / 3)

    async def run(self, shortest_lease: float) -> None:
        """Extend every held lease, forever; cancel to stop."""
        interval = self.interval(shortest_lease)
        while True:
            await anyio.sleep(interval)
            held = list(self._held.values())
            if not held:
                continue
            async with anyio.create_task_group() as tg:
                for delivery, lease in held:
                    tg.start_soon(self._extend, delivery, lease)

    async def _extend(self, delivery: Delivery, lease: float) -> None:
        try:
            await delivery.extend(lease)
        except Exception as exc:
            # The next beat tries again; if the lease lapses meanwhile, the job may run twice,
            # which at-least-once delivery allows.
            log.warning("could not extend the lease of message %s: %s", delivery.id, exc)
