"""The bench: one row per method, outputs compared, and methods that plug in by name."""

from __future__ import annotations

from pathlib import Path

import pytest
from specdiff.evals import bench as bn
from specdiff.evals.bench import BenchConfig, BenchMethod, run_bench, speculative
from specdiff.evals.bench_summary import SAMPLED as SAMPLED_LABEL

from specdiff.errors import SpecdiffError

QUICK = dict(max_new_tokens=6, grid_block_sizes=(2, 4), grid_steps=(1,), grid_prompts=1)


def test_every_method_matches_the_verifier_alone(decoder, ar_drafter, mini_suite):
    result = run_bench(
        BenchConfig(out=Path("b.csv"), suite=str(mini_suite), **QUICK), decoder, ar_drafter, progress=False
    )
    summary = result.summary
    methods = ["ar", "assisted_ar_drafter", "hf_prompt_lookup", "fixed_best", "heuristic", "adaptive"]
    assert list(summary["method"]) == methods
    assert result.identical and summary["greedy_identical"].all()
    assert len(result.runs) == 2 * 6 and set(result.runs["new_tokens"]) == {6}
    ar = summary.iloc[0]
    assert ar["speedup_vs_ar"] == pytest.approx(1.0) and ar["mean_acceptance_length"] == pytest.approx(1.0)
    best = summary.iloc[3]
    assert (best["block_size"], best["denoising_steps"]) == tuple(
        result.grid.iloc[0][["block_size", "denoising_steps"]]
    )
    shares = summary[["draft_share", "verify_share", "other_share"]].sum(axis=1)
    assert shares.to_numpy() == pytest.approx([1.0] * 6)
    # Interleaved: each prompt runs every method before the next prompt starts, in rotated order.
    assert list(result.runs["method"][:6]) == methods
    assert list(result.runs["method"][6:]) == methods[1:] + methods[:1]


def test_the_grid_tries_each_proposer_the_decoder_has(decoder, drafter, verifier, mini_suite):
    from specdiff.drafts import NgramLookup

    from specdiff import SpeculativeDecoder

    quick = dict(QUICK, grid_proposers=("ngram", "diffusion"), methods=("ar", "fixed_best"))
    plain = run_bench(BenchConfig(out=Path("b.csv"), suite=str(mini_suite), **quick), decoder, progress=False)
    assert set(plain.grid["proposer"]) == {"diffusion"}  # no n-gram lookup in this decoder: skipped
    with pytest.raises(SpecdiffError, match="none of the grid's proposers"):
        run_bench(BenchConfig(out=Path("b.csv"), suite=str(mini_suite), **dict(quick, grid_proposers=("ngram",))),
                  decoder, progress=False)
    both = SpeculativeDecoder([drafter, NgramLookup(verifier.vocab_size, max_block_size=drafter.canvas_length)],
                              verifier)
    looked = run_bench(BenchConfig(out=Path("b.csv"), suite=str(mini_suite), **quick), both, progress=False)
    grid = looked.grid.set_index(["proposer", "block_size"])["denoising_steps"]
    assert sorted(grid.index) == [("diffusion", 2), ("diffusion", 4), ("ngram", 2), ("ngram", 4)]
    assert grid[("ngram", 2)] == 0 and looked.identical


def test_a_new_method_plugs_in_by_name(decoder, mini_suite, monkeypatch):
    from specdiff.controllers import Fixed

    methods = dict(bn.BENCH_METHODS, block_3=BenchMethod(speculative(lambda ctx: Fixed(3, 1))))
    monkeypatch.setattr(bn, "BENCH_METHODS", methods)
    result = run_bench(
        BenchConfig(out=Path("b.csv"), suite=str(mini_suite), methods=("ar", "block_3"), **QUICK),
        decoder,
        progress=False,
    )
    assert list(result.summary["method"]) == ["ar", "block_3"] and result.identical
    assert result.grid.empty  # no method asked for the grid


