"""The side-by-side benchmark: specdiff against what a user would run instead, in one run.

Methods run interleaved per prompt (each prompt runs every method before the next prompt starts, in
an order rotated per prompt) so that machine noise hits all alike; ``repeats`` passes over the
prompts, each in other slots, sum every method's seconds over all of them. A method is a name in
``BENCH_METHODS`` bound to a runner ``(context, prompt_ids) -> MethodRun``:

``ar``
    The verifier's own ``generate()`` (``do_sample=False``, or sampled): the baseline of every speedup.
``assisted_ar_drafter``
    transformers' assisted generation with the pocket AR drafter as ``assistant_model``.
``hf_prompt_lookup``
    transformers' prompt lookup decoding (``prompt_lookup_num_tokens=10``): the free baseline.
``fixed_best``
    specdiff with the proposer, block size and denoising steps that were fastest in a quick grid
    over the first ``grid_prompts`` prompts of the same suite; the grid tries every proposer the
    decoder has (the n-gram lookup and the diffusion drafter), so a fixed policy gets every
    setting the adaptive one may pick.
``heuristic``, ``adaptive``
    specdiff under the ``Heuristic`` and ``Adaptive`` controllers (one ``Adaptive`` for the whole
    run, as a decoder keeps its own).

A new speculative policy is one line: ``BENCH_METHODS["mine"] = BenchMethod(speculative(lambda
ctx: MyController()))``. Round time splits into drafting, verifying and everything else: from
the ``RoundStats`` for speculative methods, and from timing the models' forward calls inside
``generate()`` for the others (a call of the verifier counts as a round).

Greedy (``temperature=0``, the default), every method's output is compared with ``ar``'s token for
token. At ``temperature > 0`` every method samples at that temperature (and ``top_k``/``top_p``):
``ar`` and transformers' methods through ``generate(do_sample=True)``, specdiff's through
``generate(temperature=..., seed=...)``, and ``fixed_best``'s grid too. Each method's run of prompt
``i`` is seeded with ``seed + i``, so a rerun repeats its tokens; a seeded specdiff run starts from a
fresh copy of its controller and learns on the nominal clock (``SpeculativeDecoder.controller_for``),
so there ``adaptive`` carries nothing over from one prompt to the next. Sampled outputs are draws, not
one answer: the identity columns say ``n/a (sampled)`` / NaN and nothing fails on them; that sampled
output follows the verifier's distribution is checked statistically by the tests
(``tests/verifiers/test_smol_sampling.py``, ``tests/test_sampling.py``, ``tests/test_acceptance.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specdiff.evals.bench_summary import summarize_bench
from specdiff.evals.methods import (
    BenchContext,
    BenchMethod,
    MethodRun,
    Runner,
    load_ar_drafter,
    run_ar,
    run_assisted_ar_drafter,
    run_hf_prompt_lookup,
)
from specdiff.evals.running import check_models_and_out, check_run_limits, progress_bar, suite_to_run
from specdiff.evals.suites import Suite
from specdiff.evals.table import output_hash

from specdiff.errors import SpecdiffError
from specdiff.metrics import loop_share
from specdiff.pairs import Models, pair_ar_drafter_folder
from specdiff.threads import use_threads

if TYPE_CHECKING:
    import pandas as pd  # imported where used: `specdiff --help` stays fast


@dataclass(frozen=True)
class BenchConfig:
    """What ``specdiff bench`` runs; the CLI's defaults come from here."""

    out: Path
    suite: str = "code"
    max_new_tokens: int = 64
    methods: tuple[str, ...] = ("ar", "assisted_ar_drafter", "hf_prompt_lookup", "fixed_best", "heuristic", "adaptive")
    limit: int | None = None
    threads: int | None = None
    grid_block_sizes: tuple[int, ...] = (4, 8, 16, 32)
    # Who drafts in the grid: the n-gram lookup (blocks only) and the diffusion drafter (x steps);
    # a proposer the decoder lacks is skipped.
    grid_proposers: tuple[str, ...] = ("ngram", "diffusion")
    grid_steps: tuple[int, ...] = (1, 2)
    grid_prompts: int = 6
    drafter: str | None = None
    verifier: str | None = None
    # A named pair (specdiff.pairs.PAIRS) instead of drafter/verifier; neither: the default pair.
    pair: str | None = None
    # The models' dtype (None: the pair's or checkpoint's own); every method runs in it.
    dtype: str | None = None
    ar_drafter: str | None = None
    # Passes over the prompts, each method's seconds summed over all: single runs of the same work
    # differ by up to 20% on a busy CPU, which is as large as the gaps between the policies.
    repeats: int = 1
    overwrite: bool = False
    # Above 1: groups of this many prompts, generate_batch against transformers' batched generate()
    # and one by one (``specdiff.evals.batch_bench``).
    batch_size: int = 1
    # Sampling: 0 is greedy (outputs compared with ar's); above 0 every method samples, prompt i
    # seeded with seed + i. top_k 0 and top_p 1 mean no truncation, as in the sweep.
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0

    @property
    def sampled(self) -> bool:
        return self.temperature > 0

    @property
    def models(self) -> Models:
        return Models(self.pair, self.drafter, self.verifier)


