"""The tables ``specdiff report`` and ``specdiff bench`` print (rich, within 80 columns), and the
estimate set beside a sweep's measured figures. ``specdiff.cli_evals`` calls these."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def print_estimate_beside(results: Any, hardware: Any, top: int) -> None:
    """Each measured configuration (this machine) beside its predicted speed on ``hardware``."""
    from specdiff.evals.estimate import estimate_beside_measured
    from specdiff.evals.roofline import load_model_profile, memory_warning

    drafter, verifier = load_model_profile("diffusiongemma-26b-a4b"), load_model_profile("gemma-4-31b")
    table = estimate_beside_measured(results, hardware, drafter, verifier).groupby(["suite", "temperature"]).head(top)
    columns = [
        ("suite", lambda r: r.suite),
        ("T", lambda r: f"{r.temperature:g}"),
        ("block", lambda r: str(int(r.block_size))),
        ("steps", lambda r: str(int(r.denoising_steps))),
        ("acc\nlen", lambda r: _fmt(r.mean_acceptance_length)),
        ("tok/s\nhere", lambda r: _fmt(r.tokens_per_s, ".1f")),
        ("speedup\nhere", lambda r: _fmt(r.speedup, ".2f") + "x"),
        (f"tok/s\n{hardware.name}", lambda r: _fmt(r.predicted_tokens_per_s, ".0f")),
        (f"speedup\n{hardware.name}", lambda r: _fmt(r.predicted_speedup, ".2f") + "x"),
    ]
    title = (f"measured here, predicted on {hardware.name} (DiffusionGemma 26B-A4B + Gemma 4 31B, bf16, "
             "at the measured acceptance)")
    console.print(_table(title, columns, list(table.itertuples())))
    warning = memory_warning(hardware, (drafter, verifier), "bf16")
    if warning:
        console.print(f"[yellow]warning:[/] {warning} (see specdiff estimate --dtype)", highlight=False)


def _fmt(value: Any, spec: str = ".2f") -> str:
    try:
        return "—" if value != value else format(value, spec)  # NaN: not measured for this method
    except (TypeError, ValueError):
        return str(value)


def _config_label(row: Any) -> str:
    from specdiff.evals.report import config_label

    return config_label(row)


# (header, how to show a summary row); the report's and the bench's tables share these columns.
# Two-line headers keep every table within 80 columns (a pipe or a narrow terminal).
_MEASURES = [
    ("tok/s", lambda r: _fmt(r.tokens_per_s, ".1f")),
    ("speedup", lambda r: _fmt(r.speedup, ".2f") + "x"),
    ("acc\nlen", lambda r: _fmt(r.mean_acceptance_length)),
    ("acc\nrate", lambda r: _fmt(r.acceptance_rate, ".0%")),
    ("draft", lambda r: _fmt(r.draft_share, ".0%")),
    ("verify", lambda r: _fmt(r.verify_share, ".0%")),
    ("other", lambda r: _fmt(r.other_share, ".0%")),
]
_COST = ("$/1M", lambda r: _fmt(r.cost_per_million_tokens))
_TEXT_COLUMNS = ("suite", "method", "config")  # these wrap in a narrow terminal; numbers never do


def _table(title: str, columns: list[tuple[str, Any]], rows: list[Any]) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold", box=None, pad_edge=False,
                  padding=(0, 1, 0, 0))
    for i, (header, _) in enumerate(columns):
        text = header in _TEXT_COLUMNS
        table.add_column(header, justify="left" if i == 0 or text else "right", no_wrap=not text,
                         overflow="fold", min_width=max(len(line) for line in header.split("\n")))
    for row in rows:
        table.add_row(*(show(row) for _, show in columns))
    return table


def print_report(results: Any, summary: Any, top: int) -> None:
    """The report's tables: the best configuration per suite, then each suite's top configurations."""
    from specdiff.evals import report as rep

    extra = [_COST] if "cost_per_million_tokens" in summary.columns else []
    best = rep.best_configs(summary)
    columns = [
        ("suite", lambda r: r.suite),
        ("T", lambda r: f"{r.temperature:g}"),
        ("config", _config_label),
        *[m for m in _MEASURES if m[0] in ("acc\nlen", "acc\nrate", "tok/s", "speedup", "other")],
        ("loop", lambda r: _fmt(r.loop_share)),
        *extra,
    ]
    console.print(_table("best configuration per suite", columns, list(best.itertuples())))

    columns = [
        ("config", _config_label),
        *_MEASURES,
        ("setup", lambda r: _fmt(r.setup_share, ".0%")),
        *extra,
    ]
    for (suite, temperature), group in summary.groupby(["suite", "temperature"], sort=True):
        rows = list(group[group["method"] != "ar"].head(top).itertuples())
        rows += list(group[group["method"] == "ar"].itertuples())
        title = f"{suite}, temperature {temperature:g}: top {top} by tokens/s (config: proposer, block size x steps)"
        console.print()
        console.print(_table(title, columns, rows))
        winner = best[(best["suite"] == suite) & (best["temperature"] == temperature)]
        if len(winner):
            w = winner.iloc[0]
            rates = " ".join(f"{r:.2f}" for r in rep.best_position_rates(results, w))
            console.print(
                f"acceptance by draft position at {_config_label(w)} "
                f"(given the earlier positions accepted): {rates or '—'}",
                highlight=False,
            )
    for row in rep.greedy_agreement(results).itertuples():
        verdict = "[green]identical[/]" if row.identical == row.prompts else "[bold red]DIFFERENT[/]"
        console.print(
            f"greedy outputs, {row.suite}: {verdict} across all methods on {row.identical}/{row.prompts} prompts"
        )



def print_bench(result: Any) -> None:
    if "speedup_vs_hf_batched" in result.summary.columns:
        columns = [
            ("method", lambda r: r.method),
            ("B", lambda r: str(r.batch_size)),
            ("tok/s", lambda r: _fmt(r.tokens_per_s, ".1f")),
            ("per row\ntok/s", lambda r: _fmt(r.per_row_tokens_per_s, ".1f")),
            ("vs hf\nbatched", lambda r: _fmt(r.speedup_vs_hf_batched) + "x"),
            ("loop", lambda r: _fmt(r.loop_share)),
        ]
        title = "bench (greedy, interleaved per group; speedup over transformers' batched generate())"
        _print_bench_table(result, title, columns)
        return
    columns = [
        ("method", lambda r: r.method),
        ("config", lambda r: _config_label(r) if r.block_size else ""),
        *[(h, show) if h != "speedup" else (h, lambda r: _fmt(r.speedup_vs_ar) + "x") for h, show in _MEASURES],
        ("loop", lambda r: _fmt(getattr(r, "loop_share", float("nan")))),
    ]
    temperature = float(result.summary["temperature"].iloc[0]) if "temperature" in result.summary else 0.0
    mode = f"sampled at temperature {temperature:g}" if temperature > 0 else "greedy"
    title = f"bench ({mode}, interleaved per prompt; speedup over ar, the verifier alone)"
    _print_bench_table(result, title, columns)


def _print_bench_table(result: Any, title: str, columns: list[tuple[str, Any]]) -> None:
    console.print(_table(title, columns, list(result.summary.itertuples())))
    methods = ", ".join(result.summary["method"])
    prompts = result.runs["prompt_id"].nunique()
    from specdiff.evals.divergence import NEAR_TIE_SPACINGS

    widest = result.summary.get("max_divergence_spacings")
    near_ties = widest is not None and bool((widest.fillna(0).abs() <= NEAR_TIE_SPACINGS).all())
    exact_dtype = "dtype" not in result.summary or (result.summary["dtype"] == "float32").all()
    if result.identical is None:
        console.print(f"sampled outputs are draws, not compared token for token (identity columns: n/a); "
                      f"that they follow the verifier's distribution is checked statistically by the tests "
                      f"({methods} on {prompts} prompts)")
    elif result.identical:
        console.print(f"[green]greedy outputs identical[/] across {methods} on all {prompts} prompts")
    elif near_ties and not exact_dtype:
        shares = ", ".join(f"{r.method} {r.identical_share:.0%}" for r in result.summary.itertuples())
        console.print(f"[yellow]greedy outputs part from ar's at floating-point near-ties only[/] (within "
                      f"{NEAR_TIE_SPACINGS} spacings of the verifier's dtype; identical: {shares})")
    else:
        console.print(
            f"[bold red]greedy outputs DIFFER[/] on {len(result.mismatched_prompts)}/{prompts} prompts: "
            f"{', '.join(result.mismatched_prompts[:10])}"
        )
        raise typer.Exit(code=1)  # a lossless method that changes the output is a bug, not a result
