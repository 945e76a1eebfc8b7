"""The scheduler inside each worker: every slot of every schedule enqueued exactly once.

Any number of workers run it. For each due slot they race to ``add`` a claim key in the store;
the winner publishes the job and then marks the claim *enqueued*. A claim that stays unmarked
past :data:`CLAIM_TIMEOUT` belonged to a worker that died between claiming and publishing:
another worker takes it over (a conditional delete, then an ``add``, so only one can) and
publishes. The one remaining window — a worker killed after publishing but before marking — can
produce a second copy of the job; each slot job carries its slot, and the executor runs only the
first copy that starts (:meth:`~chute.worker._bookkeeping.Bookkeeping.first_of_slot`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import anyio

from chute.app import App, Scheduled
from chute.broker import Broker
from chute.message import new_job_id
from chute.store import Store
from chute.worker._bookkeeping import SLOT_HEADER, SLOT_TTL_HEADER

log = logging.getLogger("chute.scheduler")

CLAIM_TIMEOUT = 10.0
# At start, slots this recent are still enqueued (a worker restarted right after a slot).
MISFIRE_GRACE = 30.0


@dataclass(slots=True)
class _Pending:
    scheduled: Scheduled
    slot: float


def slot_key(name: str, slot: float) -> str:
    return f"chute:cron:{name}:{slot:.3f}"


class Scheduler:
    """Enqueues the app's scheduled tasks from inside a worker."""

    def __init__(self, app: App, broker: Broker, store: Store) -> None:
        self.app = app
        self.broker = broker
        self.store = store
        self.enqueued = 0

    def _ttl(self, scheduled: Scheduled, slot: float) -> float:
        period = scheduled.schedule.next_after(slot) - slot
        return max(3600.0, 2 * period + CLAIM_TIMEOUT)

    async def run(self) -> None:
        """Run until cancelled."""
        now = time.time()
        upcoming: dict[str, float] = {}
        pending: list[_Pending] = []
        for scheduled in self.app.schedules:
            name = scheduled.task.name
            latest = scheduled.schedule.latest(now)
            if scheduled.catch_up or now - latest <= MISFIRE_GRACE:
                pending.append(_Pending(scheduled, latest))
            upcoming[name] = scheduled.schedule.next_after(now)
            log.info("scheduling %s: %s", name, scheduled.schedule.describe())
        by_name = {s.task.name: s for s in self.app.schedules}
        while True:
            now = time.time()
            for name, slot in list(upcoming.items()):
                while slot <= now:
                    pending.append(_Pending(by_name[name], slot))
                    slot = by_name[name].schedule.next_after(slot)
                upcoming[name] = slot
            still: list[_Pending] = []
            for item in pending:
                try:
                    settled = await self._settle(item.scheduled, item.slot)
                except Exception as exc:
                    log.warning("scheduler: slot of %s: %s", item.scheduled.task.name, exc)
                    settled = False
                if not settled:
                    still.append(item)
            pending = still
            wake = min(upcoming.values(), default=now + 60)
            if pending:
                wake = min(wake, now + 1.0)
            await anyio.sleep(max(0.0, wake - time.time()))

    async def _settle(self, scheduled: Scheduled, slot: float) -> bool:
        """Make sure ``slot`` is enqueued once; ``False`` to look again later."""
        key = slot_key(scheduled.task.name, slot)
        ttl = self._ttl(scheduled, slot)
        job_id = new_job_id()
        claim = f"claimed {job_id} {time.time():.3f}".encode()
        if not await self.store.add(key, claim, ttl):
            held = await self.store.get(key)
            if held is None or held.startswith(b"enqueued"):
                return True
            _, _, claimed_at = held.decode().split(" ")
            if time.time() - float(claimed_at) < CLAIM_TIMEOUT:
                return False
            # The claimer died before publishing: take the slot over, if nobody else does.
            if not await self.store.delete(key, value=held):
                return False
            if not await self.store.add(key, claim, ttl):
                return False
            log.warning("scheduler: took over the unpublished slot %s", key)
        await self._publish(scheduled, slot, job_id, key, ttl)
        await self.store.set(key, f"enqueued {job_id}".encode(), ttl)
        self.enqueued += 1
        return True

    async def _publish(
        self, scheduled: Scheduled, slot: float, job_id: str, key: str, ttl: float
    ) -> None:
        task = scheduled.task
        call = task.options(headers={SLOT_HEADER: key, SLOT_TTL_HEADER: f"{ttl:g}"}).call()
        call = call.with_id(job_id)
        await self.app.enqueue_many([call])
        log.info("scheduler: enqueued %s for %s (job %s)", task.name, _when(slot), job_id)


def _when(slot: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(slot)) + f".{int(slot % 1 * 1000):03d}Z"
