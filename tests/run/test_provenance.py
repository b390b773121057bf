"""Provenance collection against real git repositories, real installed distributions and real
subprocesses standing in for the driver and its workers."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from memento.run.provenance import (
    DIFF_LIMIT,
    Collector,
    Provenance,
    describe,
    distributions,
)

#: A module installed in the test environment that neither memento nor pytest imports.
WORKER_ONLY_MODULE = "locket"
WORKER_ONLY_DISTRIBUTION = "locket"


#: git as it behaves by default: the tests compare with `git diff HEAD` output, which the
#: user's own configuration (prefixes, colours, diff tools) would change.
GIT_ENV = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}


def git(repo: Path, *args: str) -> bytes:
    """Runs git in ``repo`` with an identity of its own and no signing, as a user would."""
    command = ["git", "-C", str(repo), "-c", "user.name=Test", "-c", "user.email=t@example.com"]
    command += ["-c", "commit.gpgsign=false", *args]
    return subprocess.run(command, check=True, capture_output=True, env=GIT_ENV).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with one commit holding ``experiment.py`` and ``data.txt``."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    (root / "experiment.py").write_text("def f(x):\n    return x\n")
    (root / "data.txt").write_text("one\ntwo\n")
    git(root, "add", "experiment.py", "data.txt")
    git(root, "commit", "-q", "-m", "first")
    return root


def collect(source: Path | None) -> Provenance:
    """The provenance a run of ``source`` would record."""
    return Collector(None if source is None else str(source)).result()


def test_clean_repository(repo: Path) -> None:
    p = collect(repo / "experiment.py")
    assert p.git_commit == git(repo, "rev-parse", "HEAD").decode().strip()
    assert p.git_root is not None
    assert Path(p.git_root).resolve() == repo.resolve()
    assert p.dirty is False
    assert p.diff is None and p.diff_hash is None
    assert describe(p)[0] == f"commit  {p.git_commit} (clean)"


def test_modified_tracked_file_is_dirty_with_its_diff(repo: Path) -> None:
    (repo / "data.txt").write_text("one\nTWO CHANGED\n")
    p = collect(repo / "experiment.py")
    assert p.dirty is True
    assert p.diff is not None and "+TWO CHANGED" in p.diff and "-two" in p.diff
    assert p.diff_hash == hashlib.sha256(git(repo, "diff", "HEAD")).hexdigest()
    lines = len(git(repo, "diff", "HEAD").splitlines())
    assert lines == 8
    assert describe(p)[0] == (
        f"commit  {p.git_commit} (dirty: diff sha256 {p.diff_hash[:12]}, {lines} lines)"
    )


def test_staged_change_is_dirty(repo: Path) -> None:
    (repo / "experiment.py").write_text("def f(x):\n    return 2 * x\n")
    git(repo, "add", "experiment.py")
    p = collect(repo / "experiment.py")
    assert p.dirty is True
    assert p.diff is not None and "+    return 2 * x" in p.diff


def test_renamed_file_as_git_diff_shows_it(repo: Path) -> None:
    git(repo, "mv", "data.txt", "moved.txt")
    p = collect(repo / "experiment.py")
    assert p.dirty is True
    assert p.diff is not None and "rename from data.txt" in p.diff
    assert p.diff_hash == hashlib.sha256(git(repo, "diff", "HEAD")).hexdigest()


def test_untracked_other_file_is_not_dirty(repo: Path) -> None:
    (repo / "grid.sqlite").write_bytes(b"\0store")
    (repo / "notes.txt").write_text("scratch\n")
    p = collect(repo / "experiment.py")
    assert p.dirty is False
    assert p.diff is None


def test_untracked_source_file_is_dirty(repo: Path) -> None:
    (repo / "new_experiment.py").write_text("print('new')\n")
    p = collect(repo / "new_experiment.py")
    assert p.dirty is True
    assert p.diff is None  # `git diff HEAD` does not show untracked files
    assert "not tracked" in describe(p)[0]


def test_source_file_in_a_subdirectory(repo: Path) -> None:
    (repo / "sub").mkdir()
    (repo / "sub" / "exp.py").write_text("x = 1\n")
    assert collect(repo / "sub" / "exp.py").dirty is True
    git(repo, "add", "sub/exp.py")
    git(repo, "commit", "-q", "-m", "sub")
    p = collect(repo / "sub" / "exp.py")
    assert p.dirty is False
    assert p.git_root is not None and Path(p.git_root).resolve() == repo.resolve()


def test_binary_change_as_git_shows_it(repo: Path) -> None:
    (repo / "blob.bin").write_bytes(bytes(range(256)))
    git(repo, "add", "blob.bin")
    git(repo, "commit", "-q", "-m", "blob")
    (repo / "blob.bin").write_bytes(bytes(reversed(range(256))))
    p = collect(repo / "experiment.py")
    assert p.dirty is True
    assert p.diff is not None and "Binary files a/blob.bin and b/blob.bin differ" in p.diff
    assert p.diff_hash == hashlib.sha256(git(repo, "diff", "HEAD")).hexdigest()


def test_huge_diff_is_capped_and_hashed_whole(repo: Path) -> None:
    (repo / "data.txt").write_text(
        "".join(f"line {i:07d} of a generated file\n" for i in range(20_000))
    )
    full = git(repo, "diff", "HEAD")
    assert len(full) > 3 * DIFF_LIMIT
    p = collect(repo / "experiment.py")
    assert p.diff is not None
    more = len(full.decode()) - DIFF_LIMIT
    marker = f"\n[... {more} more characters]"
    assert p.diff == full.decode()[:DIFF_LIMIT] + marker
    assert p.diff_hash == hashlib.sha256(full).hexdigest()
    assert describe(p)[0].endswith("+ lines)")


def test_git_does_not_touch_the_index(repo: Path) -> None:
    """A stat change that `git status` would refresh into the index is left alone."""
    index = repo / ".git" / "index"
    before = index.read_bytes()
    os.utime(repo / "data.txt", (1, 1))
    p = collect(repo / "experiment.py")
    assert p.dirty is False
    assert index.read_bytes() == before


def test_not_a_repository(tmp_path: Path) -> None:
    source = tmp_path / "alone.py"
    source.write_text("x = 1\n")
    p = collect(source)
    assert (p.git_root, p.git_commit, p.dirty, p.diff, p.diff_hash) == (None,) * 5
    assert describe(p)[0] == "not in a git repository"


def test_no_commit_yet(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    source = tmp_path / "exp.py"
    source.write_text("x = 1\n")
    p = collect(source)
    assert p.git_root is not None and p.git_commit is None
    assert p.diff is None and p.diff_hash is None
    assert describe(p)[0].startswith("commit  none yet")


def test_no_source_file_uses_the_working_directory(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo)
    p = collect(None)
    assert p.git_commit == git(repo, "rev-parse", "HEAD").decode().strip()
    assert p.dirty is False


def test_machine_fields_and_command() -> None:
    p = Collector(None, argv=["python", "run.py", "--fast"]).result()
    assert p.command == ["python", "run.py", "--fast"]
    assert p.python.startswith(f"{sys.version_info.major}.{sys.version_info.minor}.")
    assert p.python.endswith(")") and p.platform and p.host
    assert isinstance(p.gpus, list)
    lines = describe(p)
    assert "command  python run.py --fast" in lines
    assert any(line.startswith("python  ") for line in lines)
    assert Collector(None).result().command == list(sys.orig_argv)


def test_distributions_of_modules() -> None:
    import numpy

    found = distributions(["numpy", "os", "memento", "numpy.linalg", "_no_such_module", "nope"])
    assert found["numpy"] == numpy.__version__
    assert "memento-grid" in found
    assert not {"os", "nope", "_no_such_module"} & set(found)
    assert len(found) == 2
    assert distributions(iter(["numpy"])) == {"numpy": numpy.__version__}


def test_installed_distributions_agree_with_importlib_metadata() -> None:
    """The direct read of the metadata folders finds what ``importlib.metadata`` finds."""
    import importlib.metadata as metadata

    from memento._util.distributions import scan

    # Read now, over sys.path as it is now: what importlib.metadata reads too (the process's
    # own cache was made when it first asked, and other tests add folders to sys.path).
    modules, versions = scan(sys.path)
    expected_versions: dict[str, str] = {}
    for dist in metadata.distributions():
        expected_versions.setdefault(dist.metadata["Name"], dist.version)
    assert versions == expected_versions
    expected = metadata.packages_distributions()
    importable = [name for name in expected if name.isidentifier()]
    assert len(importable) > 20
    for name in importable:
        assert sorted(set(modules.get(name, []))) == sorted(set(expected[name])), name


def test_collector_thread_imports_nothing() -> None:
    """A worker forked while another thread is halfway through an import can hang on that
    module's lock: the collector thread must not import at all."""
    out = run_python(
        "import sys\n"
        "from memento.run.provenance import Collector\n"
        "before = set(sys.modules)\n"
        "Collector(None).result()\n"
        "print(sorted(set(sys.modules) - before))\n"
    )
    assert out.strip() == "[]"


