"""winnow.evaluate: measure retrieval setups the way the field does.

- :mod:`~winnow.evaluate.dataset`: BEIR folders (``load_beir``), judged queries, corpus hashing.
- :mod:`~winnow.evaluate.metrics`: ir-measures names and computation (``parse_metrics``, ``evaluate_run``).
- :mod:`~winnow.evaluate.significance`: paired randomization test and paired t-test.
- :mod:`~winnow.evaluate.runner`: ``evaluate(dataset, "bm25,dense,hybrid>rerank", cache_dir=...)``.
- :mod:`~winnow.evaluate.report`: terminal/markdown tables, report.json, TREC runs, the plot.
- :mod:`~winnow.evaluate.cli`: the ``winnow eval`` subcommand.

Nothing is imported here, so ``winnow --help`` stays fast; import the submodules.
"""
