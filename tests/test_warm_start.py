"""``python -m lightning_hw`` forked from the warm process runs as a fresh interpreter would run it.

A study starts its fits this way (:mod:`lightning_hw.cli.warm_start`), and so do most tests that
drive the CLI in a process of its own. A probe datamodule, importable only from the command's own
``PYTHONPATH``, records what the command saw as it ran.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from lightning_hw.cli import warm_start
from reliability_helpers import tiny_fit_args

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="no warm forks here")

LHW = [sys.executable, "-m", "lightning_hw"]
PROBE = '''
import atexit, json, os, random, signal, sys, threading, time

import numpy
import torch

from lightning_hw.data.datasets.digits import Digits

DRAWN_AT_IMPORT = random.random(), float(numpy.random.rand())  # before Lightning seeds anything
SIGHUP_AT_IMPORT = str(signal.getsignal(signal.SIGHUP))


class Probe(Digits):
    """Digits that writes down, as it is built, what its process sees."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        facts = {
            "cwd": os.getcwd(), "argv": sys.argv[1:], "marker": os.environ.get("LIGHTNING_HW_TEST_PROBE_MARKER"),
            "drawn": DRAWN_AT_IMPORT, "sighup": SIGHUP_AT_IMPORT, "threads": torch.get_num_threads(),
            "pid": os.getpid(), "main_spec": getattr(sys.modules["__main__"].__spec__, "name", None),
            "lightning_hw_from": sys.modules["lightning_hw"].__file__,
            "passed": open(f"/dev/fd/{os.environ['LIGHTNING_HW_TEST_PROBE_FD']}").read(),
        }
        with open(os.environ["LIGHTNING_HW_TEST_PROBE_OUT"], "a") as out:
            out.write(json.dumps(facts) + "\\n")
        leave_work_for_the_exit(f"{os.environ['LIGHTNING_HW_TEST_PROBE_OUT']}.{os.getpid()}")


LEFT_OPEN = []


def leave_work_for_the_exit(path):
    """What Python's exit finishes: a thread (not a daemon) still running, an atexit function, a file left open."""
    def late():
        time.sleep(1)
        with open(path + ".thread", "w") as out:
            out.write("joined")

    threading.Thread(target=late).start()
    atexit.register(lambda: open(path + ".atexit", "w").close())
    LEFT_OPEN.append(open(path + ".left-open", "w"))
    LEFT_OPEN[-1].write("flushed at exit")
