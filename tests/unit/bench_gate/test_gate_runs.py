"""The gate for real: a tiny benchmarked module in a throwaway git repository.

The base commit has `work()`; the head commit either slows it down five-fold (the gate
must exit 1) or changes nothing it measures (the gate must exit 0). Both sides run the
real machinery: `git archive` of the base, interleaved pytest-benchmark runs, comparison.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from benchmarks.gate import main, resolve_base

WORK = """
def work() -> int:
    total = 0
    for _ in range({repeat}):
        for i in range(3000):
            total += i * i
    return total // {repeat}
"""

BENCH = """
import pytest

from slowpoke import work


@pytest.mark.benchmark(group="work")
def test_work(benchmark):
    assert benchmark(work) == sum(i * i for i in range(3000))
"""

FAST_GATE = ["--rounds", "2", "--max-time", "0.1", "--min-rounds", "5"]


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        [
            "git",
            "-c",
            "user.name=gate",
            "-c",
            "user.email=gate@example.com",
            "-C",
            str(repo),
            *args,
        ],
        check=True,
        capture_output=True,
    )


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # In CI the gate's Markdown would otherwise land in the job's real step summary.
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    (tmp_path / "benchmarks" / "micro").mkdir(parents=True)
    (tmp_path / "benchmarks" / "micro" / "test_work.py").write_text(BENCH)
    (tmp_path / "slowpoke.py").write_text(WORK.format(repeat=1))
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "base")
    return tmp_path


def test_the_gate_fails_on_a_deliberately_slowed_function_after_confirming_it(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (repo / "slowpoke.py").write_text(WORK.format(repeat=5))
    git(repo, "commit", "-q", "-am", "slow down work() five-fold")

    assert main(["--repo", str(repo), "--base", "HEAD~1", *FAST_GATE, "--confirm-rounds", "1"]) == 1

    printed = capsys.readouterr().out
    assert "1 more interleaved round(s) to confirm" in printed
    # The last lines name the group over the limit and the base (CI may show only the tail).
    verdict, base_line, reports = printed.splitlines()[-3:]
    assert verdict.startswith("gate FAILED")
    assert "(over the limit: work " in verdict
    assert base_line == f"gate: base {_sha(repo, 'HEAD~1')[:12]} (--base HEAD~1)"
    assert reports.startswith("gate: wrote ")
    assert "round 3/3 head: 1 benchmarks" in printed


def test_the_gate_passes_when_the_measured_code_is_unchanged(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (repo / "README").write_text("nothing measured changes\n")
    git(repo, "add", "README")
    git(repo, "commit", "-q", "-m", "docs only")

    # Base defaults to HEAD~1 here. A burst of noise on a shared machine may make the
    # gate confirm first (that is what confirmation is for); the verdict must be a pass.
    assert main(["--repo", str(repo), *FAST_GATE]) == 0
    printed = capsys.readouterr().out
    assert "gate passed" in printed
    (work_line,) = [line for line in printed.splitlines() if line.startswith("work ")]
    assert work_line.split()[-1] == "pass"
    # The default reports, in the repository's .local/bench-gate/
    result = json.loads((repo / ".local" / "bench-gate" / "gate.json").read_text())
    assert (result["verdict"], [g["group"] for g in result["groups"]]) == ("pass", ["work"])
    markdown = (repo / ".local" / "bench-gate" / "gate.md").read_text()
    assert markdown.startswith("### Benchmark gate: passed")


def _sha(repo: Path, rev: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", rev], check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def test_a_committed_baseline_newer_than_the_merge_base_is_the_base(repo: Path) -> None:
    # origin/main at the first commit; BASELINE moved past it to an accepted slowdown.
    git(repo, "branch", "upstream")
    (repo / "slowpoke.py").write_text(WORK.format(repeat=5))
    git(repo, "commit", "-q", "-am", "an accepted slowdown")
    accepted = _sha(repo, "HEAD")
    (repo / "benchmarks" / "BASELINE").write_text(f"{accepted}  # accepted\n")
    git(repo, "add", "benchmarks/BASELINE")
    git(repo, "commit", "-q", "-m", "baseline moves")
    git(repo, "update-ref", "refs/remotes/origin/main", _sha(repo, "upstream"))

    assert resolve_base(repo, None) == (
        accepted,
        "committed baseline (benchmarks/BASELINE), newer than the merge base",
    )
    # A baseline older than the merge base does not win over it.
    git(repo, "update-ref", "refs/remotes/origin/main", _sha(repo, "HEAD"))
    (repo / "README").write_text("a later change\n")
    git(repo, "add", "README")
    git(repo, "commit", "-q", "-m", "a later change")
    assert resolve_base(repo, None) == (_sha(repo, "HEAD~1"), "merge base of HEAD and origin/main")


def test_rounds_alternate_which_side_runs_first(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (repo / "README").write_text("nothing measured changes\n")
    git(repo, "add", "README")
    git(repo, "commit", "-q", "-m", "docs only")

    main(["--repo", str(repo), "--base", "HEAD~1", *FAST_GATE, "--confirm-rounds", "0"])

    order = [
        line.split(":")[0]
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("round ")
    ]
    assert order == ["round 1/2 base", "round 1/2 head", "round 2/2 head", "round 2/2 base"]
