"""Benchmarks: each module here runs on its own as `python -m tests.load.<name>` and prints a table with a baseline
measured in the same run; `python -m tests.load` (`make bench`) runs them all. They measure, they do not assert."""
