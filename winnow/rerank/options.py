"""The rerank stage's command-line options, one definition for ``winnow search`` and ``winnow eval``:
``--max-windows``, ``--aggregation``, ``--window-overlap``, ``--truncation`` (how long candidates are read,
:class:`~winnow.rerank.reading.Reading`), ``--budget-ms`` (:class:`~winnow.rerank.budget.Budget`) and
``--cascade`` / ``--cascade-depth`` (:func:`~winnow.rerank.cascade.with_cascade`)."""

from __future__ import annotations

import argparse

from winnow.rerank.budget import Budget
from winnow.rerank.cascade import DEFAULT_CASCADE_DEPTH
from winnow.rerank.reading import DEFAULT_OVERLAP, MAX_WINDOWS, Reading, Truncation
from winnow.rerank.windows import Aggregation


def _int_in(low: int, high: int | None, what: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f"in {low}..{high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"{what} must be {bound}, got {value}")
        return value

    return parse


def _milliseconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--budget-ms must be a number of milliseconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"--budget-ms must be a finite number >= 0, got {text!r}")
    return value


def add_rerank_options(parser) -> None:
    g = parser.add_argument_group("rerank stage: long candidates and latency")
    g.add_argument("--max-windows", type=_int_in(1, MAX_WINDOWS, "--max-windows"), default=1, metavar="N",
                   help=f"read each candidate's whole document as up to N windows of the reranker's length (1..{MAX_WINDOWS}; "
                   "1 reads the best chunk in one pass, as winnow always has)")
    g.add_argument("--aggregation", choices=[a.value for a in Aggregation], default=Aggregation.MAXP.value,
                   help="how window scores become a document's: the best (maxp), the first (firstp), or a soft maximum (softmax)")
    g.add_argument("--window-overlap", type=_int_in(0, None, "--window-overlap"), default=DEFAULT_OVERLAP, metavar="TOKENS",
                   help="tokens neighbouring windows share")
    g.add_argument("--truncation", choices=[t.value for t in Truncation], default=Truncation.RIGHT.value,
                   help="with one window: which end of a too-long passage is cut")
    g.add_argument("--budget-ms", type=_milliseconds, default=None, metavar="MS",
                   help="time the rerank stage may take per query: candidates are read in first-stage order until it is spent")
    g.add_argument("--cascade", metavar="MODEL", default=None,
                   help="a small reranker (winnow train small-reranker) reads every candidate first; the reranker "
                   "reads only the best --cascade-depth of its order")
    g.add_argument("--cascade-depth", type=_int_in(1, None, "--cascade-depth"), default=DEFAULT_CASCADE_DEPTH, metavar="N",
                   help=f"with --cascade: candidates the reranker reads (default {DEFAULT_CASCADE_DEPTH})")


def reading_from_args(args) -> Reading:
    return Reading(
        max_windows=args.max_windows, overlap=args.window_overlap,
        aggregation=Aggregation(args.aggregation), truncation=Truncation(args.truncation),
    )


def budget_from_args(args, *, k: int | None = None) -> Budget | None:
    return None if args.budget_ms is None else Budget(args.budget_ms, k=k)
