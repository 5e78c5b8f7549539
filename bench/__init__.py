"""Benchmarks of substra-worker, each measured against its baseline in the same run.

Run them with ``python -m bench`` (full size) or ``python -m bench --quick``;
see ``bench/README.md``.
"""
