"""Start ``python -m lightning_hw`` commands forked from a process that has imported the libraries.

A new ``python -m lightning_hw fit`` spends about 5 s of CPU importing torch, Lightning,
torchmetrics, torchvision and the rest before it reads its config: a study of many short trials
spends much of its time there. :func:`popen` starts such a command as a fork of a *warm* process
(one per caller, started on first use) that has imported those third-party libraries and nothing
of lightning-hw. The command then runs as a fresh interpreter would run it:

* its own process, pid, exit status, signals and process group (the warm process's group,
  which is the caller's, as a ``subprocess.Popen`` child's would be; or a session of its own);
* the arguments, environment, working directory, ``sys.path`` (``PYTHONPATH`` and the working
  directory), standard streams and buffering given to it;
* lightning-hw and plugins imported afresh from disk (a plugin installed or code edited meanwhile
  is seen), Python's and NumPy's random generators seeded afresh, torch's thread count from
  ``OMP_NUM_THREADS``, Python's normal exit (``atexit``, threads joined, uncaught exceptions).

CUDA is never touched by the warm process, so a fork may still use a GPU. Where a fork could
differ from a fresh interpreter the command starts as a plain ``subprocess.Popen``: no ``fork``
(Windows), macOS (libraries there are not fork-safe), another interpreter than this one, an
environment that differs in a variable read at import time (only those in :data:`RUNTIME_ENV`
may differ), a module on ``PYTHONPATH`` or in the working directory named as one the warm process
imported, or ``LIGHTNING_HW_WARM_START=0``.

The warm process, not the caller, is a fork's parent, and tells the caller how each fork ended.
Killed alone (the out-of-memory killer picks it, the largest), it could no longer tell, and a fit
that went on to finish was reported killed. On Linux a *keeper* therefore stands between the caller
and the warm process: the process the caller starts, which forks the warm process and waits. It is
a child subreaper (``prctl(PR_SET_CHILD_SUBREAPER)``): whatever is orphaned below it becomes its
child, the forks of a dead warm process included, and it reports how those end. The caller itself
does not become one: every process orphaned below it would then be its child (a fit's W&B service,
the DataLoader workers of a killed fit), and Linux keeps no trace of which child was adopted, so it
could not reap those without stealing the exit status of its own ``subprocess.Popen`` and
``multiprocessing`` children, which their objects wait for by pid. The keeper's only own child is
the warm process: it reaps all the others.
"""

from __future__ import annotations

import array
import collections
import gc
import io
import itertools
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

from lightning_hw.cli.fork_exit import end_as_python_would

#: set to ``0`` to start every command as a plain subprocess
SWITCH_ENV = "LIGHTNING_HW_WARM_START"
#: what the warm process imports: the third-party libraries a ``fit`` imports (a missing one is
#: skipped). Only libraries whose threads survive a fork: onnxruntime starts a thread pool as it
#: is imported, which a fork lacks (its exit then waits on that pool for ever), so ``export``
#: imports it itself.
PRELOAD = (
    "torch", "lightning.pytorch", "lightning.pytorch.cli", "torchmetrics", "torchvision.transforms.v2",
    "torchvision.io", "jsonargparse", "numpy", "yaml", "matplotlib.pyplot", "sklearn", "scipy", "rich",
    "wandb", "optuna", "timm", "PIL.Image",
)
#: variables read when a command runs, not when the preloaded libraries are imported: a command's
#: environment may differ from the warm process's in these (and in prefixes of RUNTIME_PREFIXES) only
RUNTIME_ENV = frozenset({
    "OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "PYTHONPATH", "PYTHONUNBUFFERED", "PATH",
    "COLUMNS", "LINES", "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "NODE_RANK", "GROUP_RANK",
    "MASTER_ADDR", "MASTER_PORT",
    # Lightning sets these in its own process (seed_everything, importing lightning, deterministic=True);
    # they are read as a fit runs (reseeding workers, a CUDA check, cuBLAS creating its handle), not at import
    "PL_GLOBAL_SEED", "PL_SEED_WORKERS", "PYTORCH_NVML_BASED_CUDA_CHECK", "CUBLAS_WORKSPACE_CONFIG",
})
RUNTIME_PREFIXES = ("LIGHTNING_HW_", "WANDB_", "PYTEST_", "SLURM_", "TORCHELASTIC_")
_MESSAGE_SIZE = 1 << 20
_MAX_FDS = 64  # the standard streams and the pass_fds of one command
#: set in a fork: the pids of its parents (its warm process, then its keeper, which adopts it if the warm process
#: dies; space-separated) and of the process that asked for it
PARENT_ENV, CALLER_ENV = "LIGHTNING_HW_WARM_START_PARENT", "LIGHTNING_HW_WARM_START_CALLER"
#: how this process's ``python -m lightning_hw`` commands started: ``forked``, or ``afresh: <why>`` (the test suite
#: prints these at its end, so a change that quietly stops commands forking shows there)
STARTS: collections.Counter[str] = collections.Counter()
_STARTS_LOCK = threading.Lock()  # a study with several workers starts commands from several threads
#: the signals the warm process blocks (see :func:`serve`) and each fork unblocks once it has its own handlers
STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})
_SERVER_PYTHON_PATH: list[str] = []  # in the warm process: the folders its PYTHONPATH put on sys.path
_KEEPER: list[int] = []  # in the warm process: its keeper's pid, if it has one
#: in the warm process: the variables its imports added to its environment (os.environ.setdefault of
#: scikit-learn, joblib and threadpoolctl: KMP_DUPLICATE_LIB_OK, KMP_INIT_AT_FORK)
_ADDED_BY_IMPORTS: dict[str, str] = {}


