"""Draw the bench chart from a result JSON: ``python plot.py result.json out.png`` (needs matplotlib)."""

# mypy: disable-error-code="import-not-found"
# (matplotlib lives in whichever venv draws the chart, see report.plot)
from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main(src: str, out: str) -> None:
    result = json.loads(open(src).read())  # noqa: SIM115
    media = result.get("media", {})
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for kind, levels in media.items():
        if not isinstance(levels, list) or not levels:
            continue
        n = [r["streams"] for r in levels]
        axes[0].plot(n, [r["cpu_pct_per_stream"] for r in levels], marker="o", label=kind)
        axes[1].plot(n, [r["interval_ms"]["p99"] for r in levels], marker="o", label=kind)
        axes[2].plot(n, [r["kb_per_stream"] for r in levels], marker="o", label=kind)
    axes[0].set_title("CPU per stream (% of one core)")
    axes[1].set_title("outbound frame interval p99 (ms)")
    axes[1].axhline(30, color="grey", linestyle="--", linewidth=1)
    axes[2].set_title("memory per stream (KB)")
    for ax in axes:
        ax.set_xlabel("concurrent streams")
        ax.set_xscale("log")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(f"voicecall media plane vs peers ({result.get('time', '')})")
    fig.tight_layout()
    fig.savefig(out, dpi=90)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
