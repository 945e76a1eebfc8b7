"""The ``chute`` command. Thin: every command calls into the library and reports.

Errors the user can fix (a bad ``module:app`` path, an unreachable broker, an unknown task) are
one line on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import anyio
import typer

from chute._loading import load_app
from chute.app import App
from chute.errors import ChuteError
from chute.plugins import installed_brokers

__all__ = ["app", "main"]

T = TypeVar("T")

app = typer.Typer(
    name="chute",
    help="chute: run workers and inspect queues.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
dead_app = typer.Typer(help="Inspect, requeue or purge dead letters.", no_args_is_help=True)
app.add_typer(dead_app, name="dead")

AppPath = Annotated[str, typer.Argument(help="The app, as module:attribute (e.g. tasks:app).")]


def _fail(message: str) -> None:
    typer.echo(f"chute: error: {message}", err=True)
    raise typer.Exit(1)


def _run(app_path: str, work: Callable[[App], Awaitable[T]]) -> T:
    """Load the app and run ``work`` on it, turning chute's errors into one line."""
    result: Any = None
    try:
        chute_app = load_app(app_path)

        async def main() -> None:
            nonlocal result
            async with chute_app:
                result = await work(chute_app)

        anyio.run(main)
    except ChuteError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"{type(exc).__name__}: {exc}")
    return result


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s[%(process)d] %(message)s",
        stream=sys.stderr,
    )


@app.command()
def worker(
    app_path: AppPath,
    queue: Annotated[
        list[str] | None,
        typer.Option("--queue", "-q", help="A queue to consume (repeatable); default: all."),
    ] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1)] = 10,
    processes: Annotated[
        int, typer.Option("--processes", "-p", min=1, help="Worker processes to supervise.")
    ] = 1,
    lease: Annotated[float, typer.Option(help="Seconds a held job stays leased.")] = 30.0,
    prefetch: Annotated[
        int | None, typer.Option(help="Messages held ahead per queue; default 2 x concurrency.")
    ] = None,
    grace: Annotated[
        float, typer.Option(help="Seconds running jobs get to finish on shutdown.")
    ] = 30.0,
    burst: Annotated[bool, typer.Option(help="Drain the queues, then exit.")] = False,
    scheduler: Annotated[
        bool, typer.Option(help="Enqueue the app's cron and every tasks from this worker.")
    ] = True,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
) -> None:
    """Run a worker: consume the queues and run their jobs until SIGTERM or SIGINT."""
    _setup_logging(log_level)
    if processes > 1:
        from chute.worker._supervisor import Supervisor

        child = _without_processes(sys.argv[1:])
        raise typer.Exit(Supervisor(child, processes, grace).run())

    from chute.worker import Worker

    try:
        chute_app = load_app(app_path)
        w = Worker(
            chute_app, queues=queue, concurrency=concurrency, prefetch=prefetch, lease=lease,
            grace=grace, burst=burst, scheduler=scheduler,
        )  # fmt: skip
        anyio.run(_serve, w)
    except ChuteError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"{type(exc).__name__}: {exc}")