'''


@pytest.fixture(scope="module")
def warm():
    """This test process's warm process, ready."""
    assert warm_start.warm_up(wait=180), "the warm process did not get ready"


@pytest.fixture
def probe(tmp_path):
    """``(env, facts)``: an environment whose PYTHONPATH alone has the probe module, and its records read back."""
    folder = tmp_path / "only_on_pythonpath"
    folder.mkdir()
    (folder / "warm_probe.py").write_text(textwrap.dedent(PROBE))
    out = tmp_path / "facts.jsonl"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")])),
           "LIGHTNING_HW_TEST_PROBE_OUT": str(out), "LIGHTNING_HW_TEST_PROBE_MARKER": "seen", "OMP_NUM_THREADS": "1"}
    return env, lambda: [json.loads(line) for line in out.read_text().splitlines()]


def probe_fit(root: Path, *extra: str) -> list[str]:
    args = tiny_fit_args(root, "--data", "warm_probe.Probe", "--run.root", "runs", *extra)
    return [*LHW, *args]


def test_a_fork_sees_its_own_arguments_directory_environment_and_code(warm, probe, tmp_path):
    env, facts = probe
    workdir = tmp_path / "work"
    workdir.mkdir()
    command = probe_fit(tmp_path, "--run.name", "probe")
    passed = tmp_path / "passed.txt"
    passed.write_text("under its own number")
    kept = os.open(passed, os.O_RDONLY)
    fd = os.dup2(kept, 99)  # as the study passes its count of SIGTERMs (pass_fds)
    os.close(kept)
    env["LIGHTNING_HW_TEST_PROBE_FD"] = str(fd)
    results = []
    for ignoring in (False, True):
        # The second as under `nohup`, which ignores SIGHUP: a new process inherits that.
        before = signal.signal(signal.SIGHUP, signal.SIG_IGN) if ignoring else None
        try:
            process = warm_start.popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                       cwd=workdir, pass_fds=(fd,))
        finally:
            if ignoring:
                signal.signal(signal.SIGHUP, before)
        assert isinstance(process, warm_start.WarmProcess)
        out, err = process.communicate(timeout=300)
        results.append((process.returncode, out, err))
        command = [a if a != "probe" else "probe2" for a in command]
    os.close(fd)
    assert [code for code, _, _ in results] == [0, 0], results[0][2][-2000:]
    first, second = facts()[0], facts()[-1]
    assert first["cwd"] == str(workdir) and first["marker"] == "seen" and first["threads"] == 1
    assert first["passed"] == "under its own number"
    assert first["sighup"] == str(signal.SIG_DFL) and second["sighup"] == str(signal.SIG_IGN)
    assert first["argv"][:2] == ["fit", "--config"]
    assert first["main_spec"] == "lightning_hw.__main__"  # what Lightning's DDP launcher re-runs
    assert Path(first["lightning_hw_from"]).resolve() == (Path(warm_start.__file__).parents[1] / "__init__.py").resolve()
    assert first["pid"] != second["pid"]
    # Seeded afresh as a new interpreter is: two forks do not draw the same numbers.
    assert first["drawn"][0] != second["drawn"][0] and first["drawn"][1] != second["drawn"][1]
    assert "Run saved in" in results[0][1]
    # Its exit finished what Python's exit finishes (the fork skips only the freeing of every object).
    for pid in (first["pid"], second["pid"]):
        ended = tmp_path / f"facts.jsonl.{pid}"
        assert Path(f"{ended}.thread").read_text() == "joined" and Path(f"{ended}.atexit").is_file()
        assert Path(f"{ended}.left-open").read_text() == "flushed at exit"


@pytest.mark.parametrize("ending", [
    "pass", "sys.exit(3)", "sys.exit('bye')", "raise ValueError('wrong')", "raise KeyboardInterrupt",
    "print('unflushed', end=''); sys.stderr.write('unflushed too')",
    # An executor still open (a plugin's, or joblib's reusable one that sklearn's n_jobs starts): its
    # threads are no daemons, and Python's exit tells them to end before it joins them.
    "import concurrent.futures; sys.pool = concurrent.futures.ThreadPoolExecutor(1); sys.pool.submit(print, 'queued')",
    # Ctrl-C while the exit waits for a thread: Python prints it as ignored and ends as it would have (atexit included).
    "import atexit, os, signal, threading, time; atexit.register(print, 'atexit ran'); "
    "threading.Thread(target=lambda: (time.sleep(0.5), os.kill(os.getpid(), signal.SIGINT), time.sleep(1))).start()",
    # stdout closed with output still in its buffer: Python says why it was lost and ends with 120.
    "import os; sys.stdout.write('lost'); os.close(1)",
])
def test_a_fork_ends_with_the_status_and_output_python_would(ending, tmp_path):
    """The fork's own exit (:func:`fork_exit.end_as_python_would`) against a fresh interpreter's, for each way to end."""
    body = f"import sys\n{ending}\n"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # stdout buffered, as by default
    fresh = subprocess.run([sys.executable, "-c", body], capture_output=True, text=True, cwd=tmp_path, env=env)
    fork_like = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        from lightning_hw.cli import fork_exit
        fork_exit.end_as_python_would(lambda: exec({body!r}, {{}}))
    """)], capture_output=True, text=True, cwd=tmp_path, timeout=60, env=env)
    assert fork_like.returncode == fresh.returncode
    assert fork_like.stdout == fresh.stdout
    assert fork_like.stderr.splitlines()[-1:] == fresh.stderr.splitlines()[-1:]  # the frames above differ


def test_a_forks_exit_codes_and_signals_are_a_fresh_process_s(warm, tmp_path):
    refused = warm_start.run([*LHW, *tiny_fit_args(tmp_path, "--trainer.max_epoks", "3")], capture_output=True, text=True, cwd=tmp_path)
    assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1
    assert refused.stderr.startswith("error: unknown option --trainer.max_epoks; did you mean --trainer.max_epochs")

    run = tmp_path / "runs" / "quickstart" / "long"
    long_fit = [*LHW, *tiny_fit_args(tmp_path, "--trainer.max_epochs", "1000", "--run.name", "long")]
    with warm_start.popen(long_fit, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path) as fit:
        assert isinstance(fit, warm_start.WarmProcess)
        deadline = time.monotonic() + 120
        while not (run / "checkpoints" / "last.ckpt").is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
        fit.send_signal(signal.SIGTERM)
        output = fit.stdout.read()
        assert fit.wait(timeout=120) == 143, output
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "interrupted" and status["signal"] == "SIGTERM" and "--ckpt_path last" in output

    sleeper = warm_start.popen([*LHW, *tiny_fit_args(tmp_path, "--trainer.max_epochs", "1000", "--run.name", "killed")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    time.sleep(1)
    sleeper.kill()
    assert sleeper.wait(timeout=60) == -signal.SIGKILL
    slow = warm_start.popen([*LHW, *tiny_fit_args(tmp_path, "--trainer.max_epochs", "1000", "--run.name", "slow")],
                            stdout=subprocess.DEVNULL, cwd=tmp_path)
    with pytest.raises(subprocess.TimeoutExpired):
        slow.wait(timeout=0.5)
    # not left training for minutes: its warm process, retired by a later test, ends only once its forks have
    slow.kill()
    assert slow.wait(timeout=60) == -signal.SIGKILL


def test_a_stop_signal_sent_to_a_fork_as_it_starts_is_not_lost(warm, tmp_path):
    """A study stopped just as it starts a fit passes the SIGTERM on at once, maybe before the fork has set its
    own handlers: it had the warm process's, which ignored SIGTERM, so the signal was lost and the fit trained
    all its epochs (test_studies' fit started as the study is stopped, under load). A fresh interpreter
    started by ``subprocess.Popen`` has exec'd before its pid is known: it gets every such signal. Lost, the
    command below exits 2 (an unknown command); each try here lost it about half the time before."""
    codes = []
    for _ in range(10):
        process = warm_start.popen([*LHW, "studdy"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
        assert isinstance(process, warm_start.WarmProcess)
        process.send_signal(signal.SIGTERM)
        codes.append(process.wait(timeout=60))
    assert codes == [-signal.SIGTERM] * 10


def test_what_a_fork_could_get_wrong_starts_as_a_plain_subprocess(warm, tmp_path):
    plain = {
        "an import-time variable": ([*LHW, "--help"], {**os.environ, "MPLBACKEND": "pdf"}),
        "the switch": ([*LHW, "--help"], {**os.environ, warm_start.SWITCH_ENV: "0"}),
        "another program": ([sys.executable, "-c", "pass"], None),
    }
    shadow = tmp_path / "shadow"
    (shadow / "yaml").mkdir(parents=True)  # a folder on PYTHONPATH with a module the warm process has imported
    plain["a module shadowed"] = ([*LHW, "--help"], {**os.environ, "PYTHONPATH": str(shadow)})
    for what, (command, env) in plain.items():
        process = warm_start.popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        assert isinstance(process, subprocess.Popen), what
        assert process.wait(timeout=120) == 0, what
    # Another virtual environment's python is a link to the same binary, with site-packages of its own
    # (here none but what PYTHONPATH adds): a fork would run it with ours.
    other_env = tmp_path / "other-venv"
    (other_env / "bin").mkdir(parents=True)
    (other_env / "pyvenv.cfg").write_text(f"home = {Path(os.path.realpath(sys.executable)).parent}\ninclude-system-site-packages = false\n")
    (other_env / "bin" / "python").symlink_to(os.path.realpath(sys.executable))
    elsewhere = warm_start.popen([str(other_env / "bin" / "python"), *LHW[1:], "--help"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert isinstance(elsewhere, subprocess.Popen)
    elsewhere.wait(timeout=120)
    # The directory of lightning-hw's own checkout (where a study usually runs) does not count as shadowing.
    with warm_start.popen([*LHW, "--help"], stdout=subprocess.DEVNULL, cwd=Path(warm_start.__file__).parents[2]) as in_checkout:
        assert isinstance(in_checkout, warm_start.WarmProcess)


def test_the_warm_process_ends_with_its_caller(tmp_path):
    caller = textwrap.dedent("""
        import subprocess, sys
        from lightning_hw.cli import warm_start
        assert warm_start.warm_up(wait=180)
        print(warm_start._Server._shared.pid, flush=True)
        warm_start.run([sys.executable, "-m", "lightning_hw", "--help"], capture_output=True)
    """)
    done = subprocess.run([sys.executable, "-c", caller], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    server = int(done.stdout.split()[0])
    deadline = time.monotonic() + 30
    while Path(f"/proc/{server}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    state = Path(f"/proc/{server}/stat").read_text().split()[2] if Path(f"/proc/{server}").exists() else "gone"
    assert state in ("gone", "Z")


def test_a_module_in_the_callers_directory_is_not_imported_by_the_warm_process(tmp_path):
    """A file in the directory a study runs in, named as a module the libraries import, stays the fits' business.

    The warm process started with the caller's directory first on ``sys.path`` (``-c``): a
    ``yaml.py`` there (or a script named as any module the libraries import, ``h2.py``) ran in
    it; a script that starts a study forked warm processes from each other until memory ran out.
    A fresh ``python -m lightning_hw`` in that directory imports the file, so a fork, which has
    the library's module already, does not stand in for one there: the command starts afresh.
    """
    (tmp_path / "yaml.py").write_text("import os\nopen(f'imported-by-{os.getpid()}', 'w').close()\n")
    caller = textwrap.dedent("""
        import subprocess, sys
        from lightning_hw.cli import warm_start
        assert warm_start.warm_up(wait=180)
        fit = warm_start.popen([sys.executable, "-m", "lightning_hw", "--help"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        fit.wait(timeout=180)
        print(warm_start._Server._shared.pid, type(fit).__name__, flush=True)
    """)
    done = subprocess.run([sys.executable, "-c", caller], capture_output=True, text=True, timeout=400, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    server, kind = done.stdout.split()
    assert not (tmp_path / f"imported-by-{server}").exists()
    assert kind == "Popen"


def test_a_package_installed_since_the_warm_process_started_gets_another(warm, tmp_path, monkeypatch):
    """pip adds or removes entries of site-packages: the warm process's modules may then be stale (an upgraded
    torch, a new plugin's .pth), so commands start afresh until a new warm process is ready."""
    site = tmp_path / "site-packages"
    site.mkdir()
    monkeypatch.setattr(warm_start, "_package_folders", lambda: [str(site)])
    stale = warm_start._Server._shared
    assert stale is not None and stale.ready
    os.utime(site, (stale.started - 60, stale.started - 60))  # as installed before it started
    assert not stale.packages_changed()
    time.sleep(0.05)
    (site / "new_plugin.pth").write_text("")  # as `pip install` writes one
    process = warm_start.popen([*LHW, "--help"], stdout=subprocess.DEVNULL)
    assert isinstance(process, subprocess.Popen) and process.wait(timeout=120) == 0
    assert warm_start._Server._shared is not stale and stale in warm_start._Server._retired
    # With no fork of its own still running, the stale one ends (its 500 MB stayed until the caller ended; its
    # small keeper stays while anything orphaned below it runs on)
    deadline = time.monotonic() + 60
    while Path(f"/proc/{stale.pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{stale.pid}").exists()
    while not stale.closed and time.monotonic() < deadline:  # its keeper ends too
        time.sleep(0.1)
    assert stale.closed and stale.socket.fileno() == -1  # its socket was left open: a descriptor per replacement
    assert warm_start.warm_up(wait=180)
    assert isinstance(warm_start.popen([*LHW, "--help"], stdout=subprocess.DEVNULL), warm_start.WarmProcess)
    # warm_up too replaces a warm process gone stale, rather than call it ready (a test's fixture did, after
    # another test of its worker had installed a package: every command then started afresh)
    (site / "another.pth").write_text("")
    assert warm_start.warm_up(wait=180)
    assert isinstance(warm_start.popen([*LHW, "--help"], stdout=subprocess.DEVNULL), warm_start.WarmProcess)


def test_the_warm_process_ends_when_its_caller_is_killed_outright(tmp_path):
    """SIGKILL gives the caller no chance to close anything, and a fork of its own may hold its socket on."""
    caller = textwrap.dedent("""
        import os, sys, time
        from lightning_hw.cli import warm_start
        assert warm_start.warm_up(wait=180)
        holder = os.fork()
        if holder == 0:  # holds the caller's socket, as a DataLoader worker would
            time.sleep(60)
            os._exit(0)
        print(warm_start._Server._shared.pid, warm_start._Server._shared.process.pid, holder, flush=True)
        time.sleep(60)
    """)
    process = subprocess.Popen([sys.executable, "-c", caller], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        server, keeper, holder = map(int, process.stdout.readline().split())
        process.kill()
        process.wait()
        for pid in (server, keeper):  # the warm process, and on Linux its keeper above it
            deadline = time.monotonic() + 20
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            state = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}").exists() else "gone"
            assert state in ("gone", "Z")
    finally:
        if process.poll() is None:
            process.kill()
        try:
            os.kill(holder, signal.SIGKILL)
        except (NameError, ProcessLookupError):
            pass


def test_a_caller_whose_own_environment_changed_still_forks(warm, monkeypatch):
    """Lightning's ``seed_everything`` sets ``PL_GLOBAL_SEED`` in the caller's environment (an in-process fit of a
    test, or of a study's own code). The warm process's environment then no longer matched the caller's, so every
    later command started afresh although ``warm_up`` called it ready (CI: three tests here failed, and the rest of
    that pytest worker's commands started afresh)."""
    from lightning.pytorch import seed_everything

    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)
    monkeypatch.delenv("PL_SEED_WORKERS", raising=False)
    assert warm_start.warm_up(wait=180)
    seed_everything(7, workers=True, verbose=False)  # read when a fit runs, not when a library is imported
    with warm_start.popen([*LHW, "--help"], stdout=subprocess.DEVNULL) as seeded:
        assert isinstance(seeded, warm_start.WarmProcess)
    # A variable a library may read at import (matplotlib's backend) set in the caller: a warm process that imported
    # without it is replaced, not left ready for commands that can no longer fork from it.
    before = warm_start._Server._shared
    monkeypatch.setenv("MPLBACKEND", "pdf")
    assert warm_start.warm_up(wait=180)
    assert warm_start._Server._shared is not before
    with warm_start.popen([*LHW, "--help"], stdout=subprocess.DEVNULL) as changed:
        assert isinstance(changed, warm_start.WarmProcess)


def test_a_caller_that_imported_scikit_learn_since_forks_from_the_same_warm_process(warm, monkeypatch):
    """scikit-learn and joblib add ``KMP_DUPLICATE_LIB_OK`` and ``KMP_INIT_AT_FORK`` to the environment as they are
    imported (``os.environ.setdefault``), in the warm process and in a caller that imports them later (an in-process
    fit of a test). The caller's environment then differed from the one its warm process started with: the warm
    process was replaced (all its imports again), the commands meanwhile started afresh, and so did every command
    given an environment copied before (a test's ``env``), ~5 s more each. A new interpreter would add them too."""
    kmp = {"KMP_DUPLICATE_LIB_OK": "True", "KMP_INIT_AT_FORK": "FALSE"}
    for name in kmp:
        monkeypatch.delenv(name, raising=False)
    assert warm_start.warm_up(wait=180)  # a warm process started by a caller without them
    copied_before = dict(os.environ)
    started = warm_start._Server._shared
    for name, value in kmp.items():  # as `import sklearn` in the caller sets them
        monkeypatch.setenv(name, value)
    assert warm_start.warm_up(wait=0)
    with warm_start.popen([*LHW, "--help"], stdout=subprocess.DEVNULL) as caller_env:
        assert isinstance(caller_env, warm_start.WarmProcess)
    with warm_start.popen([*LHW, "--help"], stdout=subprocess.DEVNULL, env=copied_before) as older_env:
        assert isinstance(older_env, warm_start.WarmProcess)
    assert warm_start._Server._shared is started
    # Another value than the one those libraries would add still differs: a new interpreter keeps it.
    assert warm_start._Server._shared.differing_env({**copied_before, "KMP_INIT_AT_FORK": "TRUE"}) == ["KMP_INIT_AT_FORK"]


def test_a_fork_whose_warm_process_was_killed_still_reports_its_own_exit_code(tmp_path):
    """The out-of-memory killer (or ``kill -9``) ends the warm process alone: its forks go on and finish.

    Their exit codes came to the caller from the warm process only, so a study recorded a fit that went on to
    finish (its status.json: finished) as killed, -9, and its trial as FAILED. What a fork leaves running
    when it ends (here a ``sleep``) is reaped by the warm process's keeper rather than left a zombie; and a
    fork whose warm process died still knows which process asked for it (a study's fit tells its study's copy
    of a SIGTERM by it).
    """
    orphans = tmp_path / "orphans"
    orphans.mkdir()
    (orphans / "orphan_probe.py").write_text(textwrap.dedent("""
        import os, subprocess
        from lightning_hw.data.datasets.digits import Digits

        class LeavesAnOrphan(Digits):
            def __init__(self, *args, **kwargs):
                print(subprocess.Popen(["sleep", "1"]).pid, flush=True)  # outlives this process
                os._exit(0)

        class ReportsItsCaller(Digits):
            def __init__(self, *args, **kwargs):
                import time
                from lightning_hw.cli.warm_start import caller_pid
                while not os.path.exists("go"):
                    time.sleep(0.05)
                print(caller_pid(), flush=True)
                os._exit(0)
    """))
    fit = [*LHW, *tiny_fit_args(tmp_path, "--trainer.max_epochs", "4", "--run.name", "orphan")]
    typo = [*LHW, *tiny_fit_args(tmp_path, "--trainer.max_epoks", "3")]
    leaver = [*LHW, *tiny_fit_args(tmp_path, "--data", "orphan_probe.LeavesAnOrphan")]
    asker = [*LHW, *tiny_fit_args(tmp_path, "--data", "orphan_probe.ReportsItsCaller")]
    caller = textwrap.dedent("""
        import json, os, signal, subprocess, sys, time
        from lightning_hw.cli import warm_start
        fit_args, typo_args, leaver_args, asker_args, orphans = json.loads(sys.argv[1])
        assert warm_start.warm_up(wait=180)
        server = warm_start._Server._shared
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([orphans, *filter(None, [os.environ.get("PYTHONPATH")])])}
        leaver = warm_start.popen(leaver_args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        orphan = int(leaver.communicate(timeout=300)[0])
        deadline = time.monotonic() + 30
        while os.path.exists(f"/proc/{orphan}") and time.monotonic() < deadline:
            time.sleep(0.1)
        print("orphan-reaped" if not os.path.exists(f"/proc/{orphan}") else "orphan-left", flush=True)
        fit = warm_start.popen(fit_args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        typo = warm_start.popen(typo_args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        asker = warm_start.popen(asker_args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        assert all(isinstance(p, warm_start.WarmProcess) for p in (fit, typo, asker))
        os.kill(server.pid, signal.SIGKILL)
        open("go", "w").close()
        print(fit.wait(timeout=300), typo.wait(timeout=300), flush=True)
        print("asked-by-caller" if int(asker.communicate(timeout=300)[0]) == os.getpid() else "asked-by-other", flush=True)
        # what stayed above the warm process ends once it has nothing left to report
        server.process.wait(timeout=30)
        # this process's own children are its own to wait for, as before
        print(subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"]).wait(), flush=True)
    """)
    done = subprocess.run([sys.executable, "-c", caller, json.dumps([fit, typo, leaver, asker, str(orphans)])],
                          capture_output=True, text=True, timeout=500, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["orphan-reaped", "0", "2", "asked-by-caller", "3"]
    status = json.loads((tmp_path / "runs" / "quickstart" / "orphan" / "status.json").read_text())
    assert status["status"] == "finished"


def test_a_fork_whose_end_is_heard_before_its_start_still_lets_a_retired_warm_process_end(warm, monkeypatch):
    """On a busy machine the caller may read that a fork ended before the thread that asked for it wakes to its pid.

    That thread counted the fork as running only once awake, after its end had been counted: it stayed "running"
    for ever, and a retired warm process (one replaced by another), which ends once its forks have, held its
    ~500 MB until its caller ended.
    """
    assert warm_start.warm_up(wait=180)  # one that an earlier test's environment left stale is replaced
    server = warm_start._Server._shared

    class LateToWake(threading.Condition):
        """Wakes the thread that asked for a fork only once the fork's end has been read too, as a busy machine may."""

        def wait_for(self, predicate, timeout=None):
            woke = super().wait_for(predicate, timeout)
            super().wait_for(lambda: not server._started or any(
                {number, pid} & server._exited.keys() for number, pid in server._started.items()), 120)
            return woke

    monkeypatch.setattr(server, "_changed", LateToWake(server._lock))
    with warm_start.popen([*LHW, "--help"], stdout=subprocess.DEVNULL) as quick:
        assert isinstance(quick, warm_start.WarmProcess)
        assert quick.wait(timeout=120) == 0
    warm_start._Server.replace(server, start=False)
    deadline = time.monotonic() + 60
    while Path(f"/proc/{server.pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{server.pid}").exists()


def test_warm_up_starts_nothing_where_every_command_starts_afresh(monkeypatch):
    """With ``LIGHTNING_HW_WARM_START=0`` no command forks: a warm process started anyway only cost its imports."""
    monkeypatch.setenv(warm_start.SWITCH_ENV, "0")
    monkeypatch.setattr(warm_start._Server, "_shared", None)  # as in a process that has none yet
    assert warm_start.warm_up(wait=1) is False
    assert warm_start._Server._shared is None