# -- the caller's side ---------------------------------------------------------------------------


def popen(
    args: list[str],
    *,
    stdin: Any = None,
    stdout: Any = None,
    stderr: Any = None,
    text: bool = False,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    start_new_session: bool = False,
    pass_fds: tuple[int, ...] = (),
    start_server: bool = True,
) -> WarmProcess | subprocess.Popen:
    """``subprocess.Popen(args, ...)``, forked from the warm process when ``args`` is ``python -m lightning_hw ...``.

    Takes the ``subprocess.Popen`` arguments of the same names (``stdin``/``stdout``/``stderr``:
    ``None``, ``subprocess.PIPE``, ``subprocess.DEVNULL``, ``subprocess.STDOUT`` for stderr, a file
    descriptor or a file object; ``pass_fds``: descriptors the command gets under the same numbers) and returns an object with its methods: ``poll``, ``wait``,
    ``communicate``, ``send_signal``, ``terminate``, ``kill``, ``pid``, ``returncode``,
    ``stdin``/``stdout``/``stderr``.

    The warm process starts on the first call with ``start_server`` (it imports for about as long
    as a command does); until it is ready, commands start as plain subprocesses. A caller with
    only a command or two to run passes ``start_server=False``: it then forks only from a warm
    process already running.
    """
    env = dict(os.environ if env is None else env)
    server, why_not = _server_for(args, env, os.fspath(cwd) if cwd is not None else os.getcwd(), start_server)
    if server is not None:
        try:
            process = WarmProcess(server, args[3:], stdin, stdout, stderr, text, env, cwd, start_new_session, pass_fds)
            _count_start("forked")
            return process
        except OSError:  # the warm process ended just now (killed with its process group, say): start afresh
            why_not = "the warm process ended"
    if why_not != "another program":
        _count_start(f"afresh: {why_not}")
    return subprocess.Popen(
        args, stdin=stdin, stdout=stdout, stderr=stderr, text=text, env=env, cwd=cwd,
        start_new_session=start_new_session, pass_fds=pass_fds,
    )


def _count_start(how: str) -> None:
    with _STARTS_LOCK:
        STARTS[how] += 1


def run(args: list[str], *, input: str | bytes | None = None, capture_output: bool = False, timeout: float | None = None,
        check: bool = False, **kwargs: Any) -> subprocess.CompletedProcess:
    """``subprocess.run`` over :func:`popen` (same arguments and result)."""
    if capture_output:
        kwargs["stdout"] = kwargs["stderr"] = subprocess.PIPE
    if input is not None:
        kwargs["stdin"] = subprocess.PIPE
    with _closing(popen(args, **kwargs)) as process:
        try:
            out, err = process.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise
    if check and process.returncode:
        raise subprocess.CalledProcessError(process.returncode, args, out, err)
    return subprocess.CompletedProcess(args, process.returncode, out, err)


