"""Staged dedup on Dask: the stages of :func:`dedup.stages.dedup_staged` (which owns the run's inputs,
identity, resume, force, index directory, stage order and outputs), their tasks mapped over a Dask cluster.

Tasks take file paths, never data, and write under temporary names: a worker that dies mid-task has its
task rescheduled, leaving nothing a retry could mistake for output. A failed task (bad input, full disk) is
not retried: its error and warnings are raised on the client, once, without the workers' log noise.

Fault injection, for tests (never set in normal use): ``MEMDEDUP_KILL_AT=STAGE:N`` SIGKILLs the run's
process group once N tasks of STAGE (sketch, band, write) have completed, ``finalize:0`` just before the
removed-rows table, the index install and the manifest, ``installed:0`` between the install and the
manifest; ``MEMDEDUP_KILL_WORKER_ONCE=PATH``: the first task that creates PATH SIGKILLs its own worker;
``MEMDEDUP_HOLD_TASK_ONCE=PATH``: the first task that creates PATH writes its worker's pid and Slurm job
id there and waits (at most 120 s), so that a test can kill that worker from outside (``scancel``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from dedup.config import DedupConfig
from dedup.index_dir import IndexMismatchError
from dedup.shards import InputWarning
from dedup.stages import dedup_staged

Log = Callable[[str], None]

__all__ = ["ClusterError", "IndexMismatchError", "dask_client", "dask_map", "run_staged"]


@contextmanager
def dask_client(workers: int | None = None, threads_per_worker: int = 1, scheduler: str | None = None,
                log: Log = print):
    """A ``distributed.Client`` to ``scheduler`` (``tcp://host:8786`` or a scheduler JSON file), else to a
    new ``LocalCluster`` of ``workers`` processes (default: :func:`available_cores` / ``threads_per_worker``)."""
    import dask
    from distributed import Client, LocalCluster

    # Workers log every failed task's traceback; our tasks return their errors, and the rest is not for users.
    for name in ("distributed", "distributed.worker", "distributed.scheduler", "distributed.nanny",
                 "distributed.core", "distributed.client"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    cluster = client = None
    try:
        if scheduler:
            client = Client(_scheduler_address(scheduler) if scheduler.endswith(".json") else scheduler)
        else:
            n = workers or max(1, available_cores() // max(threads_per_worker, 1))
            # Worker processes (also those a nanny restarts) log to our stderr unless told before they start.
            quiet = {**dask.config.get("distributed.nanny.pre-spawn-environ"), "DASK_LOGGING__DISTRIBUTED": "critical"}
            with dask.config.set({"distributed.nanny.pre-spawn-environ": quiet}), _signals_held():
                cluster = LocalCluster(n_workers=n, threads_per_worker=threads_per_worker, processes=True,
                                       dashboard_address=":0", silence_logs=logging.CRITICAL,
                                       # Numba threads inside a task: the tasks are serial; Dask runs them side by side.
                                       env={"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"})
            client = Client(cluster)
        log(f"dask: {len(client.scheduler_info()['workers'])} worker(s), dashboard {client.dashboard_link}")
        yield client
    finally:
        for held in (client, cluster):  # the client first
            if held is not None:
                held.close()


@contextmanager
def _signals_held():
    """While a local cluster starts: SIGTERM held back (Dask's start, interrupted, fails with its own tracebacks)
    and handed to the handler before ours once the cluster is up, so that it is closed; SIGINT ignored, which the
    worker processes inherit, so that Ctrl-C (sent to the terminal's whole process group) stops the client alone,
    which closes the cluster, without each worker printing its KeyboardInterrupt tracebacks (a Ctrl-C in those
    seconds is lost). A Python handler runs in the main thread whichever thread the signal reaches (a signal mask
    would hold it from the main thread alone); off the main thread no handler can be set: nothing to do."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    # a handler set from C reads as None and could not be set again: left alone
    hold = {s: h for s in (signal.SIGTERM, signal.SIGINT) if (h := signal.getsignal(s)) is not None}
    for s in hold:
        signal.signal(s, (lambda signum, frame: held.append(signum)) if s == signal.SIGTERM else signal.SIG_IGN)
    try:
        yield
    finally:
        for s, h in hold.items():
            signal.signal(s, h)
        if held:  # now, to the handler before ours (the default one: the signal again)
            term = hold[signal.SIGTERM]
            term(signal.SIGTERM, None) if callable(term) else os.kill(os.getpid(), signal.SIGTERM)


def available_cores() -> int:
    """The CPUs this process may run on (a Slurm allocation, taskset), not the machine's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _scheduler_address(path: str) -> str:
    """The address in a scheduler file, waited for as long as Dask waits to connect (the scheduler may still
    be starting); ``ValueError`` if it does not come or is not one."""
    import dask
    from dask.utils import parse_timedelta

    wait = parse_timedelta(dask.config.get("distributed.comm.timeouts.connect"), "s")
    deadline = time.monotonic() + wait
    while True:
        try:
            with open(path, encoding="utf-8") as f:
                return json.load(f)["address"]
        except (OSError, ValueError, KeyError, TypeError) as e:  # not yet written, or not yet flushed
            if time.monotonic() > deadline:
                why = "no such file" if isinstance(e, FileNotFoundError) else f"not a Dask scheduler file ({e!r})"
                raise ValueError(f"--scheduler {path}: {why} after waiting {wait:g} s") from None
            time.sleep(0.1)


def _kill_point(label: str, done: int) -> None:
    """Fault injection: SIGKILL this run's process group at ``MEMDEDUP_KILL_AT``."""
    if os.environ.get("MEMDEDUP_KILL_AT") == f"{label}:{done}":
        os.killpg(os.getpgid(0), signal.SIGKILL)


class ClusterError(RuntimeError):
    """The Dask cluster failed the run (workers kept dying, the scheduler was lost); ``_work/`` stays: a
    rerun resumes."""


#: A warning of a task: (category, message, module, line), as :func:`_rewarn` takes it.
Warned = tuple[type, str, "str | None", int]


@dataclass
class _Failed:
    """A task's exception, returned instead of raised (so workers log nothing); from a worker, also the
    code version it checked, the task's paths it could not find and where it ran (:func:`_checked`)."""

    error: BaseException
    warned: list[Warned]
    version: str | None = None
    missing: tuple[str, ...] = ()
    worker: str = ""


@dataclass
class _Done:
    """A task's result, its warnings and the code version it checked."""

    value: object
    warned: list[Warned]
    version: str | None = None


_task_warnings = threading.local()


def _capture_warnings() -> None:
    """Once per worker process: warnings of a thread running one of our tasks go to its list
    (``_task_warnings.caught``), not printed. Every InputWarning is passed on, not once per process: the
    client decides what to show, and a persistent worker would hold back a rerun's."""
    if getattr(warnings.showwarning, "memdedup", False):
        return
    shown = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        caught = getattr(_task_warnings, "caught", None)
        if caught is None:
            return shown(message, category, filename, lineno, file, line)
        module = next((name for name, m in list(sys.modules.items()) if getattr(m, "__file__", None) == filename), None)
        caught.append((category, str(message), module, lineno))

    showwarning.memdedup = True
    warnings.showwarning = showwarning
    warnings.filterwarnings("always", category=InputWarning)


def _rewarn(warned: list[Warned]) -> None:
    """Raise a task's warnings on the client as if by the same line of the same module here (its filters
    and that module's registry apply)."""
    for category, message, module, lineno in warned:
        mod = sys.modules.get(module or "")
        registry = vars(mod).setdefault("__warningregistry__", {}) if mod is not None else None
        warnings.warn_explicit(message, category, getattr(mod, "__file__", None) or module or "<task>", lineno,
                               module=module, registry=registry)


def _created_here(variable: str) -> str | None:
    """Fault injection: the path in environment ``variable`` if this process created that file first."""
    if path := os.environ.get(variable):
        with suppress(FileExistsError):
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return path
    return None


@functools.cache
def code_version() -> str:
    """A hash of memdedup's code (``dedup`` and this module) and the libraries that decide outputs: a
    worker must run the client's, or a run would mix two versions."""
    import dedup
    from dedup.io import library_versions

    root = Path(dedup.__file__).parent
    h = hashlib.sha256(json.dumps({k: v for k, v in library_versions().items() if k != "kernels"},
                                  sort_keys=True).encode())
    for p in sorted(root.rglob("*.py")):
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes())
    h.update(b"pipelines/staged.py\0" + Path(__file__).read_bytes())
    return h.hexdigest()[:16]


def _paths(args: tuple) -> list[str]:
    """The file paths among a task's arguments (the work directory, inputs (a Shard: its file), an index)."""
    found = [getattr(x, "path", x) for a in args for x in (a if isinstance(a, (list, tuple)) else (a,))]
    return [str(p) for p in found if isinstance(p, Path) or (isinstance(p, str) and os.path.isabs(p))]


def _task(version: str, fn, *args):
    """What a worker runs: the stage function (after fault injection), if the worker runs the client's
    ``version`` of the code (:func:`code_version`)."""
    if code_version() != version:
        import dedup

        return _Failed(ValueError(f"a Dask worker (pid {os.getpid()}) runs other memdedup code or libraries than "
                                  f"this client (its code: {Path(dedup.__file__).parent}, version {code_version()}, "
                                  f"not {version}); start the workers from the same installation"), [], version)
    if _created_here("MEMDEDUP_KILL_WORKER_ONCE"):
        os.kill(os.getpid(), signal.SIGKILL)
    if hold := _created_here("MEMDEDUP_HOLD_TASK_ONCE"):
        with open(hold, "w") as f:
            json.dump({"pid": os.getpid(), "slurm_job_id": os.environ.get("SLURM_JOB_ID")}, f)
        time.sleep(120)
    _capture_warnings()
    _task_warnings.caught = caught = []
    try:
        return _Done(fn(*args), caught, version)
    except Exception as e:  # noqa: BLE001 - raised on the client, see dask_map
        import socket

        missing = tuple(p for p in _paths(args) if not os.path.exists(p))
        return _Failed(e, caught, version, missing, f"{socket.gethostname()}, pid {os.getpid()}")
    finally:
        _task_warnings.caught = None


# A worker's task states (distributed.worker_state_machine) of a task that runs or may still start;
# a cancelled one runs on as "cancelled" until its thread returns.
_RUNNING = frozenset({"waiting", "ready", "constrained", "executing", "long-running", "cancelled", "resumed"})


def _stop(client, futures: list, prefix: str, cluster_lost: bool, log: Log) -> None:
    """After a task failed: cancel the stage's tasks (keys starting with ``prefix``) and wait until none
    runs on a worker (a cancelled task's thread runs on), since the run then clears outputs they may write
    into. With the scheduler gone (or the client not connected) there is nothing to ask."""
    client.cancel(futures)
    if cluster_lost:
        return

    def running(dask_worker) -> int:
        return sum(str(ts.key).startswith(prefix) and ts.state in _RUNNING
                   for ts in list(dask_worker.state.tasks.values()))

    said = False
    while client.status == "running":  # else no scheduler to ask: a question would wait out its reconnection
        try:  # a worker that fails to answer (dying) runs nothing of ours
            n = sum(v for v in client.run(running, on_error="ignore").values() if isinstance(v, int))
        except Exception:  # noqa: BLE001 - the scheduler going away: nothing more to ask
            return
        if not n:
            return
        if not said:
            log(f"a task failed; waiting for its {n} running task(s) to end before clearing the outputs (Ctrl-C: "
                "the next run clears them)")
            said = True
        time.sleep(0.05)


def _checked(res):
    """A task's result as the client takes it: one from a worker whose code predates the version stamp, or
    a failure on paths the worker could not find that exist here, becomes a one-line error saying so."""
    if not isinstance(res, (_Done, _Failed)) or getattr(res, "version", None) is None:
        return _Failed(ValueError("a Dask worker runs other memdedup code than this client (a version from before "
                                  "tasks checked their code); start the workers from the same installation"), [])
    if isinstance(res, _Failed) and (seen := [p for p in res.missing if os.path.exists(p)]):
        more = f" (and {len(seen) - 1} more)" if len(seen) > 1 else ""
        return _Failed(ValueError(f"{seen[0]}{more}: not found on the Dask worker ({res.worker}), though it exists "
                                  "here: inputs, --out and --index-dir must be on storage every worker sees, at the "
                                  "same path"), res.warned, res.version)
    return res


def dask_map(client, log: Log) -> Callable[[str, Callable, list[tuple]], list]:
    """A ``map_tasks`` for :func:`dedup.stages.run_stages`: a stage's tasks on ``client``'s cluster,
    progress logged every 2 s, the first task error raised."""

    def run(label: str, fn: Callable, items: list[tuple]) -> list:
        from distributed import KilledWorker, as_completed

        t0 = last = time.perf_counter()
        prefix = f"{label}-{time.time_ns()}-"  # this stage's keys (_stop)
        futures = [client.submit(_task, code_version(), fn, *args, key=f"{prefix}{i}", pure=False)
                   for i, args in enumerate(items)]
        results: dict = {}
        for done, fut in enumerate(as_completed(futures), start=1):
            try:
                res = _checked(fut.result())
            except (KilledWorker, CancelledError) as e:  # not cancelled by us: the scheduler is gone
                why = ("Dask gave up on it, the workers running it kept dying (out of memory? see the workers' logs)"
                       if isinstance(e, KilledWorker) else "the connection to the Dask scheduler was lost")
                res = _Failed(ClusterError(f"{label} task {futures.index(fut) + 1} of {len(futures)}: {why}; "
                                           "fix that and rerun to resume"), [])
            except ImportError as e:  # the worker could not load the task: it lacks memdedup, or has another one
                res = _Failed(ValueError(f"a Dask worker cannot run memdedup's tasks ({e}); start the workers from "
                                         "the same installation as this client"), [])
            except Exception as e:  # noqa: BLE001 - its result did not arrive: stop the stage, then raise it
                res = _Failed(e, [])
            try:
                _rewarn(res.warned)
            except Warning as w:  # an "error" warnings filter: the warning fails the stage
                res = res if isinstance(res, _Failed) else _Failed(w, [])
            if isinstance(res, _Failed):
                _stop(client, futures, prefix, isinstance(res.error, ClusterError), lambda m: log(f"{label}: {m}"))
                raise res.error
            results[fut.key] = res.value
            _kill_point(label, done)
            now = time.perf_counter()
            if done == len(futures) or now - last > 2:
                last = now
                log(f"{label}: {done}/{len(futures)} tasks ({now - t0:.1f} s)")
        return [results[f.key] for f in futures]

    return run


def run_staged(inputs: Sequence[str | os.PathLike], out: str | os.PathLike, config: DedupConfig = DedupConfig(), *,
               client=None, workers: int | None = None, threads_per_worker: int = 1, scheduler: str | None = None,
               index_dir: str | os.PathLike | None = None, force: bool = False, log: Log = print,
               band_splits: int = 1) -> dict:
    """:func:`dedup.stages.dedup_staged` with each stage's tasks on a Dask cluster: ``client``, or one
    joined at ``scheduler``, or a new local cluster of ``workers`` processes."""
    with ExitStack() as stack:
        def map_tasks(label: str, fn: Callable, items: list[tuple]) -> list:
            nonlocal client
            if not items:
                return []
            if client is None:  # started on the first stage that has tasks (not for a no-op rerun)
                client = stack.enter_context(dask_client(workers, threads_per_worker, scheduler, log))
            return dask_map(client, log)(label, fn, items)

        return dedup_staged(inputs, out, config, map_tasks=map_tasks, index_dir=index_dir, force=force, log=log,
                            checkpoint=lambda point: _kill_point(point, 0), band_splits=band_splits)