def speculative(make_controller: Callable[[BenchContext], Any]) -> Runner:
    """A runner for specdiff under the controller ``make_controller(context)`` returns."""

    def run(ctx: BenchContext, prompt_ids: Any) -> MethodRun:
        from specdiff.decoding import SpeculativeDecoder

        base = ctx.decoder
        decoder = SpeculativeDecoder(
            list(base.proposers.values()), base.verifier, controller=make_controller(ctx), tokenizer=base.tokenizer,
            nominal_clock=base.nominal_clock,
        )
        result = decoder.generate(prompt_ids, max_new_tokens=ctx.max_new_tokens, **ctx.sampling())
        split = result.time_split()
        return MethodRun(
            result.token_ids,
            result.elapsed_s,
            result.num_rounds,
            result.proposed,
            result.accepted,
            **split,
        )

    return run


def _fixed_best(ctx: BenchContext) -> Any:
    from specdiff.controllers import Fixed

    best = ctx.best
    return Fixed(best.block_size, max(best.denoising_steps, 1), best.recycle_canvas, best.proposer)


def _heuristic(ctx: BenchContext) -> Any:
    from specdiff.controllers import Heuristic
    from specdiff.protocols import Proposer

    # transformers' schedule on the decoder's model drafter, else on what it has (the n-gram lookup).
    proposers = ctx.decoder.proposers
    return Heuristic(proposer=Proposer.DIFFUSION if Proposer.DIFFUSION in proposers else next(iter(proposers)))


def _adaptive(ctx: BenchContext) -> Any:
    from specdiff.controllers import Adaptive

    # One policy for the whole run, as a decoder keeps its own: measured costs carry over prompts
    # (greedy; a seeded, sampled run starts from a fresh copy, see the module docstring).
    return ctx.extra.setdefault("adaptive", Adaptive())


BENCH_METHODS: dict[str, BenchMethod] = {
    "ar": BenchMethod(run_ar),
    "assisted_ar_drafter": BenchMethod(run_assisted_ar_drafter, needs_ar_drafter=True),
    "hf_prompt_lookup": BenchMethod(run_hf_prompt_lookup),
    "fixed_best": BenchMethod(speculative(_fixed_best), needs_grid=True),
    "heuristic": BenchMethod(speculative(_heuristic)),
    "adaptive": BenchMethod(speculative(_adaptive)),
}


@dataclass(frozen=True)
class BenchResult:
    """The bench's tables: ``summary`` one row per method, ``runs`` one per method and prompt,
    ``grid`` the quick grid behind ``fixed_best`` (empty when it did not run). ``identical``: every
    method's greedy output equals ``ar``'s; None when sampled (outputs are draws, not compared)."""

    summary: pd.DataFrame
    runs: pd.DataFrame
    grid: pd.DataFrame
    identical: bool | None
    mismatched_prompts: tuple[str, ...]


def check_bench(config: BenchConfig, canvas_length: int | None = None) -> Suite:
    """Refuse bad arguments before any model loads; returns the prompts to run."""
    unknown = [m for m in config.methods if m not in BENCH_METHODS]
    if config.batch_size == 1 and (unknown or not config.methods):
        raise SpecdiffError(
            f"unknown method {', '.join(unknown) or '(none given)'}; pick from {', '.join(BENCH_METHODS)}"
        )
    check_run_limits(config.max_new_tokens, config.limit, config.threads)
    if config.repeats < 1:
        raise SpecdiffError(f"--repeats must be >= 1 (got {config.repeats})")
    if config.batch_size < 1:
        raise SpecdiffError(f"--batch-size must be >= 1 (got {config.batch_size})")
    if config.batch_size > 1:
        from specdiff.evals.batch_bench import batch_methods

        batch_methods(config.methods, BenchConfig.methods)
    if config.grid_prompts < 1:
        raise SpecdiffError(f"--grid-prompts must be >= 1 (got {config.grid_prompts})")
    check_bench_sampling(config)
    from specdiff.args import proposer_named
    from specdiff.controllers import check_steps

    if not config.grid_block_sizes or not config.grid_steps or not config.grid_proposers:
        raise SpecdiffError("the grid needs at least one proposer, one block size and one step count")
    if min(config.grid_block_sizes) < 1:
        raise SpecdiffError(f"grid block sizes must be >= 1 (got {min(config.grid_block_sizes)})")
    check_steps(min(config.grid_steps), "--grid-steps")
    for name in config.grid_proposers:
        proposer_named(name)
    check_models_and_out(config.models, config.dtype, config.out, (".csv", ".parquet"))
    existing = [p for p in (Path(config.out), runs_path(config.out)) if p.exists()]
    if existing and not config.overwrite:
        raise SpecdiffError(f"{existing[0]} already exists; choose another --out, or pass --overwrite to replace it")
    if (
        config.batch_size == 1
        and config.ar_drafter is None
        and any(BENCH_METHODS[m].needs_ar_drafter for m in config.methods)
        and pair_ar_drafter_folder(config.models) is None
    ):
        where = "when --drafter and --verifier are named" if config.models.pair_name is None else (
            f"for the {config.models.pair_name} pair, which ships none")
        raise SpecdiffError(f"assisted_ar_drafter needs --ar-drafter {where}; pass one or drop it from --methods")
    grid_block = max(config.grid_block_sizes) if config.batch_size == 1 else 1  # a batch bench runs no grid
    return suite_to_run(config.suite, config.limit, grid_block, "grid block size", config.models, canvas_length)