def _without_processes(argv: list[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("-p", "--processes"):
            skip = True
            continue
        if arg.startswith("--processes=") or (arg.startswith("-p") and arg[2:].isdigit()):
            continue
        out.append(arg)
    return out


async def _serve(w: Any) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(_watch_signals, w)
        await w.run()
        tg.cancel_scope.cancel()


async def _watch_signals(w: Any) -> None:
    log = logging.getLogger("chute.worker")
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        seen = 0
        async for signum in signals:
            seen += 1
            if seen == 1:
                log.info(
                    "received %s: finishing running jobs (up to %.0f s), releasing the rest; "
                    "signal again to exit at once",
                    signal.Signals(signum).name,
                    w.grace,
                )
                w.stop()
            else:
                log.warning("received a second signal: exiting now")
                os._exit(128 + signum)


@app.command()
def enqueue(
    app_path: AppPath,
    task: Annotated[str, typer.Argument(help="The task name.")],
    args: Annotated[str, typer.Option("--args", help="Positional arguments, a JSON array.")] = "[]",
    kwargs: Annotated[
        str, typer.Option("--kwargs", help="Keyword arguments, a JSON object.")
    ] = "{}",
    delay: Annotated[float, typer.Option(help="Seconds before it may start.")] = 0.0,
) -> None:
    """Enqueue one job and print its id."""
    try:
        positional = json.loads(args)
        keywords = json.loads(kwargs)
    except ValueError as exc:
        _fail(f"--args/--kwargs must be JSON: {exc}")
        return
    if not isinstance(positional, list) or not isinstance(keywords, dict):
        _fail("--args must be a JSON array and --kwargs a JSON object")
        return

    async def work(chute_app: App) -> str:
        chute_app.get_task(task)
        ref = chute_app.task_ref(task)
        if delay:
            ref = ref.options(delay=delay)
        job = await ref.enqueue(*positional, **keywords)
        return job.id

    typer.echo(_run(app_path, work))


@app.command()
def queues(app_path: AppPath) -> None:
    """Show ready, delayed, in-flight and dead counts for each of the app's queues."""

    async def work(chute_app: App) -> list[tuple[str, Any]]:
        return [(q, await chute_app.broker.stats(q)) for q in chute_app.queues()]

    rows = _run(app_path, work)
    typer.echo(f"{'queue':<24} {'ready':>8} {'delayed':>8} {'in-flight':>9} {'dead':>8}")
    for name, s in rows:
        typer.echo(f"{name:<24} {s.ready:>8} {s.delayed:>8} {s.in_flight:>9} {s.dead:>8}")


@app.command()
def job(app_path: AppPath, job_id: Annotated[str, typer.Argument(help="The job id.")]) -> None:
    """Show a job's status, and its result or error (tasks with keep_result)."""
    from chute.results import read_record

    async def work(chute_app: App) -> Any:
        return await read_record(await chute_app.connect_store(), job_id)

    record = _run(app_path, work)
    if record is None:
        typer.echo(f"{job_id}: unknown (no record: its task keeps no results, or it expired)")
        return
    typer.echo(f"{job_id}: {record.state} (attempt {record.attempt})")
    if record.result is not None:
        import msgspec

        typer.echo(f"result: {msgspec.json.encode(msgspec.msgpack.decode(record.result)).decode()}")
    if record.error:
        typer.echo(f"error: {record.error_type}: {record.error}")
    if record.traceback:
        typer.echo(record.traceback.rstrip())


QueueOpt = Annotated[
    str | None, typer.Option("--queue", "-q", help="The queue; default: every queue.")
]


@dead_app.command("list")
def dead_list(
    app_path: AppPath, queue: QueueOpt = None, limit: Annotated[int, typer.Option()] = 20
) -> None:
    """List dead letters: id, task, attempts, reason and error."""
    from chute.dead import list_dead

    async def work(chute_app: App) -> list[tuple[str, Any]]:
        names = [queue] if queue else chute_app.queues()
        return [(q, d) for q in names for d in await list_dead(chute_app.broker, q, limit)]

    for name, d in _run(app_path, work):
        typer.echo(f"{name}  {d.id}  {d.task}  attempts={d.attempts}  {d.reason}: {d.error}")


@dead_app.command("requeue")
def dead_requeue(app_path: AppPath, queue: QueueOpt = None) -> None:
    """Send dead letters back to their queue as fresh jobs."""
    from chute.dead import requeue_dead

    async def work(chute_app: App) -> int:
        names = [queue] if queue else chute_app.queues()
        return sum([await requeue_dead(chute_app.broker, q) for q in names])

    typer.echo(f"requeued {_run(app_path, work)} dead letter(s)")


@dead_app.command("purge")
def dead_purge(app_path: AppPath, queue: QueueOpt = None) -> None:
    """Delete dead letters for good."""
    from chute.dead import purge_dead

    async def work(chute_app: App) -> int:
        names = [queue] if queue else chute_app.queues()
        return sum([await purge_dead(chute_app.broker, q) for q in names])

    typer.echo(f"purged {_run(app_path, work)} dead letter(s)")


def _seconds(value: float | None) -> str:
    if value is None:
        return "unbounded"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if value >= size:
            return f"{value / size:.3g} {unit}"
    return f"{value:g} s"


def _capabilities(factory: Callable[[str], Any], scheme: str) -> str:
    last: Exception | None = None
    for url in (f"{scheme}://", f"{scheme}://localhost"):
        try:
            caps = factory(url).capabilities
        except Exception as exc:
            last = exc
            continue
        modes = ",".join(sorted(a.value for a in caps.acks))
        body = "unbounded" if caps.max_body is None else f"{caps.max_body} B"
        return (
            f"acks={modes} max_delay={_seconds(caps.max_delay)} max_body={body} "
            f"max_lease={_seconds(caps.max_lease)} lease_expiry={caps.lease_expiry} "
            f"persistent={caps.persistent} ordered={caps.ordered} shared={caps.shared}"
        )
    return f"(cannot describe without a real URL: {last})"


@app.command()
def brokers() -> None:
    """List installed broker plugins and what each can do."""
    for plugin in installed_brokers():
        try:
            caps = _capabilities(plugin.load(), plugin.scheme)
        except Exception as exc:
            caps = f"(cannot load: {exc})"
        typer.echo(f"{plugin.scheme + '://':<10} {plugin.distribution:<22} {caps}")


def main() -> None:
    """Entry point of the ``chute`` console script."""
    app()
