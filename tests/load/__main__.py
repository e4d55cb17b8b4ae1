"""python -m tests.load [NAME ...] (`make bench`): run every benchmark here, or the named ones, one after another.

A benchmark is a module of this folder runnable as `python -m tests.load.<name>` (it has an
`if __name__ == "__main__":` block); helper modules start with an underscore and test modules with `test_`.
Modules are found when the runner starts, so a new benchmark needs no registration. Each runs in its own process,
one at a time, so one's connections, threads and warm caches never skew the next one's figures. The exit status is
non-zero if any benchmark failed; the others still run.
"""

import argparse
import os
import pkgutil
import subprocess
import sys
import time
from pathlib import Path

MAIN_GUARD = '__name__ == "__main__"'


def benchmarks(folder: Path) -> list[str]:
    """The benchmark modules of `folder`, sorted by name."""
    names = []
    for module in pkgutil.iter_modules([str(folder)]):
        if module.ispkg or module.name.startswith(("_", "test_")):
            continue
        source = (folder / f"{module.name}.py").read_text(encoding="utf-8")
        if MAIN_GUARD in source or MAIN_GUARD.replace('"', "'") in source:
            names.append(module.name)
    return sorted(names)


def benchmark_run(package: str, name: str) -> int:
    """Run one benchmark in its own process, its output going straight to ours. Returns its exit status."""
    command = [sys.executable, "-m", f"{package}.{name}"]
    return subprocess.run(command, check=False, env=os.environ.copy()).returncode


def main(
    argv: list[str] | None = None, *, package: str = __package__ or "tests.load", folder: Path | None = None
) -> int:
    folder = folder or Path(__file__).resolve().parent
    available = benchmarks(folder)
    parser = argparse.ArgumentParser(prog=f"python -m {package}", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks to run (default: all of {available})")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(available) if available else "no benchmarks yet")
        return 0
    unknown = [name for name in args.names if name not in available]
    if unknown:
        parser.error(f"no benchmark named {', '.join(unknown)}; available: {', '.join(available) or 'none'}")
    chosen = args.names or available
    if not chosen:
        print(f"No benchmark modules in {folder}.")
        return 0
    failed = []
    for name in chosen:
        print(f"\n=== {name} ({package}.{name}) " + "=" * max(0, 60 - len(name) * 2 - len(package)), flush=True)
        started = time.monotonic()
        status = benchmark_run(package, name)
        print(
            f"--- {name}: {'ok' if status == 0 else f'FAILED (exit status {status})'} in "
            f"{time.monotonic() - started:.1f} s",
            flush=True,
        )
        if status != 0:
            failed.append(name)
    print(
        f"\n{len(chosen) - len(failed)} of {len(chosen)} benchmarks ran"
        + (f"; failed: {', '.join(failed)}" if failed else ".")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
