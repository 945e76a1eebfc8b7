"""The App: broker resolution, registration rules, enqueue options, the sync API."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from pathlib import Path

import anyio
import pytest

import chute
from chute.broker import Capabilities
from chute.brokers import MemoryBroker, SqliteBroker

pytestmark = pytest.mark.memory


def test_no_url_means_the_sqlite_file_in_the_current_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CHUTE_BROKER_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    app = chute.App()
    assert isinstance(app.broker, SqliteBroker)
    assert app.broker.path == Path("chute.sqlite3")


def test_the_environment_chooses_the_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHUTE_BROKER_URL", "memory://")
    assert isinstance(chute.App().broker, MemoryBroker)


def test_unknown_scheme_says_what_to_install() -> None:
    with pytest.raises(chute.BrokerNotInstalled) as info:
        chute.App("kafka://localhost:9092")
    assert 'pip install "chute-kafka"' in str(info.value)


def test_first_party_scheme_points_at_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("chute.plugins.importlib.metadata.entry_points", lambda **_: [])
    with pytest.raises(chute.BrokerNotInstalled, match=r'pip install "chute\[rabbitmq\]"'):
        chute.App("amqp://guest:secret@localhost")


def test_passwords_never_reach_logs_or_errors() -> None:
    app = chute.App(MemoryBroker())
    app.broker_url = "redis://user:hunter2@host:6379/0"
    assert app.describe_broker() == "redis://user:***@host:6379/0"


def test_duplicate_names_and_mixed_ack_modes_on_a_queue_are_refused() -> None:
    app = chute.App(MemoryBroker())

    @app.task(name="a")
    def a() -> None: ...

    with pytest.raises(chute.ConfigurationError, match="already registered"):
        app.task(name="a")(lambda: None)
    with pytest.raises(chute.ConfigurationError, match="one ack mode"):

        @app.task(name="b", ack=chute.Ack.ON_RECEIPT)
        def b() -> None: ...

    @app.task(name="c", ack=chute.Ack.ON_RECEIPT, queue="fast")
    def c() -> None: ...

    assert app.queues() == ["default", "fast"]
    assert app.ack_mode("fast") is chute.Ack.ON_RECEIPT


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"timeout": -1.0}, "timeout"),
        ({"queue": "x.dead"}, "not a usable name"),
    ],
)
def test_bad_task_options_are_refused(options: dict[str, object], message: str) -> None:
    app = chute.App(MemoryBroker())
    with pytest.raises(chute.ConfigurationError, match=message):
        app.task(**options)(lambda: None)  # type: ignore[call-overload]


def test_calling_a_task_runs_it_inline() -> None:
    app = chute.App(MemoryBroker())

    @app.task
    def double(x: int) -> int:
        return 2 * x

    @app.task
    async def triple(x: int) -> int:
        return 3 * x

    assert double(4) == 8
    assert anyio.run(triple, 4) == 12


@pytest.mark.anyio
async def test_delay_and_at_options() -> None:
    app = chute.App(MemoryBroker())

    @app.task
    async def tick() -> None: ...

    await tick.options(delay=30).enqueue()
    await tick.options(at=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)).enqueue()
    await tick.options(delay=dt.timedelta(seconds=0)).enqueue()
    stats = await app.broker.stats("default")
    assert (stats.ready, stats.delayed) == (1, 2)
    with pytest.raises(chute.ConfigurationError, match="no time zone"):
        tick.options(at=dt.datetime.now())
    with pytest.raises(chute.ConfigurationError, match="not both"):
        tick.options(delay=1, at=dt.datetime.now(dt.UTC))


@pytest.mark.anyio
async def test_oversized_jobs_are_refused_before_anything_is_sent() -> None:
    class Small(MemoryBroker):
        @property
        def capabilities(self) -> Capabilities:
            return dataclasses.replace(super().capabilities, max_body=1000)

    app = chute.App(Small())

    @app.task
    async def upload(data: bytes) -> None: ...

    with pytest.raises(chute.MessageTooLarge, match="at most 1000 bytes"):
        await upload.enqueue_many([upload.call(b"x"), upload.call(b"x" * 2000)])
    assert (await app.broker.stats("default")).ready == 0


@pytest.mark.anyio
async def test_delays_on_a_broker_without_delays_are_refused() -> None:
    class NoDelays(MemoryBroker):
        @property
        def capabilities(self) -> Capabilities:
            return dataclasses.replace(super().capabilities, max_delay=0)

    app = chute.App(NoDelays())

    @app.task
    async def tick() -> None: ...

    with pytest.raises(chute.EnqueueError, match="cannot hold delayed messages"):
        await tick.options(delay=5).enqueue()
    await tick.enqueue()


def test_sync_api_for_code_that_is_not_async(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'b.sqlite3'}"
    app = chute.App(url)

    @app.task(name="hello")
    def hello(name: str) -> None: ...

    start = time.monotonic()
    job = hello.enqueue_sync("ann")
    other = app.enqueue_sync("hello", "bob")
    app.close_sync()
    assert time.monotonic() - start < 10
    assert job.task == other.task == "hello"

    async def ready() -> int:
        async with chute.App(url) as reader:
            return (await reader.broker.stats("default")).ready

    assert anyio.run(ready) == 2
    with pytest.raises(chute.ArgumentError):
        hello.enqueue_sync(5)  # type: ignore[arg-type]