def check_bench_sampling(config: BenchConfig) -> None:
    """Temperature, top-k, top-p and seed pass ``GenerateArgs``' checks (the ones ``generate`` makes)."""
    from specdiff.args import GenerateArgs

    for name in ("top_k", "seed"):
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise SpecdiffError(f"--{name.replace('_', '-')} must be a whole number >= 0 (got {value!r})")
    GenerateArgs(temperature=config.temperature, top_k=config.top_k, top_p=config.top_p, seed=config.seed)
    if config.sampled and config.batch_size > 1:
        raise SpecdiffError("the batch bench (--batch-size above 1) runs greedy only; drop --temperature or "
                            "--batch-size")


def runs_path(out: Path) -> Path:
    """Where the bench's per-prompt runs go, beside its summary ``out``."""
    out = Path(out)
    return out.with_name(out.stem + ".runs" + out.suffix)


def grid_choices(config: BenchConfig, proposers: Any) -> list[Any]:
    """The grid's choices: every block for each proposer the decoder has, the diffusion drafter's
    also at every step count."""
    from specdiff.args import proposer_named
    from specdiff.protocols import Choice

    choices = []
    for proposer in dict.fromkeys(proposer_named(name) for name in config.grid_proposers):
        if proposer not in proposers:
            continue
        for block in config.grid_block_sizes:
            steps = config.grid_steps if proposer.denoises else (0,)
            choices += [Choice(proposer, block, s) for s in steps]
    if not choices:
        have = ", ".join(p.value for p in proposers)
        raise SpecdiffError(f"none of the grid's proposers is among this decoder's ({have}); fix --grid-proposers")
    return choices


def quick_grid(
    ctx: BenchContext, prompts: list[Any], choices: list[Any], advance: Callable[[str], None] = lambda _: None,
) -> pd.DataFrame:
    """tokens/s and mean acceptance length of every grid choice on ``ctx``'s decoder, output length and
    sampling (prompt ``i`` seeded as in the bench), fastest first (``choice`` column)."""
    import pandas as pd

    totals: dict[Any, list[float]] = {}
    for i, ids in enumerate(prompts):  # prompt-major, like the bench itself
        sampling = replace(ctx, seed=ctx.seed + i).sampling()
        for choice in choices:
            steps = choice.denoising_steps if choice.proposer.denoises else None
            result = ctx.decoder.generate(ids, max_new_tokens=ctx.max_new_tokens, proposer=choice.proposer,
                                          block_size=choice.block_size, denoising_steps=steps, **sampling)
            advance(f"quick grid: {choice.proposer.value} {choice.block_size} x {choice.denoising_steps}")
            acc = totals.setdefault(choice, [0, 0, 0.0])
            acc[0] += len(result.token_ids)
            acc[1] += result.num_rounds
            acc[2] += result.elapsed_s
    rows = [dict(choice=choice, proposer=choice.proposer.value, block_size=choice.block_size,
                 denoising_steps=choice.denoising_steps, tokens_per_s=tokens / seconds,
                 mean_acceptance_length=tokens / rounds)
            for choice, (tokens, rounds, seconds) in totals.items()]
    return pd.DataFrame(rows).sort_values("tokens_per_s", ascending=False, ignore_index=True)


