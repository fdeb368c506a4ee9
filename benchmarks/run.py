"""Every benchmark against its peers in one run: results JSON, PNG plots, docs/performance.md.

Run: python benchmarks/run.py [--quick] [--only SCENARIO ...]
(``make bench`` or ``make bench-quick``)

--quick finishes in under two minutes with smaller volumes and fewer rounds;
its figures are noisier and are not written to docs/performance.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import create_close  # noqa: E402
import file_sink  # noqa: E402
import http_server  # noqa: E402
import inproc  # noqa: E402
import latency  # noqa: E402
import persistent  # noqa: E402
import process_to_process  # noqa: E402
import records  # noqa: E402
import relay  # noqa: E402
import thread_to_task  # noqa: E402
import wake  # noqa: E402
from _common import Row, Scenario, print_scenario  # noqa: E402

RESULTS = HERE / "results"
DOCS = HERE.parent / "docs" / "performance.md"


def plans(quick: bool) -> dict[str, Callable[[Callable[[str], None]], Scenario]]:
    r = 2 if quick else 5
    return {
        "relay-256kib": lambda p: relay.scenario(
            2 if quick else 4, 1 if quick else 3, p, 256 << 10
        ),
        "relay-1mib": lambda p: relay.scenario(
            2 if quick else 4, 1 if quick else 3, p, 1 << 20, relay.RELAYS_1MIB
        ),
        "relay-latency": lambda p: latency.scenario(2000 if quick else 20000, 1 if quick else 3, p),
        "http-server": lambda p: http_server.scenario(2 if quick else 3, 1 if quick else 3, p),
        "task-to-task-65536": lambda p: inproc.scenario(65536, 128 if quick else 1024, r, p),
        "task-to-task-256": lambda p: inproc.scenario(256, 4 if quick else 32, r, p),
        "thread-to-task-65536": lambda p: thread_to_task.scenario(
            65536, 128 if quick else 1024, r, p
        ),
        "thread-to-task-256": lambda p: thread_to_task.scenario(256, 4 if quick else 32, r, p),
        "file-sink": lambda p: file_sink.scenario(128 if quick else 1024, r, p),
        "file-sink-wraps": lambda p: file_sink.wraps_scenario(64 if quick else 256, r, p),
        "file-sink-durable": lambda p: file_sink.durable_scenario(128 if quick else 1024, r, p),
        "create-close": lambda p: create_close.scenario(3 if quick else 7, 50 if quick else 200, p),
        "first-pass": lambda p: create_close.first_pass_scenario(3 if quick else 7, progress=p),
        "process-to-process": lambda p: process_to_process.scenario(
            65536, 128 if quick else 1024, 1 if quick else 3, p
        ),
        "wake-latency": lambda p: wake.scenario(200 if quick else 2000, 1 if quick else 3, p),
        "ring-file-attach": lambda p: persistent.attach_scenario(r, 50 if quick else 200, p),
        "records-1024-durable": lambda p: persistent.records_scenario(
            True, 300 if quick else 2000, 1 if quick else 3, p
        ),
        "records-1024-page-cache": lambda p: persistent.records_scenario(
            False, 5000 if quick else 40_000, r, p
        ),
        "records-64": lambda p: records.scenario(64, 20_000 if quick else 500_000, r, p),
        "records-1024": lambda p: records.scenario(1024, 20_000 if quick else 200_000, r, p),
        "records-4-producers-64": lambda p: records.producers_scenario(
            64, 20_000 if quick else 200_000, r, p
        ),
    }


def load(path: Path) -> Scenario | None:
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    data["rows"] = [Row(**row) for row in data["rows"]]
    return Scenario(**data)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def plot(scenario: Scenario, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    metrics = list(scenario.metrics)
    size = (6 * len(metrics), 0.35 * len(scenario.rows) + 1.5)
    fig, axes = plt.subplots(1, len(metrics), figsize=size)
    if len(metrics) == 1:
        axes = [axes]
    colors = {"aring": "#1f77b4", "peer": "#999999", "limit": "#2ca02c"}
    names = [row.name for row in scenario.rows][::-1]
    for ax, metric in zip(axes, metrics, strict=True):
        rows = scenario.rows[::-1]
        values = [row.median[metric] for row in rows]
        errors = [
            [row.median[metric] - row.low[metric] for row in rows],
            [row.high[metric] - row.median[metric] for row in rows],
        ]
        ax.barh(names, values, xerr=errors, color=[colors[row.kind] for row in rows])
        better = "higher" if scenario.higher_is_better.get(metric, True) else "lower"
        ax.set_xlabel(f"{scenario.metrics[metric]} ({better} is better)")
        if metric == "us" and max(values) / max(min(values), 1e-9) > 100:
            ax.set_xscale("log")
    fig.suptitle(scenario.title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def markdown(scenarios: list[Scenario], when: str, seconds: float) -> str:
    lines = [
        "# Performance",
        "",
        f"The latest full run of each scenario (`make bench`), {when}.",
        "",
        f"Machine: {machine()}; a shared VM, so figures drift from run to run: every figure is "
        "the median of the rounds (min-max beside it), rounds interleave the cases, and the "
        "ratios compare cases measured in the same run.",
        "",
        "Blue bars are aring, grey its peers, green the limit (no hand-over).",
        "",
    ]
    for scenario in scenarios:
        lines += [f"## {scenario.title}", ""]
        if scenario.pending:
            lines += [f"Pending: {scenario.pending}.", ""]
            continue
        labels = list(scenario.metrics.values())
        lines.append("| case | " + " | ".join(labels) + " | ratios |")
        lines.append("|---|" + "---|" * len(labels) + "---|")
        for row in scenario.rows:
            cells = [
                f"{row.median[m]:.3g} ({row.low[m]:.3g}-{row.high[m]:.3g})"
                for m in scenario.metrics
            ]
            ratios = "; ".join(f"{v:.2f}x {k}" for k, v in row.ratios.items())
            name = f"**{row.name}**" if row.kind == "aring" else row.name
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {ratios} |")
        lines.append("")
        png = RESULTS / f"{scenario.key}.png"
        if png.exists():
            lines += [f"![{scenario.title}](../benchmarks/results/{png.name})", ""]
        lines += [f"- {note}" for note in scenario.notes]
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="under two minutes, noisier")
    parser.add_argument("--only", nargs="*", help="scenario keys (default: all)")
    args = parser.parse_args()
    todo = plans(args.quick)
    keys = args.only or list(todo)
    unknown = set(keys) - set(todo)
    if unknown:
        parser.error(f"unknown scenario(s) {sorted(unknown)}; choose from {sorted(todo)}")
    missing = relay.missing_tools() + http_server.missing_tools()
    if missing and any(key.startswith(("relay", "http")) for key in keys):
        print(
            f"note: {', '.join(missing)} missing: those rows stay pending "
            f"(apt-get install -y {' '.join(missing)})",
            file=sys.stderr,
        )
    RESULTS.mkdir(exist_ok=True)
    started = time.monotonic()
    done: list[Scenario] = []
    for key in keys:
        print(f"[{time.monotonic() - started:6.1f}s] {key} ...", file=sys.stderr, flush=True)
        try:
            scenario = todo[key](lambda msg: print(f"    {msg}", file=sys.stderr, flush=True))
        except Exception as exc:  # one broken peer must not lose the other rows
            scenario = Scenario(key, key, {}, {}, [], pending=f"failed: {exc!r}")
        print_scenario(scenario)
        suffix = "-quick" if args.quick else ""
        (RESULTS / f"{scenario.key}{suffix}.json").write_text(
            json.dumps(scenario.as_json(), indent=1) + "\n"
        )
        if not scenario.pending and not args.quick:
            plot(scenario, RESULTS / f"{scenario.key}.png")
        done.append(scenario)
    elapsed = time.monotonic() - started
    if not args.quick:
        # The page shows every scenario's latest full run (a partial rerun updates its rows).
        when = datetime.date.today().isoformat()
        every = [load(RESULTS / f"{key}.json") for key in plans(False)]
        DOCS.write_text(markdown([s for s in every if s is not None], when, elapsed))
        print(f"wrote {DOCS} and plots in {RESULTS}", file=sys.stderr)
    print(f"done in {elapsed:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