class _closing:
    """``with`` for both process kinds: waits for the process and closes its pipes on the way out."""

    def __init__(self, process):
        self.process = process

    def __enter__(self):
        return self.process

    def __exit__(self, *exc):
        if exc[0] is not None and self.process.poll() is None:
            self.process.kill()
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        self.process.wait()


def warm_up(wait: float = 0) -> bool:
    """Start this process's warm process now, if it has none, and wait up to ``wait`` s for it to be ready.

    Returns:
        Whether it is ready: commands now fork from it.
    """
    if os.environ.get(SWITCH_ENV) == "0":  # every command starts afresh: a warm process would only cost its imports
        return False
    server = _Server.current(start=True) if _forks_here() else None
    deadline = time.monotonic() + wait
    while server is not None and not server.ready and not server.ended and time.monotonic() < deadline:
        time.sleep(0.05)
    return server is not None and server.ready and not server.ended


def _forks_here() -> bool:
    """Whether this platform can fork safely: not Windows (no fork), not macOS (libraries there are not fork-safe)."""
    return hasattr(os, "fork") and sys.platform != "darwin"


def _is_our_command(args: list[str]) -> bool:
    return len(args) >= 3 and args[1:3] == ["-m", "lightning_hw"] and _same_interpreter(args[0], sys.executable)


def _same_interpreter(program: str, ours: str) -> bool:
    """Whether ``program`` is our interpreter in our environment.

    The same binary is not enough: each virtual environment's ``python`` links to its base
    interpreter's, and runs with its own site-packages (found beside the link).
    """
    return (os.path.realpath(program) == os.path.realpath(ours)
            and os.path.dirname(os.path.abspath(program)) == os.path.dirname(os.path.abspath(ours)))


def _server_for(args: list[str], env: dict[str, str], cwd: str, start_server: bool) -> tuple[_Server | None, str]:
    """The warm process to fork ``args`` from, or ``None`` and why, where a fork could differ from a fresh interpreter.

    Also ``None`` while the warm process is still importing (it starts on the first call): the
    first commands start as plain subprocesses rather than wait for it.
    """
    if not _is_our_command(args):
        return None, "another program"
    if not _forks_here():
        return None, "no safe fork on this platform"
    if env.get(SWITCH_ENV, os.environ.get(SWITCH_ENV)) == "0":
        return None, f"{SWITCH_ENV}=0"
    # A fork that runs commands itself (a study run by a test) would import everything again for a
    # warm process of its own, which its first few fits do not repay: its fits start afresh.
    server = _Server.current(start=start_server and not _is_a_fork())
    if server is None:
        return None, "the caller is itself a fork" if _is_a_fork() else "no warm process"
    if server.ended:
        return None, "the warm process ended"
    if not server.ready:
        return None, "the warm process was still importing"
    differing = server.differing_env(env)
    if differing:
        return None, f"its environment differs in {', '.join(differing[:3])}"
    if server.shadowed_by(env.get("PYTHONPATH", "")):
        return None, "a folder on its PYTHONPATH holds a module named as a preloaded one"
    if server.shadowed_in(cwd):
        return None, "its working directory holds a module named as a preloaded one"
    return server, ""


def _differing(ours: dict[str, str], theirs: dict[str, str]) -> list[str]:
    """The names of the variables whose values differ between two environments (set in one only included)."""
    return sorted(name for name in ours.keys() | theirs.keys() if ours.get(name) != theirs.get(name))


def _import_time_env(env: dict[str, str]) -> dict[str, str]:
    """The variables of ``env`` that a library may read as it is imported."""
    return {k: v for k, v in env.items() if k not in RUNTIME_ENV and not k.startswith(RUNTIME_PREFIXES)}


