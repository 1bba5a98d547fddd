"""A pytest-xdist worker that ends early names itself, the test it had not run and why (loaded by conftest.py).

Without this, a worker whose collection raises (any hook: a plugin's usage error, an import-time failure in a
hook) is still sent tests, because pytest reports its collection from a `finally:`; when it ends, xdist stops the
whole run at `assert not crashitem` and `no tests ran`, and the reason stays in the worker's unread stderr.
"""

from __future__ import annotations

import pytest


@pytest.hookimpl(wrapper=True)
def pytest_collection(session):
    """An xdist worker whose collection raises still reports its collection (pytest calls pytest_collection_finish
    in a `finally:`); xdist then schedules tests on it and, when it ends, stops the run at `assert not crashitem`
    without the reason. The reason travels to the controller with the worker's output (pytest_testnodedown)."""
    try:
        return (yield)
    except BaseException as exc:
        _record_death(session.config, "while collecting", exc)
        raise


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session):
    try:
        return (yield)
    except BaseException as exc:
        _record_death(session.config, "while running tests", exc)
        raise


def _record_death(config, when: str, exc: BaseException) -> None:
    if hasattr(config, "workeroutput"):
        first = str(exc).splitlines()[0] if str(exc) else ""
        config.workeroutput["died_of"] = f"{when}: {type(exc).__name__}: {first}"


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """xdist, in the controller: a worker that ended its session early names itself, its exit status, the first
    test it had not run and the cause, before xdist's own handling (a crash, `error`, xdist reports itself)."""
    out = getattr(node, "workeroutput", None) or {}
    status = out.get("exitstatus")
    if error is not None or status in (None, 0, 1, 5):  # ok, tests failed, nothing collected
        return
    name = pytest.ExitCode(status).name if status in {c.value for c in pytest.ExitCode} else str(status)
    pending = _pending_test(node)
    line = f"[{node.gateway.id}] worker ended its session with exit status {status} ({name})"
    line += f" before running {pending}" if pending else ""
    line += f": {out.get('died_of', 'its own output says why')}"
    reporter = node.config.pluginmanager.get_plugin("terminalreporter")
    reporter.write_line(line, red=True) if reporter is not None else print(line)


def _pending_test(node) -> str | None:
    """The first test xdist's scheduler still holds for `node` (load and loadscope/loadfile schedulers)."""
    sched = getattr(node.config.pluginmanager.get_plugin("dsession"), "sched", None)
    for unit in (getattr(sched, "assigned_work", None) or {}).get(node, {}).values():
        pending = next((nodeid for nodeid, done in unit.items() if not done), None)
        if pending:
            return pending
    indices = (getattr(sched, "node2pending", None) or {}).get(node) or []
    collection = getattr(sched, "collection", None) or []
    return collection[indices[0]] if indices and indices[0] < len(collection) else None