def test_repeats_sum_every_pass_and_move_each_method_to_another_slot(decoder, mini_suite):
    methods = ("ar", "heuristic", "adaptive")
    result = run_bench(
        BenchConfig(out=Path("b.csv"), suite=str(mini_suite), methods=methods, repeats=2, **QUICK),
        decoder,
        progress=False,
    )
    runs = result.runs
    assert len(runs) == 2 * 2 * 3 and sorted(set(runs["repeat"])) == [0, 1] and result.identical
    # The same prompt's second pass starts one slot later than its first.
    first, second = (runs[(runs["repeat"] == r) & (runs["prompt_id"] == runs["prompt_id"][0])] for r in (0, 1))
    assert list(first["method"]) == list(methods) and list(second["method"]) == [*methods[1:], methods[0]]
    summary = result.summary.set_index("method")
    totals = runs.groupby("method")[["new_tokens", "total_s"]].sum()
    for method in methods:
        assert summary.loc[method, "new_tokens"] == totals.loc[method, "new_tokens"] == 2 * 2 * 6
        assert summary.loc[method, "tokens_per_s"] == pytest.approx(
            totals.loc[method, "new_tokens"] / totals.loc[method, "total_s"]
        )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(repeats=0), "--repeats must be >= 1"),
        (dict(methods=("ar", "magic")), "unknown method magic"),
        (dict(methods=()), "unknown method"),
        (dict(max_new_tokens=0), "--max-new-tokens must be >= 1"),
        (dict(grid_block_sizes=(4, 32)), "exceeds the drafter's canvas of 16"),
        (dict(grid_steps=()), "the grid needs at least one"),
        (dict(suite="nope"), "unknown suite"),
        (dict(out=Path("b.json")), "must end in .csv or .parquet"),
        (dict(ar_drafter=None), "assisted_ar_drafter needs --ar-drafter"),
    ],
)
def test_bad_arguments_are_refused_before_loading(tiny_dirs, monkeypatch, change, message):
    monkeypatch.setattr("specdiff.loaders.load_decoder", lambda *a, **k: pytest.fail("loaded a model"))
    config = dict(out=Path("b.csv"), drafter=str(tiny_dirs[1]), verifier=str(tiny_dirs[0]), ar_drafter="x")
    with pytest.raises(SpecdiffError, match=message):
        run_bench(BenchConfig(**{**config, **change}), progress=False)


def _pocket_ready() -> bool:
    from specdiff.loaders import POCKET_DIR

    return all((POCKET_DIR / name / "config.json").is_file() for name in ("verifier", "drafter", "ar_drafter"))


@pytest.mark.slow
@pytest.mark.skipif(not _pocket_ready(), reason="the pocket pair is not exported yet")
def test_on_the_pocket_pair_every_method_is_lossless(tmp_path):
    config = BenchConfig(
        out=tmp_path / "b.csv", limit=1, max_new_tokens=24, grid_block_sizes=(8,), grid_steps=(1,), grid_prompts=1
    )
    result = run_bench(config, progress=False)
    assert result.identical, result.mismatched_prompts
    assert result.summary.set_index("method").loc["fixed_best", "mean_acceptance_length"] > 1.0


SAMPLED = dict(QUICK, max_new_tokens=16, temperature=0.7, seed=3)


def test_a_sampled_bench_runs_every_method_and_marks_the_identity_columns_not_applicable(
    decoder, ar_drafter, mini_suite
):
    config = BenchConfig(out=Path("b.csv"), suite=str(mini_suite), **SAMPLED)
    result = run_bench(config, decoder, ar_drafter, progress=False)
    summary = result.summary
    assert list(summary["method"]) == list(BenchConfig.methods)
    assert (summary["tokens_per_s"] > 0).all() and summary["speedup_vs_ar"].iloc[0] == pytest.approx(1.0)
    assert summary["speedup_vs_ar"].notna().all() and (summary["temperature"] == 0.7).all()
    # Draws are not one answer: not compared, so not reported as failures either.
    assert result.identical is None and result.mismatched_prompts == ()
    assert (summary["greedy_identical"] == SAMPLED_LABEL).all()
    assert summary[["identical_share", "max_divergence_spacings"]].isna().all().all()
    assert "first_divergence" not in result.runs.columns
    assert sorted(set(result.runs["seed"])) == [3, 4]  # prompt i seeded with seed + i
    assert (result.runs["new_tokens"] <= 16).all()


