"""Every development task: ``nox -s tests`` (what CI runs), lint, typecheck, demo, bench."""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests", "lint", "typecheck"]

ROOT = Path(__file__).parent
PACKAGES = sorted(
    (p for p in (ROOT / "packages").iterdir() if (p / "pyproject.toml").exists()),
    key=lambda p: (p.name != "core", p.name),
)
BROKERS = [p.name.removeprefix("broker-") for p in PACKAGES if p.name.startswith("broker-")]
TEST_DEPS = ["pytest>=8", "pytest-timeout>=2.3", "moto[server]>=5"]


def install_workspace(session: nox.Session) -> None:
    args: list[str] = []
    for package in PACKAGES:
        args += ["-e", str(package)]
    session.install(*args, *TEST_DEPS)


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite, every broker, against real servers."""
    install_workspace(session)
    session.run("pytest", *session.posargs)


for _broker in ["memory", "sqlite", *BROKERS]:

    @nox.session(name=f"tests-{_broker}")
    def _broker_tests(session: nox.Session, broker: str = _broker) -> None:
        install_workspace(session)
        session.run("pytest", "-m", broker, *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """pyright, strict on every package."""
    install_workspace(session)
    session.install("pyright>=1.1.380")
    session.run("pyright")


@nox.session
def demo(session: nox.Session) -> None:
    """The quickstart demo on the embedded SQLite broker: a worker, a producer, a report."""
    session.install("-e", str(ROOT / "packages" / "core"))
    session.chdir(session.create_tmp())
    session.run("python", str(ROOT / "examples" / "demo.py"))


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against peer task queues; writes docs/benchmarks.md."""
    install_workspace(session)
    session.install("-r", str(ROOT / "bench" / "requirements.txt"))
    session.run("python", str(ROOT / "bench" / "run.py"), *session.posargs)