def test_round_trip_through_a_row(repo: Path) -> None:
    (repo / "data.txt").write_text("changed\n")
    p = collect(repo / "experiment.py")
    row = json.loads(json.dumps(p.as_row()))
    assert Provenance.from_row(row) == p
    as_text = {
        **row,
        "command": json.dumps(row["command"]),
        "packages": json.dumps(row["packages"]),
    }
    as_text["gpus"], as_text["dirty"] = json.dumps(row["gpus"]), 1
    assert Provenance.from_row(as_text) == p
    assert describe(row) == describe(p)


def run_python(code: str, env: dict[str, str] | None = None) -> str:
    """The stdout of a fresh interpreter running ``code``."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_git_missing(repo: Path, tmp_path: Path) -> None:
    """Without a git program the git fields are None, and nothing raises."""
    empty = tmp_path / "no-programs"
    empty.mkdir()
    out = run_python(
        "import json\n"
        "from memento.run.provenance import Collector\n"
        f"print(json.dumps(Collector({str(repo / 'experiment.py')!r}).result().as_row()))\n",
        env={**os.environ, "PATH": str(empty)},
    )
    row = json.loads(out)
    assert [row[k] for k in ("git_root", "git_commit", "dirty", "diff", "diff_hash")] == [None] * 5
    assert row["gpus"] == [] and row["python"]


def test_new_top_level_modules() -> None:
    out = run_python(
        "import json, sys\n"
        "from memento.worker.imports import new_top_level_modules as new\n"
        f"assert {WORKER_ONLY_MODULE!r} not in sys.modules\n"
        "first = new()\n"
        "second = new()\n"
        f"import {WORKER_ONLY_MODULE}\n"
        "third = new()\n"
        "fourth = new()\n"
        "print(json.dumps([first, second, third, fourth]))\n"
    )
    first, second, third, fourth = json.loads(out)
    assert "memento" in first
    assert not {"json", "sys", "os"} & set(first)  # the standard library is skipped
    assert not [name for name in first if name.startswith("_")]
    assert second is None
    assert third == [WORKER_ONLY_MODULE]
    assert fourth is None


def test_modules_imported_only_in_a_worker_are_recorded(tmp_path: Path) -> None:
    """A worker process imports a module the driver process never does; the names it reports
    reach the driver's Collector, whose result lists that module's distribution."""
    worker = run_python(
        "import json\n"
        "from memento.worker.imports import new_top_level_modules as new\n"
        "new()\n"
        f"import {WORKER_ONLY_MODULE}\n"
        "print(json.dumps(new()))\n"
    )
    driver = run_python(
        "import json, sys\n"
        "from memento.run.provenance import Collector\n"
        "collector = Collector(None)\n"
        f"collector.add_modules({json.loads(worker)!r})\n"
        "row = collector.result().as_row()\n"
        f"assert {WORKER_ONLY_MODULE!r} not in sys.modules\n"
        "print(json.dumps(row['packages']))\n"
    )
    packages = json.loads(driver)
    assert WORKER_ONLY_DISTRIBUTION in packages
    assert "memento-grid" in packages


def test_environment_variables_never_recorded(repo: Path) -> None:
    secret = "s3cr3t-token-7f9d2b"
    env = {**os.environ, "MEMENTO_TEST_SECRET": secret, "AWS_SECRET_ACCESS_KEY": secret}
    out = run_python(
        "import json\n"
        "from memento.run.provenance import Collector, describe\n"
        f"p = Collector({str(repo / 'experiment.py')!r}).result()\n"
        "print(json.dumps(p.as_row()))\n"
        "print(json.dumps(describe(p)))\n",
        env=env,
    )
    assert json.loads(out.splitlines()[0])["python"]
    assert secret not in out
    assert "MEMENTO_TEST_SECRET" not in out and "AWS_SECRET_ACCESS_KEY" not in out


FORK_WHILE_COLLECTING = """
import os, signal, sys
from memento.run.provenance import Collector
collector = Collector(None)
forks = failures = 0
while any(thread.is_alive() for thread in collector._threads):
    pid = os.fork()
    if pid == 0:
        signal.alarm(10)  # a hung child dies instead of hanging the test
        import importlib.metadata, email.parser, zipfile
        os._exit(0)
    forks += 1
    _, status = os.waitpid(pid, 0)
    failures += os.waitstatus_to_exitcode(status) != 0
