"""The Markdown table and the PNG plots of a benchmark run, from its records and speed rows;
`python -m benchmarks.report --readme` copies the run's tables into the project README."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RATING_COLUMNS = [("rmse", "RMSE"), ("mae", "MAE")]
TOPN_COLUMNS = [("precision@10", "P@10"), ("recall@10", "R@10"), ("ndcg@10", "NDCG@10"), ("map", "MAP"),
                ("hr@10", "HR@10"), ("mrr@10", "MRR@10"), ("coverage", "coverage"), ("novelty", "novelty"),
                ("diversity", "diversity")]


def _fmt(value: Any, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _section(protocol: str, records: list[dict[str, Any]], notes: list[dict[str, Any]]) -> list[str]:
    rating = protocol in ("ml100k-folds", "random-80-20")
    columns = RATING_COLUMNS if rating else TOPN_COLUMNS
    present = [(key, label) for key, label in columns if any(key in r["metrics"] for r in records)]
    head = ["model", "side"] + [label for _, label in present]
    if protocol == "ml100k-folds":
        head.append("u1 RMSE")
    head += ["folds", "fit s / fold", "predict s / fold", "config"]
    lines = [f"### {protocol}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(records, key=lambda r: (r.get("side") != "recstack", r["model"])):
        n = len(r["folds"])
        cells = [f"`{r['model']}`", r.get("library", r.get("side", ""))]
        for key, _ in present:
            value = r["metrics"].get(key)
            sd = r.get("metrics_sd", {}).get(key)
            cells.append(_fmt(value) + (f" ± {sd:.4f}" if sd is not None and value is not None else ""))
        if protocol == "ml100k-folds":
            cells.append(_fmt(r["folds"][0]["metrics"].get("rmse")))
        cells += [str(n), f"{r['fit_seconds'] / n:.2f}", f"{r['predict_seconds'] / n:.2f}",
                  r.get("config_source", "defaults")]
        lines.append("| " + " | ".join(cells) + " |")
    for note in notes:
        filler = [""] * (len(head) - 3)
        lines.append("| " + " | ".join([f"`{note['model']}`", note.get("side", ""), *filler,
                                        f"*{note['note']}*"]) + " |")
    return lines + [""]


def _speed_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["### speed (recstack time ÷ reference time; below 1 means recstack is faster)", "",
             "Fit seconds are steady state (fastest of the repeats, kernels warm); *first fit* is the "
             "first fit in a new process with the kernels cached (numba start-up and kernel loading "
             "included), then that process's second fit.", "",
             "| pair | fold | recstack fit s | reference fit s | first fit s, new process: recstack (2nd) / "
             "reference (2nd) | fit ratio | fit+predict ratio | "
             "fit CPU-time ratio | metric, mean over seeds (recstack / reference) | target | met |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['name']} | | | | | | | | | {row.get('target_text', '')} | "
                         f"*not run: {row['error']}* |")
            continue
        ours, ref = row["recstack"], row["reference_side"]
        metric = f"{row['metric']} {ours['metric']:.4f} / {ref['metric']:.4f}"
        if ours.get("repeats", 1) > 1:
            metric += f" ({ours['repeats']} seeds)"
        lines.append(
            f"| {row['name']} | {row['fold']} | {ours['fit_seconds']:.3f} | {ref['fit_seconds']:.3f} | "
            f"{_first_fit(ours)} / {_first_fit(ref)} | "
            f"{row['fit_ratio']:.3f} ({1 / row['fit_ratio']:.1f}× faster) | "
            f"{row['fit_predict_ratio']:.3f} ({1 / row['fit_predict_ratio']:.1f}× faster) | "
            f"{row['fit_cpu_ratio']:.3f} | {metric} | "
            f"{row['target_text']} | {'**met**' if row['met'] else '**not met**'} |")
    return lines + [""]


def _first_fit(side: dict[str, Any]) -> str:
    """"1.234 (0.456)": a new process's first fit and its second, in seconds."""
    first = side.get("first_fit")
    if not first:
        return "–"
    if "error" in first:
        return f"*{first['error']}*"
    later = first.get("later_fit_seconds") or []
    return f"{first['first_fit_seconds']:.3f}" + (f" ({later[0]:.3f})" if later else "")


def write_markdown(path: Path, records: list[dict[str, Any]], notes: list[dict[str, Any]],
                   speed: list[dict[str, Any]], header: list[str]) -> None:
    """Write the results table: one section per protocol, then the speed rows."""
    lines = ["# recstack benchmarks", "", *header, ""]
    protocols = list(dict.fromkeys([r["protocol"] for r in records] + [n["protocol"] for n in notes]))
    for protocol in protocols:
        lines += _section(protocol, [r for r in records if r["protocol"] == protocol],
                          [n for n in notes if n["protocol"] == protocol])
    if speed:
        lines += _speed_table(speed)
    path.write_text("\n".join(lines))