class _Server:
    """The warm process (``python -m lightning_hw.cli.warm_start FD``, see :func:`serve`) and the thread that reads its news; one per caller process."""

    _shared: _Server | None = None
    _retired: list[_Server] = []  # replaced while their forks ran: kept to hear how those end
    _shared_lock = threading.Lock()

    @classmethod
    def shared(cls, start: bool) -> _Server | None:
        """This process's warm process (started now if there is none and ``start``); ``None`` if there is none."""
        with cls._shared_lock:
            server = cls._shared
            # One this process inherited by a fork of its own is not its (the news come to the parent),
            # and one that was killed may be started again; one that never got ready is not retried.
            if server is not None and (server.owner != os.getpid() or (server.ended and server.ready)):
                server = cls._shared = None
            if server is None and start:
                try:
                    server = cls._shared = cls()
                except OSError:
                    return None
            return server

    def __init__(self):
        self.owner = os.getpid()
        self.started = time.time()
        self.import_time_env = _import_time_env(dict(os.environ))
        #: the variables its imports added to its environment (scikit-learn's and joblib's KMP_*), once it is ready
        self.added_by_imports: dict[str, str] = {}
        self.python_path = os.environ.get("PYTHONPATH", "")
        self.pid: int | None = None  # the warm process's, once it is ready (self.process is its keeper)
        # ended: the warm process has (no more forks); closed: so has its keeper (no more news of them)
        self.ready = self.ended = self.closed = False
        self.retired = False  # replaced by another: it closes once its running forks have ended
        self._running: dict[int, int] = {}  # pid -> request number of the forks it started that have not ended
        self.top_level_modules: set[str] = set()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.socket = ours
        self.process = subprocess.Popen(
            # Its forks show this command line in ps (their own is the "$ ..." line of a study fit's study.log).
            [sys.executable, "-m", "lightning_hw.cli.warm_start", str(theirs.fileno())],
            pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, env={k: v for k, v in os.environ.items() if k != SWITCH_ENV},
        )
        theirs.close()
        # Reentrant: a study's signal handler asks whether its fits still run (poll) in the main thread.
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._started: dict[int, int] = {}  # request number -> pid
        # request number -> exit code as Popen gives it: by number, as a fork's pid may be reused by another meanwhile
        self._exited: dict[int, int] = {}
        self._requests = itertools.count()
        threading.Thread(target=self._read_news, name="warm-start-news", daemon=True).start()

    @classmethod
    def current(cls, start: bool) -> _Server | None:
        """:meth:`shared`, replaced by a new one when it is stale.

        Stale: a package was installed, upgraded or removed since it imported them (its modules may
        be out of date), or this process's own environment has since changed in a variable read at
        import (commands that inherit it could no longer fork from it).
        """
        server = cls.shared(start)
        if server is not None and server.ready and (
                server.packages_changed() or server.differing_env(dict(os.environ))):
            server = cls.replace(server, start)
        return server

    @classmethod
    def replace(cls, stale: _Server, start: bool) -> _Server | None:
        """Stop forking from ``stale`` (its running forks still report to it) and start another if ``start``."""
        with cls._shared_lock:
            if cls._shared is stale:
                cls._retired.append(stale)
                stale.retire()
                cls._shared = None
        return cls.shared(start)

    def differing_env(self, env: dict[str, str]) -> list[str]:
        """The variables read at import in which ``env`` differs from this warm process's (none: a command may fork).

        A variable that the warm process's imports added (scikit-learn sets ``KMP_INIT_AT_FORK`` with
        ``os.environ.setdefault``) is the same where ``env`` lacks it: a new interpreter importing
        those libraries adds it too. Counted as differing, a caller that imported scikit-learn after
        starting its warm process (an in-process fit) had its environment changed, replaced its warm
        process (a full import again) and started the commands meanwhile afresh, ~5 s more each.
        """
        ours = _import_time_env({**self.added_by_imports, **env})
        theirs = {**self.import_time_env, **_import_time_env(self.added_by_imports)}
        return _differing(ours, theirs)

    def packages_changed(self) -> bool:
        """Whether an installed package was added, upgraded or removed since this warm process imported them.

        pip adds and removes entries of ``site-packages`` itself (``*.dist-info``, ``*.pth``), which
        changes the folder's modification time.
        """
        return any(_modified(folder) > self.started for folder in _package_folders())

    def shadowed_by(self, python_path: str) -> bool:
        """Whether a folder on ``python_path`` that the warm process did not have holds a module it imported."""
        known = set(self.python_path.split(os.pathsep))
        for folder in python_path.split(os.pathsep):
            if folder and folder not in known and os.path.isdir(folder):
                names = {entry.split(".")[0] for entry in os.listdir(folder)}
                if names & self.top_level_modules:
                    return True
        return False

    def shadowed_in(self, cwd: str) -> bool:
        """Whether ``cwd``, first on a fresh ``python -m``'s ``sys.path``, holds a module the warm process imported.

        Only a module file or a regular package counts: a folder without ``__init__.py`` (the
        ``wandb/`` of offline runs) does not hide an installed package of its name.
        """
        try:
            entries = os.listdir(cwd)
        except OSError:
            return False
        names = {entry.split(".")[0] for entry in entries
                 if entry.endswith((".py", ".so", ".pyc")) or os.path.isfile(os.path.join(cwd, entry, "__init__.py"))}
        return bool(names & self.top_level_modules)

    def start(self, request: dict[str, Any], fds: list[int]) -> tuple[int, int]:
        """Ask for a fork running ``request`` with standard streams ``fds``; its request number and pid."""
        number = next(self._requests)
        with self._lock:
            if self.ended:
                raise OSError("the warm process has ended")
            self.socket.sendmsg([json.dumps({**request, "number": number}).encode()],
                               [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())])
            self._changed.wait_for(lambda: number in self._started or self.ended)
            if number not in self._started:
                raise OSError("the warm process has ended")
            return number, self._started.pop(number)

    def retire(self) -> None:
        """Fork no more from it, and let it end once its forks have (each holds some 500 MB otherwise, as its caller runs on)."""
        with self._lock:
            self.retired = True
            self._end_if_idle()

    def _end_if_idle(self) -> None:
        # Our side of the socket is shut for writing only: the warm process reads the end and exits,
        # and the news of its end (and its keeper's) still come in.
        if self.retired and not self._running and not self.closed:
            try:
                self.socket.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def exit_code(self, number: int, pid: int, timeout: float | None) -> int | None:
        """The fork's exit code once it has ended (waiting up to ``timeout`` s; ``None``: for good); ``None`` if still running."""
        with self._lock:
            self._changed.wait_for(lambda: number in self._exited or self.closed, timeout)
            if number in self._exited:
                return self._exited[number]
        # Killed with its keeper (with the process group), or without one (not Linux): the fork no longer reports.
        if self.closed:
            return _exit_code_of_orphan(pid, timeout)
        return None

    def _read_news(self) -> None:
        while True:
            try:
                message = self.socket.recv(_MESSAGE_SIZE)
            except OSError:
                message = b""
            with self._lock:
                if not message:
                    self.ended = self.closed = True
                    self.socket.close()  # nothing more to send or hear (start() sends only while it has not ended)
                    self._changed.notify_all()
                    self.process.wait()
                    return
                news = json.loads(message)
                if "ready" in news:
                    self.top_level_modules = set(news["modules"])
                    self.added_by_imports = news.get("added_env", {})
                    self.pid = news["pid"]
                    self.ready = news["ready"]
                elif "warm_process_ended" in news:  # from its keeper, which reports its forks from now on
                    self.ended = True
                elif "started" in news:
                    # Running from now, not from when start() wakes: a fork that ends at once may be heard of first.
                    self._started[news["number"]] = news["started"]
                    self._running[news["started"]] = news["number"]
                elif news["pid"] in self._running:  # a fork's end, not an orphan's that the keeper reaped
                    self._exited[self._running.pop(news["pid"])] = news["exit_code"]
                    self._end_if_idle()
                self._changed.notify_all()


