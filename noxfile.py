"""Task runner: `nox -s tests`, `nox -s lint`, `nox -s typecheck`, `nox -s docs`."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck", "docs"]


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """The whole test suite on asyncio and trio."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff")
    session.run("ruff", "check", "kartra_async", "tests", "benchmarks", "examples", "noxfile.py")
    session.run(
        "ruff", "format", "--check", "kartra_async", "tests", "benchmarks", "examples", "noxfile.py"
    )


@nox.session(python="3.11")
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package, and on tests/typing/check_public_api.py (the public
    API's result types, each stated with assert_type)."""
    session.install("-e", ".", "mypy")
    session.run("mypy", "--strict", "kartra_async")
    session.run("mypy", "--strict", "tests/typing/check_public_api.py")


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """Build the documentation site into site/ with `mkdocs build --strict`: a broken link,
    anchor or API reference, or a page missing from the nav, fails the build. Extra
    arguments go to mkdocs build (e.g. `nox -s docs -- --site-dir /tmp/site`)."""
    session.install("-e", ".[docs]")
    session.env["NO_MKDOCS_2_WARNING"] = "1"
    session.run("mkdocs", "build", "--strict", *session.posargs)


BENCHMARKS = ("limiter", "network", "fake", "models", "fanout", "overhead", "fairness")


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Every script in benchmarks/: each checks its results, prints its table with ratios
    against a baseline run in the same process, and exits non-zero on a missed target.
    Runs them all, then fails if any missed (the Redis part needs redis-server on PATH)."""
    session.install(
        "-e", ".[test,cli,redis]", "pydantic>=2", "aiolimiter", "pyrate-limiter", "limits"
    )
    missed = []
    for name in session.posargs or BENCHMARKS:
        try:
            session.run("python", f"benchmarks/{name}.py")
        except nox.command.CommandFailed:
            missed.append(name)
    if missed:
        session.error(f"targets missed in: {', '.join(missed)}")