def test_a_sampled_bench_repeats_its_tokens_under_the_same_seed(decoder, ar_drafter, mini_suite):
    def outputs(seed: int) -> dict:
        config = BenchConfig(out=Path("b.csv"), suite=str(mini_suite), **dict(SAMPLED, seed=seed))
        runs = run_bench(config, decoder, ar_drafter, progress=False).runs
        return dict(zip(zip(runs["prompt_id"], runs["method"], strict=True), runs["output_hash"], strict=True))

    first = outputs(3)
    assert outputs(3) == first
    assert outputs(11) != first  # the seed does reach the draws


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(temperature=-0.5), "temperature must be >= 0"),
        (dict(temperature=float("nan")), "temperature must be a finite number"),
        (dict(temperature=0.7, top_p=1.5), r"top_p must be in \(0, 1\]"),
        (dict(temperature=0.7, top_p=0.0), r"top_p must be in \(0, 1\]"),
        (dict(temperature=0.7, top_k=-1), "--top-k must be a whole number >= 0"),
        (dict(temperature=0.7, seed=-2), "--seed must be a whole number >= 0"),
        (dict(temperature=0.7, batch_size=2), "the batch bench .* runs greedy only"),
    ],
)
def test_bad_sampling_arguments_are_refused_before_loading(tiny_dirs, monkeypatch, change, message):
    monkeypatch.setattr("specdiff.loaders.load_decoder", lambda *a, **k: pytest.fail("loaded a model"))
    config = dict(out=Path("b.csv"), drafter=str(tiny_dirs[1]), verifier=str(tiny_dirs[0]), ar_drafter="x")
    with pytest.raises(SpecdiffError, match=message):
        run_bench(BenchConfig(**{**config, **change}), progress=False)


@pytest.mark.slow
@pytest.mark.skipif(not _pocket_ready(), reason="the pocket pair is not exported yet")
def test_on_the_pocket_pair_a_sampled_bench_accepts_drafts(tmp_path):
    config = BenchConfig(out=tmp_path / "b.csv", limit=2, max_new_tokens=16, grid_block_sizes=(8,), grid_steps=(1,),
                         grid_prompts=1, temperature=0.7)
    summary = run_bench(config, progress=False).summary.set_index("method")
    assert summary["tokens_per_s"].gt(0).all() and summary["greedy_identical"].eq(SAMPLED_LABEL).all()
    assert summary.loc[["fixed_best", "heuristic", "adaptive"], "mean_acceptance_length"].max() > 1.0


def test_a_seeded_bench_policy_learns_on_the_pairs_nominal_clock(decoder, ar_drafter, mini_suite, monkeypatch):
    """The bench rebuilds a decoder per method over the pair's proposers: its seeded policy must see the
    pair's clock (the smol pair's prices float32 blocks as they cost), not the default."""
    from specdiff import SpeculativeDecoder
    from specdiff.controllers.cost import NominalClock

    clock, seen = NominalClock(verify_per_token=0.5), []
    generate = SpeculativeDecoder.generate

    def spying(self, *args, **kwargs):
        seen.append(self.nominal_clock)
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(decoder, "nominal_clock", clock)
    monkeypatch.setattr(SpeculativeDecoder, "generate", spying)
    config = BenchConfig(out=Path("b.csv"), suite=str(mini_suite), **dict(SAMPLED, methods=("ar", "adaptive")))
    run_bench(config, decoder, ar_drafter, progress=False)
    assert seen and all(c is clock for c in seen)