def write_plots(folder: Path, records: list[dict[str, Any]]) -> list[Path]:
    """RMSE against fit time (ml100k-folds) and NDCG@10 per model (msr-75), as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    rating = [r for r in records if r["protocol"] == "ml100k-folds" and "rmse" in r["metrics"]]
    if rating:
        fig, ax = plt.subplots(figsize=(8, 5))
        for side, marker, color in (("recstack", "o", "tab:blue"), ("reference", "x", "tab:orange")):
            pts = [r for r in rating if (r.get("side") == "recstack") == (side == "recstack")]
            if not pts:
                continue
            xs = [r["fit_seconds"] / len(r["folds"]) for r in pts]
            ys = [r["metrics"]["rmse"] for r in pts]
            ax.scatter(xs, ys, marker=marker, color=color, s=60,
                       label="recstack" if side == "recstack" else "Surprise")
            for x, y, r in zip(xs, ys, pts):
                ax.annotate(r["model"], (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("fit seconds per fold (log scale)")
        ax.set_ylabel("RMSE, mean over folds (lower is better)")
        ax.set_title("ML-100K u1..u5: accuracy against fit time")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        written.append(folder / "rmse_vs_fit_time.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)
    topn = [r for r in records if r["protocol"] == "msr-75" and "ndcg@10" in r["metrics"]]
    if topn:
        topn = sorted(topn, key=lambda r: r["metrics"]["ndcg@10"])
        fig, ax = plt.subplots(figsize=(8, 0.4 * len(topn) + 1.5))
        colors = ["tab:blue" if r.get("side") == "recstack" else "tab:orange" for r in topn]
        ax.barh([r["model"] for r in topn], [r["metrics"]["ndcg@10"] for r in topn], color=colors)
        ax.set_xlabel("NDCG@10 on msr-75 (blue: recstack, orange: implicit / cornac)")
        ax.set_title("ML-100K, Microsoft Recommenders' 75/25 split: ranking quality")
        ax.grid(axis="x", alpha=0.3)
        fig.tight_layout()
        written.append(folder / "ndcg_msr75.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)
    return written


# ---- the project README's copies of the tables -----------------------------------------------
# The README holds each table between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`, NAME a
# section of the results README (`### NAME …`: a protocol, or `speed`). `sync_readme` replaces
# those blocks with the sections' current tables, so the README never mixes two runs by hand.
_BLOCK = re.compile(r"(<!-- bench:(?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- /bench:(?P=name) -->)", re.S)


def result_tables(results_md: str) -> dict[str, str]:
    """{section name: its table's lines} of a results README (`### name …` headings)."""
    tables: dict[str, str] = {}
    name = None
    for line in results_md.splitlines():
        if line.startswith("### "):
            words = line[4:].split()
            name = words[0] if words else None
            continue
        if name and line.startswith("|"):
            tables[name] = tables.get(name, "") + line + "\n"
    return tables


def sync_readme(readme: Path, results: Path) -> list[str]:
    """Replace every `bench:NAME` block of `readme` with table NAME of `results`; returns the
    names replaced. A block whose table the results lack is an error naming both files."""
    text = readme.read_text()
    tables = result_tables(results.read_text())
    missing = [m["name"] for m in _BLOCK.finditer(text) if m["name"] not in tables]
    if missing:
        raise SystemExit(f"{readme}: block(s) {', '.join(missing)} have no table in {results} "
                         f"(its sections: {', '.join(tables) or 'none'})")
    done: list[str] = []

    def swap(m: re.Match[str]) -> str:
        done.append(m["name"])
        return m.group(1) + tables[m["name"]] + m.group(4)

    readme.write_text(_BLOCK.sub(swap, text))
    return done


def main(argv: Sequence[str] | None = None) -> int:
    root = Path(__file__).resolve().parent.parent
    p = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__)
    p.add_argument("--readme", action="store_true", help="copy the results tables into the README's bench blocks")
    p.add_argument("--results", type=Path, default=root / "benchmarks" / "results" / "README.md")
    p.add_argument("--target", type=Path, default=root / "README.md")
    args = p.parse_args(argv)
    if not args.readme:
        p.print_help()
        return 2
    names = sync_readme(args.target, args.results)
    print(f"{args.target}: replaced {len(names)} table(s): {', '.join(names) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
