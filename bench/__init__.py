"""Benchmarks: ``python -m bench.run`` (``make bench``); see :mod:`bench.run`.

Adding a section: put a module in :data:`bench.run.OPTIONAL_SECTIONS` (``bench.speed`` is already listed)
that defines

- ``SECTION = "speed"``: its name for ``--sections``;
- ``run(ctx: bench.run.BenchContext) -> dict``: measures and returns JSON-able results (``ctx`` holds the
  data folder, a scratch folder, the bi-/cross-encoder paths, ``docs``, ``queries``, ``repeats``, ``quick``,
  and ``ctx.worker(task, config)`` to run a :mod:`bench.worker` task in a fresh process);
- ``markdown(result: dict) -> str``: its part of the results table.

The run stores the dict under ``sections[SECTION]`` of ``bench/results/<date>.json``. A module that is
not there is skipped.
"""