def _package_folders() -> list[str]:
    import site

    folders = site.getsitepackages() + ([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])
    return [folder for folder in folders if os.path.isdir(folder)]


def _modified(folder: str) -> float:
    try:
        return os.stat(folder).st_mtime
    except OSError:
        return 0.0


def _exit_code_of_orphan(pid: int, timeout: float | None) -> int | None:
    """An exit code for a fork whose warm process and keeper died: ``-SIGKILL`` once it is gone (its real code is lost)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return -signal.SIGKILL
        if deadline is not None and time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


class WarmProcess:
    """A command forked from the warm process, used as a ``subprocess.Popen``."""

    def __init__(self, server: _Server, argv: list[str], stdin, stdout, stderr, text: bool,
                 env: dict[str, str], cwd, start_new_session: bool, pass_fds: tuple[int, ...] = ()):
        self.args = [sys.executable, "-m", "lightning_hw", *argv]
        self.returncode: int | None = None
        self._server = server
        self._readers: list[threading.Thread] | None = None  # communicate's, once it has begun
        self._outputs: dict[str, Any] = {}
        self.stdin = self.stdout = self.stderr = None
        to_close: list[int] = []
        fds: list[int] = []
        for index, (spec, mode) in enumerate(((stdin, "w"), (stdout, "r"), (stderr, "r"))):
            fd, ours = self._child_fd(index, spec, fds, to_close)
            fds.append(fd)
            if ours is not None:
                stream = os.fdopen(ours, mode + "b", buffering=0 if mode == "w" else -1)
                if text:
                    stream = io.TextIOWrapper(stream, write_through=True, line_buffering=mode == "w")
                setattr(self, ("stdin", "stdout", "stderr")[index], stream)
        request = {"argv": argv, "env": env, "caller": os.getpid(), "cwd": os.fspath(cwd) if cwd is not None else os.getcwd(),
                   "new_session": start_new_session, "targets": [0, 1, 2, *pass_fds],
                   # A new process inherits an ignored signal (a script's `cmd &` ignores SIGINT), not a handler.
                   "ignored": [int(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP) if signal.getsignal(s) == signal.SIG_IGN]}
        try:
            self._number, self.pid = server.start(request, [*fds, *pass_fds])
        finally:
            for fd in to_close:
                os.close(fd)

    @staticmethod
    def _child_fd(index: int, spec: Any, fds: list[int], to_close: list[int]) -> tuple[int, int | None]:
        """The descriptor the fork gets as stream ``index`` (0-2) and our end of a pipe, if one was asked for."""
        if spec is None:
            return index, None
        if spec == subprocess.DEVNULL:
            fd = os.open(os.devnull, os.O_RDWR)
            to_close.append(fd)
            return fd, None
        if spec == subprocess.STDOUT:
            return fds[1], None
        if spec == subprocess.PIPE:
            read, write = os.pipe()
            theirs, ours = (read, write) if index == 0 else (write, read)
            to_close.append(theirs)
            return theirs, ours
        return (spec if isinstance(spec, int) else spec.fileno()), None

    def poll(self) -> int | None:
        """The exit code, or ``None`` while it runs."""
        return self._wait(0)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for it to end (``subprocess.TimeoutExpired`` after ``timeout`` s); its exit code."""
        code = self._wait(timeout)
        if code is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return code

    def _wait(self, timeout: float | None) -> int | None:
        if self.returncode is None:
            self.returncode = self._server.exit_code(self._number, self.pid, timeout)
        return self.returncode

    def communicate(self, input: str | bytes | None = None, timeout: float | None = None) -> tuple[Any, Any]:
        """Send ``input``, read stdout and stderr to their ends and wait, as ``Popen.communicate`` does.

        After ``subprocess.TimeoutExpired`` it may be called again, and goes on reading.
        """
        if self._readers is None:
            self._readers = [
                threading.Thread(target=lambda n=name: self._outputs.__setitem__(n, getattr(self, n).read()), daemon=True)
                for name in ("stdout", "stderr") if getattr(self, name) is not None
            ]
            for reader in self._readers:
                reader.start()
            if self.stdin is not None:
                try:
                    if input:
                        self.stdin.write(input)
                    self.stdin.close()
                except BrokenPipeError:
                    pass
        for reader in self._readers:
            reader.join(timeout)
            if reader.is_alive():
                raise subprocess.TimeoutExpired(self.args, timeout)
        self.wait(timeout)
        return self._outputs.get("stdout"), self._outputs.get("stderr")

    def send_signal(self, signum: int) -> None:
        """Send ``signum`` to it, unless it has ended."""
        if self.poll() is None:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _closing(self).__exit__(*exc)


