"""Regenerate the results page, ``benchmarks/results/README.md``, from the tables stored beside it.

    .venv/bin/python benchmarks/results_page.py              # rewrites the page and the sweep reports
    .venv/bin/python benchmarks/results_page.py --out DIR    # writes them into DIR instead

Every table on the page comes with the command that measures it again. Bench tables are shown as
stored (one row per method); each stored sweep gets its own report folder (``specdiff report``'s
markdown and plots, image links relative to the report). Nothing here measures: it only reads.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import pandas as pd
from specdiff.evals.plots import write_plots
from specdiff.evals.report import config_label, markdown_report, markdown_table
from specdiff.evals.sweep import read_results

RESULTS = Path(__file__).resolve().parent / "results"
BENCH = "specdiff bench --suite {suite} --max-new-tokens {tokens} --limit 8{extra} --out runs/{name}"
# (stored table, what it is, the command that measures it again)
BENCHES = [
    ("bench_code.csv", "code suite, 8 prompts x 256 new tokens", BENCH.format(suite="code", tokens=256, extra="",
                                                                               name="bench_code.csv")),
    ("bench_code_x3.csv", "code suite, 3 passes over 8 prompts x 256 new tokens",
     BENCH.format(suite="code", tokens=256, extra=" --repeats 3", name="bench_code_x3.csv")),
    ("bench_functions.csv", "functions suite, 8 prompts x 256 new tokens",
     BENCH.format(suite="functions", tokens=256, extra="", name="bench_functions.csv")),
    ("bench_prose.csv", "prose suite, 8 prompts x 256 new tokens",
     BENCH.format(suite="prose", tokens=256, extra="", name="bench_prose.csv")),
    ("bench_packages_128.csv", "packages suite (held-out installed packages), 8 prompts x 128 new tokens",
     BENCH.format(suite="packages", tokens=128, extra="", name="bench_packages_128.csv")),
    ("bench_packages_256.csv", "packages suite, 8 prompts x 256 new tokens",
     BENCH.format(suite="packages", tokens=256, extra="", name="bench_packages_256.csv")),
    ("bench_code_t07.csv", "code suite sampled at temperature 0.7, 30 prompts x 128 new tokens",
     "specdiff bench --suite code --temperature 0.7 --max-new-tokens 128 --out runs/bench_code_t07.csv"),
]
SWEEPS = [
    ("code_sweep_default.parquet", "code suite, the diffusion drafter at blocks 4-64 x steps 1-8, 48 new tokens",
     "specdiff sweep --suite code --proposers diffusion --out runs/code.parquet"),
]
# Other stored results, each written by its own script.
OTHERS = [
    ("controller_replay.txt", "controllers replayed on recorded traces, with the hindsight bound",
     ".venv/bin/python benchmarks/controller_replay.py --suite code"),
    ("round_costs.txt", "what a round costs by block size", ".venv/bin/python benchmarks/round_costs.py"),
    ("draft_options.txt", "the drafter's options (encoder first token, context seed, proposal modes)",
     ".venv/bin/python benchmarks/draft_options.py"),
    ("pocket_card.md", "the pocket pair's measured tables (also in the model card)",
     ".venv/bin/python benchmarks/pocket_card.py"),
    ("smol_baselines.md", "the smol verifier's free baselines", ".venv/bin/python benchmarks/smol_baselines.py"),
    ("smol_t07.md", "the bench on the smol pair sampled at temperature 0.7 (chat, code)",
     "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/smol_bench.py chat code --temperature 0.7"),
    ("smol_drafter_next_token_card.md", "the model card of the smol drafter's next-token-canvas run (not shipped; "
     "its accuracy tables in smol_drafter_next_token/, its bench in bench_smol_*_128_nt.csv)",
     "OMP_NUM_THREADS=2 .venv/bin/specdiff drafter train --pair smol --out .drafter_run/smol2 --budget-minutes 55 "
     "--threads 2"),
    ("smol_drafter_run3_card.md", "the model card of the third smol drafter run (float32 distillation, 114k "
     "tokens; not shipped; its accuracy tables in smol_drafter_run3/, its bench as adaptive_candidate in "
     "bench_smol_*_128_run3.csv)",
     "OMP_NUM_THREADS=1 .venv/bin/specdiff drafter train --pair smol --out .drafter_run/smol3 --budget-minutes 100"),
    ("drafter_positions.md", "the smol drafter's accuracy by cut into the answer, offline beside the live rounds",
     "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/drafter_positions.py"),
    ("estimate_check.md", "the GPU cost model against published figures",
     ".venv/bin/python benchmarks/estimate_check.py"),
    ("estimate_cpu_check.md", "the cost model on this CPU, held-out configurations",
     ".venv/bin/python benchmarks/estimate_cpu_check.py"),
]
BENCH_VIEW = {"tokens_per_s": "tok/s", "speedup_vs_ar": "speedup vs ar", "mean_acceptance_length": "acc len",
              "acceptance_rate": "acc rate", "draft_share": "draft", "verify_share": "verify",
              "other_share": "other"}


def bench_section(path: Path, what: str, command: str) -> list[str]:
    frame = pd.read_csv(path)
    if "proposer" not in frame.columns:  # tables from before proposers were peers: 0 steps was the lookup
        frame["proposer"] = ["ngram" if s == 0 else "diffusion" for s in frame["denoising_steps"]]
    frame["proposer"] = frame["proposer"].fillna("")
    configs = [config_label(r) if r.method == "fixed_best" and r.block_size else "" for r in frame.itertuples()]
    view = pd.DataFrame({"method": frame["method"], "config": configs})
    for column, header in BENCH_VIEW.items():
        view[header] = frame[column]
    temperature = float(frame["temperature"].iloc[0]) if "temperature" in frame else 0.0
    identical = bool(frame["greedy_identical"].all()) if "greedy_identical" in frame and not temperature else None
    verdict = {True: "every method's greedy output identical to `ar`'s", False: "outputs DIFFER", None: ""}[identical]
    if temperature:
        verdict = f"sampled at temperature {temperature:g}: outputs are draws, not compared"
    return [f"### {path.name}: {what}", "", f"`{command}` ({verdict})", "", markdown_table(view), ""]


def sweep_section(path: Path, what: str, command: str, out_dir: Path) -> list[str]:
    folder = out_dir / path.stem
    if folder.exists():
        shutil.rmtree(folder)
    results = read_results(path)
    plots = write_plots(results, folder / "plots")
    (folder / "report.md").write_text(markdown_report(results, plots=plots, top=8, folder=folder))
    link = Path(os.path.relpath(folder / "report.md", out_dir)).as_posix()
    return [f"### {path.name}: {what}", "", f"`{command}`, then `specdiff report runs/code.parquet --plots "
            f"runs/plots --markdown runs/report.md`: [report with plots]({link})", ""]


def page(out_dir: Path) -> str:
    parts = [
        "# Measured results",
        "",
        "Regenerated by `.venv/bin/python benchmarks/results_page.py` from the tables in this folder; each",
        "table names the command that measures it again (on the pocket pair, one torch thread, a 2-core CPU;",
        "timings on a shared CPU vary by up to 20-30% between runs, so compare methods within one table).",
        "How to read the columns: the README's \"Reading the numbers\". The pocket verifier loops, so these",
        "speedups are far above what a verifier that writes real code would see (the model card,",
        "`specdiff/pocket_models/README.md`, has the fairer non-looping table).",
        "",
        "## Benchmarks (`specdiff bench`)",
        "",
    ]
    for name, what, command in BENCHES:
        parts += bench_section(RESULTS / name, what, command)
    parts += ["## Sweeps (`specdiff sweep`, `specdiff report`)", ""]
    for name, what, command in SWEEPS:
        parts += sweep_section(RESULTS / name, what, command, out_dir)
    parts += ["## Other measurements", "", "| file | what | command |", "|---|---|---|"]
    parts += [f"| [{name}]({Path(os.path.relpath(RESULTS / name, out_dir)).as_posix()}) | {what} | `{command}` |"
              for name, what, command in OTHERS]
    return "\n".join(parts) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write README.md and the reports")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "README.md").write_text(page(args.out))
    print(f"wrote {args.out / 'README.md'}")


if __name__ == "__main__":
    main()
