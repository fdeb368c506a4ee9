"""What every benchmark shares: interleaved rounds, medians with min-max, result records.

A case is a callable returning ``{metric: value}`` for one round.  Rounds run
A B C A B C ... so machine drift hits every case alike; each figure is the
median over the rounds with its min and max.

Like for like: a row whose name contains "batch" takes many pieces per await on
its batching side; every other row makes one call per piece.  ``add_ratios``
refuses to set a batching row beside a per-piece peer (limit rows excepted).
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

# The relay tables' two kinds of aring rows.
ARING_ENGINES_NOTE = (
    "aring-LOOP: the relay's default thread engine (one native epoll thread moves the bytes; "
    "LOOP only accepts and connects); aring-loop-LOOP: --engine loop, the bytes moved in that "
    "loop's readiness callbacks (asyncio, uvloop) or tasks (trio)"
)

Case = Callable[[], dict[str, float]]


@dataclass
class Row:
    name: str
    kind: str  # "aring", "peer" or "limit"
    median: dict[str, float]
    low: dict[str, float]
    high: dict[str, float]
    ratios: dict[str, float] = field(default_factory=dict)  # "<metric> vs <peer>" -> x


@dataclass
class Scenario:
    key: str
    title: str
    metrics: dict[str, str]  # metric -> label with unit ("GB/s", "CPU s/GB"...)
    higher_is_better: dict[str, bool]
    rows: list[Row]
    notes: list[str] = field(default_factory=list)
    pending: str = ""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def cpu_seconds(children: bool = False) -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(
    work: Callable[[], int | tuple[int, float]], children: bool = False
) -> dict[str, float]:
    """Run ``work``: GB/s and CPU s/GB.

    ``work`` returns the bytes moved, or (bytes, seconds) when it times the
    transfer itself (leaving out event-loop start-up, which would otherwise
    dominate short rounds).  The CPU is this process's; with ``children`` it
    also counts every child ``work`` started and reaped (waitpid/join) before
    returning (RUSAGE_CHILDREN only counts reaped children).
    """

    def cpu() -> float:
        return cpu_seconds() + (cpu_seconds(children=True) if children else 0.0)

    cpu0, start = cpu(), time.perf_counter()
    result = work()
    elapsed, used = time.perf_counter() - start, cpu() - cpu0
    moved, elapsed = result if isinstance(result, tuple) else (result, elapsed)
    return {"GB/s": moved / elapsed / 1e9, "CPU s/GB": used / (moved / 1e9)}


def interleave(
    cases: dict[str, tuple[str, Case]], rounds: int, progress: Callable[[str], None] | None = None
) -> list[Row]:
    """Run every case ``rounds`` times, interleaved; one Row per case."""
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in cases}
    for round_no in range(rounds):
        for name, (_, case) in cases.items():
            if progress:
                progress(f"round {round_no + 1}/{rounds}: {name}")
            samples[name].append(case())
    rows = []
    for name, (kind, _) in cases.items():
        metrics = samples[name][0].keys()
        rows.append(
            Row(
                name=name,
                kind=kind,
                median={m: statistics.median(s[m] for s in samples[name]) for m in metrics},
                low={m: min(s[m] for s in samples[name]) for m in metrics},
                high={m: max(s[m] for s in samples[name]) for m in metrics},
            )
        )
    return rows


def batches(name: str) -> bool:
    """Whether a row takes many pieces per await (its name says "batch")."""
    return "batch" in name


def add_ratios(rows: list[Row], pairs: dict[str, str], metrics: list[str]) -> None:
    """rows[name].ratios["<metric> vs <peer>"] = median(name) / median(peer).

    A peer row (kind "peer") must batch exactly when ``name`` does: a batched
    row beside a per-piece peer is not a like-for-like ratio.
    """
    by_name = {row.name: row for row in rows}
    for name, peer in pairs.items():
        if name in by_name and peer in by_name:
            if by_name[peer].kind == "peer" and batches(name) != batches(peer):
                raise ValueError(f"not like for like: {name!r} vs {peer!r}")
            for metric in metrics:
                base = by_name[peer].median.get(metric)
                if base:
                    by_name[name].ratios[f"{metric} vs {peer}"] = (
                        by_name[name].median[metric] / base
                    )


def print_scenario(scenario: Scenario, out: Any = sys.stdout) -> None:
    out.write(f"\n== {scenario.title}\n")
    if scenario.pending:
        out.write(f"   pending: {scenario.pending}\n")
        return
    header = "".join(f"{label:>24}" for label in scenario.metrics.values())
    out.write(f"{'case':<34}{header}  ratios\n")
    for row in scenario.rows:
        cells = "".join(
            f"{row.median[m]:>10.3f} ({row.low[m]:.2f}-{row.high[m]:.2f})".rjust(24)
            for m in scenario.metrics
        )
        ratios = ", ".join(f"{v:.2f}x {k}" for k, v in row.ratios.items())
        out.write(f"{row.name:<34}{cells}  {ratios}\n")
    for note in scenario.notes:
        out.write(f"   note: {note}\n")
    out.flush()