def _is_a_fork() -> bool:
    return str(os.getppid()) in os.environ.get(PARENT_ENV, "").split()


def caller_pid() -> int:
    """The pid of the process that started this one: its parent, or for a fork what asked the warm process for it."""
    if _is_a_fork() and os.environ.get(CALLER_ENV, "").isdigit():
        return int(os.environ[CALLER_ENV])
    return os.getppid()


# -- the warm process ----------------------------------------------------------------------------


def serve() -> None:
    """The warm process: import the libraries, then fork a command per request until the caller goes.

    Its argument is the descriptor of its socket to the caller. On Linux this process stays as the
    warm process's keeper (see the module's docstring) and a fork of it goes on. A fork never returns
    from this function: it runs its command and ends as Python's exit would
    (:func:`~lightning_hw.cli.fork_exit.end_as_python_would`).
    """
    channel = socket.socket(fileno=int(sys.argv[1]))
    # Ctrl-C in a terminal reaches the whole process group: the caller decides what stops; we go when it does.
    # Blocked, not ignored, and before any thread starts (threads inherit the mask): a fork inherits the mask
    # and the handlers, and a stop signal sent to it before it has set its own (a study stopped as it starts a
    # fit passes the signal on at once) then waits for them. Ignored, it was discarded, and the fit trained on.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)  # not an inherited SIG_IGN, which would discard it even while blocked
    if _become_subreaper():
        warm_process = os.fork()
        if warm_process:
            _keep(channel, warm_process)
            return
        _KEEPER.append(os.getppid())
    # ``-m`` put the caller's directory first on sys.path: a file there named as a module the libraries
    # import (yaml.py, a script called h2.py) would run here, not the library. Each fork puts its own
    # directory back (and a command whose directory holds such a file starts afresh: Server.shadowed_in).
    if not sys.flags.safe_path:  # with PYTHONSAFEPATH (-P) it is not there
        del sys.path[0]
    # A library asking torch whether CUDA is available as it is imported would initialise the CUDA
    # driver through the CUDA runtime, and a fork of a process that has done so cannot use the GPU;
    # asked through NVML instead (torch reads this variable at each call), it is not initialised.
    os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"
    before_imports = dict(os.environ)
    for name in PRELOAD:
        try:
            __import__(name)
        except Exception:  # noqa: BLE001 - not installed or broken here: the command imports it itself (and says why)
            pass
    del os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"]
    _ADDED_BY_IMPORTS.update({k: v for k, v in os.environ.items() if k not in before_imports})
    if _cuda_driver_loaded():  # something initialised CUDA anyway: forks could not use the GPU
        channel.send(json.dumps({"ready": False, "modules": [], "pid": os.getpid()}).encode())
        return
    # Out of reach of the garbage collector from now on: a fork's collections then walk only its own objects.
    # Walking these wrote to each one's header, so the fork copied nearly every page it shares with this
    # process: ~1 s of a full collection, in every fork that ran one.
    gc.freeze()
    global _SERVER_PYTHON_PATH
    _SERVER_PYTHON_PATH = [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    # lightning_hw (imported to run this) is not among them: each fork imports it afresh from its own sys.path.
    modules = sorted({name.split(".")[0] for name in sys.modules} - {"lightning_hw"})
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes select() through the wakeup descriptor
    channel.send(json.dumps({"ready": True, "modules": modules, "pid": os.getpid(), "added_env": _ADDED_BY_IMPORTS}).encode())
    caller = os.getppid()  # or the keeper, which ends when the caller has gone
    while True:
        # Once a second: a caller killed outright may leave its socket open in a fork of its own (a
        # DataLoader worker) for a while, so the socket alone would keep this process on after it.
        readable, _, _ = select.select([channel, wake_read], [], [], 1.0)
        if os.getppid() != caller:
            return
        if wake_read in readable:
            os.read(wake_read, 4096)
        _report_ended(channel)
        if channel in readable:
            message, fds, _, _ = socket.recv_fds(channel, _MESSAGE_SIZE, _MAX_FDS)
            if not message:  # the caller has gone
                return
            request = json.loads(message)
            pid = os.fork()
            if pid == 0:
                channel.close()
                os.close(wake_read)
                os.close(wake_write)
                end_as_python_would(lambda: _become(request, fds))
            for fd in fds:
                os.close(fd)
            channel.send(json.dumps({"number": request["number"], "started": pid}).encode())


def _become_subreaper() -> bool:
    """Make this process the parent of what is orphaned below it (Linux's ``PR_SET_CHILD_SUBREAPER``); whether it is."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _keep(channel: socket.socket, warm_process: int) -> None:
    """The keeper: reap whatever ends below it, and tell the caller how, the warm process's forks included once it has died.

    While the warm process lives it reaps its forks itself; the keeper gets their orphans (a W&B
    service, the DataLoader workers of a killed fit). Once it has died its forks are the keeper's,
    the ended ones still unreaped among them. Each end is sent before the process is reaped, so
    before its pid can be reused by a fork that the caller hears of later. A fork the warm process
    had reaped but not yet reported as it died (a moment's window) goes unreported: the caller gives
    it ``-SIGKILL`` once the keeper has ended. The keeper ends with its caller, or when nothing is
    left below it. It never reads the socket: what comes on it is the warm process's.
    """
    caller = os.getppid()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})  # for sigtimedwait; the warm process was forked before
    while os.getppid() == caller:
        signal.sigtimedwait({signal.SIGCHLD}, 1.0)  # a child ended, or a second passed: check on the caller
        while True:
            try:
                ended = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:  # nothing left below: the warm process and its forks have all ended
                return
            if ended is None:
                break
            code = ended.si_status if ended.si_code == os.CLD_EXITED else -ended.si_status
            news = {"warm_process_ended": True} if ended.si_pid == warm_process else {"pid": ended.si_pid, "exit_code": code}
            try:
                channel.send(json.dumps(news).encode())
            except OSError:  # the caller has gone
                return
            os.waitpid(ended.si_pid, 0)


def _cuda_driver_loaded() -> bool:
    """Whether this process has initialised CUDA: torch's own start, or the driver library loaded at all."""
    import torch

    if torch.cuda.is_initialized():
        return True
    try:
        with open("/proc/self/maps") as maps:
            return any("libcuda.so" in line for line in maps)
    except OSError:  # not Linux: torch's own word only
        return False


def _report_ended(channel: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        channel.send(json.dumps({"pid": pid, "exit_code": os.waitstatus_to_exitcode(status)}).encode())


def _become(request: dict[str, Any], fds: list[int]) -> None:
    """In the fork: become ``python -m lightning_hw <argv>`` as a fresh interpreter would run it."""
    import random
    import runpy

    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own, as a new interpreter installs it
    for signum in request["ignored"]:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # one sent since the fork is delivered now (see serve)
    if request["new_session"]:
        os.setsid()
    _place_descriptors(fds, request["targets"])
    # What the preloaded imports added (KMP_*), as a new interpreter importing them would have it too
    env = {**_ADDED_BY_IMPORTS, **request["env"], PARENT_ENV: " ".join(map(str, [os.getppid(), *_KEEPER])),
           CALLER_ENV: str(request["caller"])}
    os.environ.clear()
    os.environ.update(env)
    os.chdir(request["cwd"])
    _reconfigure_streams(env)
    _reset_import_path(env)
    random.seed()  # a fresh interpreter seeds from the OS; the fork would share the warm process's state
    _reseed_numpy()
    _set_threads(env)
    sys.argv = ["lightning_hw", *request["argv"]]
    runpy.run_module("lightning_hw", run_name="__main__", alter_sys=True)
    sys.exit(0)


def _place_descriptors(received: list[int], targets: list[int]) -> None:
    """Put each received descriptor at its target number (0-2, then the ``pass_fds`` the caller gave).

    First all move above every target, so that placing one never closes another still to be placed.
    """
    import fcntl

    above = max([*targets, *received]) + 1
    moved = [fcntl.fcntl(fd, fcntl.F_DUPFD, above) for fd in received]
    for fd in received:
        os.close(fd)
    for fd, target in zip(moved, targets):
        os.dup2(fd, target)
        os.close(fd)


def _reconfigure_streams(env: dict[str, str]) -> None:
    """Buffer stdout/stderr as a fresh interpreter would for the descriptors the command was given."""
    unbuffered = bool(env.get("PYTHONUNBUFFERED"))
    for stream, interactive in ((sys.stdout, os.isatty(1)), (sys.stderr, True)):
        stream.reconfigure(line_buffering=interactive or unbuffered, write_through=unbuffered)


def _reset_import_path(env: dict[str, str]) -> None:
    """``sys.path`` as ``python -m`` in the command's directory with its ``PYTHONPATH`` sets it; our modules unloaded."""
    import importlib

    base = [p for p in sys.path if p not in _SERVER_PYTHON_PATH]  # serve removed where the warm process started
    extra = [os.path.abspath(p) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:] = [*([] if sys.flags.safe_path else [os.getcwd()]), *extra, *base]
    for name in [m for m in sys.modules if m == "lightning_hw" or m.startswith("lightning_hw.")]:
        del sys.modules[name]
    importlib.invalidate_caches()


def _reseed_numpy() -> None:
    try:
        import numpy
    except ImportError:
        return
    numpy.random.seed()


def _set_threads(env: dict[str, str]) -> None:
    """torch's thread count from ``OMP_NUM_THREADS``, which OpenMP read when torch was imported."""
    threads = env.get("OMP_NUM_THREADS", "")
    if threads.isdigit() and int(threads) > 0:
        import torch

        torch.set_num_threads(int(threads))


if __name__ == "__main__":
    serve()