def run_bench(
    config: BenchConfig, decoder: Any | None = None, ar_drafter: Any | None = None, progress: bool = True
) -> BenchResult:
    """Run every method on every prompt, interleaved; see the module docstring."""
    import pandas as pd

    methods = list(dict.fromkeys(config.methods))
    suite = check_bench(config, max(decoder.limits.values()) if decoder is not None else None)
    use_threads(config.threads)
    if decoder is None:
        decoder = config.models.load(config.dtype)
    if config.batch_size > 1:
        return _run_batched(config, decoder, suite, progress)
    choices = grid_choices(config, decoder.proposers)
    ctx = BenchContext(decoder, config.max_new_tokens, temperature=config.temperature, top_k=config.top_k,
                       top_p=config.top_p, seed=config.seed)
    if any(BENCH_METHODS[m].needs_ar_drafter for m in methods):
        ctx.ar_drafter = (
            ar_drafter if ar_drafter is not None
            else load_ar_drafter(config.ar_drafter or pair_ar_drafter_folder(config.models), decoder.verifier.model)
        )
    prompt_ids = [decoder.encode_prompt(p.decoder_input) for p in suite.prompts]
    warm = min(8, config.max_new_tokens)
    decoder.generate(prompt_ids[0], max_new_tokens=warm, block_size=min(config.grid_block_sizes))
    needs_grid = any(BENCH_METHODS[m].needs_grid for m in methods)
    grid_runs = len(choices) * len(prompt_ids[: config.grid_prompts])
    timed_runs = config.repeats * len(prompt_ids) * len(methods)
    with progress_bar(progress, grid_runs * needs_grid + timed_runs, "bench") as advance:
        grid = pd.DataFrame()
        if needs_grid:
            grid = quick_grid(ctx, prompt_ids[: config.grid_prompts], choices, advance)
            ctx.best = grid.iloc[0]["choice"]
            grid = grid.drop(columns="choice")
        for name in methods:  # warm-up: first-call costs land in no measurement
            BENCH_METHODS[name].run(replace(ctx, max_new_tokens=min(8, config.max_new_tokens), extra={}), prompt_ids[0])
        records, outputs = [], {}
        for repeat in range(config.repeats):
            for i, (prompt, ids) in enumerate(zip(suite.prompts, prompt_ids, strict=True)):
                shift = (i + repeat) % len(methods)  # each repeat moves every method to another slot
                for name in methods[shift:] + methods[:shift]:
                    run = BENCH_METHODS[name].run(replace(ctx, seed=config.seed + i), ids)
                    outputs[prompt.id, repeat, name] = run.token_ids
                    advance(f"{prompt.id} {name}")
                    records.append(
                        dict(
                            prompt_id=prompt.id,
                            repeat=repeat,
                            method=name,
                            new_tokens=len(run.token_ids),
                            **{k: v for k, v in asdict(run).items() if k != "token_ids"},
                            output_hash=output_hash(run.token_ids),
                            loop_share=loop_share(run.token_ids),
                            **({"seed": config.seed + i} if config.sampled else {}),
                        )
                    )
    runs = pd.DataFrame(records)
    mismatched: tuple[str, ...] | None = None  # sampled: draws from one distribution, not compared
    if not config.sampled:
        if "ar" in methods:
            from specdiff.evals.divergence import add_divergences

            ids_of = {p.id: ids for p, ids in zip(suite.prompts, prompt_ids, strict=True)}
            runs = add_divergences(runs, outputs, ids_of, decoder.verifier.model,
                                   next(iter(decoder.verifier.eos_token_ids), None))
        agree = runs.groupby("prompt_id", sort=False)["output_hash"].nunique()
        mismatched = tuple(agree[agree > 1].index)
    summary = summarize_bench(runs, methods, ctx.best, mismatched, config.temperature)
    summary["dtype"] = str(decoder.verifier.model.dtype).removeprefix("torch.")
    identical = None if mismatched is None else not mismatched
    return BenchResult(summary, runs, grid, identical=identical, mismatched_prompts=mismatched or ())


def _run_batched(config: BenchConfig, decoder: Any, suite: Suite, progress: bool) -> BenchResult:
    """``--batch-size`` above 1: ``specdiff.evals.batch_bench``'s methods on groups of prompts."""
    import pandas as pd
    from specdiff.evals.batch_bench import batch_methods, groups, run_batch_groups, summarize_batch_bench

    methods = batch_methods(config.methods, BenchConfig.methods)
    prompt_ids = [(p.id, decoder.encode_prompt(p.decoder_input)[0].tolist()) for p in suite.prompts]
    steps = config.repeats * len(groups(prompt_ids, config.batch_size)) * len(methods)
    with progress_bar(progress, steps, "bench") as advance:
        runs = run_batch_groups(decoder, prompt_ids, methods, config.batch_size, config.max_new_tokens,
                                config.repeats, advance)
    agree = runs.groupby("prompt_id", sort=False)["output_hash"].nunique()
    mismatched = tuple(agree[agree > 1].index)
    summary = summarize_batch_bench(runs, methods, config.batch_size, mismatched)
    return BenchResult(summary, runs, pd.DataFrame(), identical=not mismatched, mismatched_prompts=mismatched)