collector.result()
print(forks, failures)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_can_import_while_collecting() -> None:
    """Workers fork (the default on Linux) while the collector thread reads the distributions
    and imports what that needs: a child must still import those modules without hanging."""
    forks, failures = map(int, run_python(FORK_WHILE_COLLECTING).split())
    assert forks > 0
    assert failures == 0


def test_collection_time_for_information(repo: Path) -> None:
    start = time.perf_counter()
    collector = Collector(str(repo / "experiment.py"))
    started = time.perf_counter()
    collector.result()
    done = time.perf_counter()
    print(f"\nCollector start {started - start:.4f} s, start -> result {done - start:.4f} s")


def test_platform_name_is_platform_platform() -> None:
    """The platform text read without a subprocess is the one ``platform.platform()`` gives."""
    import platform

    from memento.run.provenance import platform_name

    assert platform_name() == platform.platform()
    assert Collector(None).result().platform == platform.platform()


@pytest.mark.parametrize(
    "parts",
    [
        ("Linux", "6.1.0-18-amd64", "x86_64", "with", "glibc2.36"),
        ("Linux", "5.15.0 (custom) #1", "aarch64", "with", "glibc2.35"),
        ("Linux", '4.4.0/unknown:x;y"z', "", "with", "glibc2.17"),
    ],
)
def test_platform_text_is_joined_as_platform_joins_it(parts: tuple[str, ...]) -> None:
    """The cleaning of odd kernel release strings matches the standard library's own helper
    (``platform._platform``, private: compared only where this Python has it)."""
    import platform

    from memento.run.provenance import _platform_text

    helper = getattr(platform, "_platform", None)
    if helper is None:
        pytest.skip("this Python's platform module has no _platform helper")
    assert _platform_text(*parts) == helper(*parts)


def test_collector_waits_for_git_and_the_scan_side_by_side(repo: Path) -> None:
    """Git and the distributions are read in two threads; result() has both."""
    collector = Collector(str(repo / "experiment.py"))
    assert len(collector._threads) == 2
    p = collector.result()
    assert not any(thread.is_alive() for thread in collector._threads)
    assert p.git_commit == git(repo, "rev-parse", "HEAD").decode().strip()
    assert p.git_root == str(repo.resolve()) and p.dirty is False
    assert "memento-grid" in p.packages


def test_git_dir_in_the_environment_is_honoured(repo: Path, tmp_path: Path) -> None:
    """Outside any ``.git`` folder git is not even asked, unless ``GIT_DIR`` names one."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    source = elsewhere / "alone.py"
    source.write_text("x = 1\n")
    out = run_python(
        "import json\n"
        "from memento.run.provenance import Collector\n"
        f"print(json.dumps(Collector({str(source)!r}).result().as_row()))\n",
        env={**os.environ, "GIT_DIR": str(repo / ".git"), "GIT_WORK_TREE": str(repo)},
    )
    assert json.loads(out)["git_commit"] == git(repo, "rev-parse", "HEAD").decode().strip()
