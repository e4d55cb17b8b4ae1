"""The benchmark runner finds every benchmark module by itself and runs them one after the other."""

from pathlib import Path

import pytest

from tests.load.__main__ import benchmarks, main


@pytest.fixture
def suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A package of fake benchmarks: two good ones, a failing one, a helper and a test module."""
    package = tmp_path / "fakebench"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, body in {
        "alpha": 'print("| alpha | 1,000 ops/s |")',
        "beta": 'print("| beta | 2,000 ops/s |")',
        "broken": "raise SystemExit(3)",
    }.items():
        (package / f"{name}.py").write_text(f'if __name__ == "__main__":\n    {body}\n')
    (package / "_shared.py").write_text('if __name__ == "__main__":\n    print("helper")\n')
    (package / "test_alpha.py").write_text("def test_nothing():\n    pass\n")
    (package / "notes.py").write_text("TABLE = 1\n")  # not runnable: no main block
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    return package


def test_benchmarks_are_discovered(suite):
    assert benchmarks(suite) == ["alpha", "beta", "broken"]


def test_all_run_in_order_and_a_failure_is_reported(suite, capfd):
    assert main([], package="fakebench", folder=suite) == 1
    out = capfd.readouterr().out
    assert out.index("| alpha |") < out.index("| beta |")
    assert "broken: FAILED (exit status 3)" in out
    assert "2 of 3 benchmarks ran; failed: broken" in out


def test_named_benchmarks_run_alone(suite, capfd):
    assert main(["beta"], package="fakebench", folder=suite) == 0
    out = capfd.readouterr().out
    assert "| beta |" in out and "| alpha |" not in out


def test_an_unknown_name_is_refused(suite, capfd):
    with pytest.raises(SystemExit) as exit_info:
        main(["gamma"], package="fakebench", folder=suite)
    assert exit_info.value.code == 2
    assert "available: alpha, beta, broken" in capfd.readouterr().err


def test_the_real_folder_lists_without_error(capfd):
    assert main(["--list"]) == 0
    capfd.readouterr()
