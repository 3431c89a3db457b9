"""The cost model: rooflines computed by hand, the expert-touch formula, profile validation, the
estimate on a recorded CPU sweep, the calibration fit, and ``specdiff estimate``."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from specdiff.evals.calibrate import Observation, fit_hardware, predict
from specdiff.evals.estimate import (
    Forward,
    Workload,
    acceptance_from_lengths,
    acceptance_from_results,
    best_configuration,
    estimate,
    estimate_beside_measured,
)
from specdiff.evals.roofline import (
    Combine,
    DraftMode,
    HardwareProfile,
    ModelProfile,
    Source,
    experts_touched,
    forward_seconds,
    known_profiles,
    load_hardware,
    load_model_profile,
    profile_to_json,
)
from specdiff.evals.sweep import read_results

from specdiff.errors import SpecdiffError

ROOT = Path(__file__).resolve().parents[2]
CPU_TABLE = ROOT / "tests" / "data" / "estimate_cpu_table.csv"
SOURCE = (Source("hand-made", "tests"),)


def toy_hardware(combine: Combine = Combine.MAX) -> HardwareProfile:
    """1000 GB/s at half efficiency, 100 TFLOP/s at half efficiency, 1 ms a forward."""
    return HardwareProfile(name="toy", description="", memory_bandwidth_gbs=1000, peak_tflops={"bf16": 100},
                           memory_gb=80, bandwidth_efficiency=0.5, flops_efficiency=0.5, overhead_ms=1.0,
                           overhead_per_layer_ms=0.0, round_overhead_ms=0.0, combine=combine, sources=SOURCE)


def toy_model(experts: int = 0, mode: DraftMode = DraftMode.NONE, vocab: int = 1000) -> ModelProfile:
    """1e9 dense parameters, a 1e8 head, optionally 8e9 of experts (top-2 of ``experts``), no KV."""
    return ModelProfile(name="toy", description="", num_layers=10, hidden_size=100, vocab_size=vocab,
                        dense_params=10**9, lm_head_params=10**8, expert_params=8 * 10**9 if experts else 0,
                        num_experts=experts, top_k_experts=2 if experts else 0, kv_per_token_full=0,
                        kv_per_token_sliding=0, sliding_window=0, attention_flops_full=0, attention_flops_sliding=0,
                        draft_mode=mode, canvas_length=0, sources=SOURCE)


# -- the roofline by hand ------------------------------------------------------------------------------


def test_experts_touched_is_k_for_one_token_and_all_for_many():
    assert experts_touched(1, 128, 8) == pytest.approx(8)
    assert experts_touched(2, 128, 8) == pytest.approx(128 * (1 - (120 / 128) ** 2))
    assert experts_touched(256, 128, 8) == pytest.approx(128, abs=1e-3)
    assert experts_touched(0, 128, 8) == 0.0
    assert experts_touched(50, 0, 0) == 0.0


def test_dense_forward_is_memory_bound_by_hand():
    # bytes 1.1e9 params x 2 = 2.2e9 at 500 GB/s = 4.4 ms; FLOPs 2 x 1.1e9 at 50 TFLOP/s = 0.044 ms.
    hw, model = toy_hardware(), toy_model()
    assert forward_seconds(hw, model, 1, 1, 0, "bf16") == pytest.approx(1e-3 + 4.4e-3)
    assert forward_seconds(toy_hardware(Combine.SUM), model, 1, 1, 0, "bf16") == pytest.approx(1e-3 + 4.4e-3 + 44e-6)
    # 1000 tokens: FLOPs 2 x 1000 x 1.1e9 = 2.2e12 -> 44 ms, now above the 4.4 ms of reading.
    assert forward_seconds(hw, model, 1000, 1000, 0, "bf16") == pytest.approx(1e-3 + 44e-3)


def test_moe_forward_reads_only_touched_experts_by_hand():
    hw, model = toy_hardware(), toy_model(experts=8)
    # One token at top-2 of 8 reads 2 experts of 1e9: (1e9 + 1e8 + 2e9) x 2 bytes = 6.2e9 -> 12.4 ms.
    assert forward_seconds(hw, model, 1, 1, 0, "bf16") == pytest.approx(1e-3 + 12.4e-3)
    # 64 tokens touch all 8 (to 1e-7 of one): 9.1e9 params x 2 bytes -> 36.4 ms.
    assert forward_seconds(hw, model, 64, 64, 0, "bf16") == pytest.approx(1e-3 + 36.4e-3, rel=1e-6)
    # fp8 halves the bytes.
    assert forward_seconds(hw, model, 1, 1, 0, "fp8") == pytest.approx(1e-3 + 6.2e-3)


def test_estimate_of_a_block_drafter_by_hand():
    hw = toy_hardware()
    verifier, drafter = toy_model(), toy_model(mode=DraftMode.BLOCK)
    table = estimate(acceptance_from_lengths([(8, 1, 4.0)]), hw, drafter, verifier, "bf16", Workload(context=0))
    row = table.iloc[0]
    plain = 1e-3 + 4.4e-3  # both models read 2.2e9 bytes a forward; 9 tokens stay memory-bound
    assert row["draft_s"] == pytest.approx(plain) and row["verify_s"] == pytest.approx(plain)
    assert row["tokens_per_s"] == pytest.approx(4.0 / (2 * plain))
    assert row["speedup"] == pytest.approx(2.0)
    assert best_configuration(table)["block_size"] == 8


def test_estimate_refuses_a_mismatched_vocabulary():
    with pytest.raises(SpecdiffError, match="vocabulary"):
        estimate(acceptance_from_lengths([(4, 1, 2.0)]), toy_hardware(), toy_model(mode=DraftMode.BLOCK, vocab=7),
                 toy_model())


def test_acceptance_length_outside_the_block_is_refused():
    with pytest.raises(SpecdiffError, match="outside"):
        acceptance_from_lengths([(4, 1, 6.0)])


# -- acceptance from a sweep ------------------------------------------------------------------------------


def sweep_rows(block: int, judged: list[int], accepted: list[int], rounds: int, steps: int = 1) -> dict:
    return dict(method="specdiff", block_size=block, denoising_steps=steps, rounds=rounds, denoising_steps_used=steps,
                position_judged=judged, position_accepted=accepted)


def test_acceptance_reads_reach_rates_and_derives_smaller_blocks():
    import pandas as pd

    results = pd.DataFrame([sweep_rows(4, [10, 8, 5, 2], [8, 5, 2, 1], rounds=10)])
    table = acceptance_from_results(results, (1, 2, 4))
    assert table["tokens_per_round"].tolist() == pytest.approx([1.8, 2.3, 2.6])
    assert table["derived"].tolist() == [True, True, False]
    with pytest.raises(SpecdiffError, match="larger than any"):
        acceptance_from_results(results, (8,))
    # A 0-step lookup that guessed on half the rounds: the other half commit one token.
    lookup = pd.DataFrame([sweep_rows(2, [5, 4], [4, 2], rounds=10, steps=0)])
    assert acceptance_from_results(lookup, (2,))["tokens_per_round"].iloc[0] == pytest.approx(1 + 0.5 * (0.8 + 0.4))


# -- profiles ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", known_profiles("hardware"))
def test_every_shipped_hardware_profile_loads_and_round_trips(name, tmp_path):
    profile = load_hardware(name)
    path = tmp_path / "copy.json"
    path.write_text(json.dumps(profile_to_json(profile)))
    assert load_hardware(path) == profile


@pytest.mark.parametrize("name", known_profiles("models"))
def test_every_shipped_model_profile_loads(name):
    profile = load_model_profile(name)
    assert profile.total_params > 0 and profile.sources


def test_shipped_gemma_profiles_match_their_configs():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from estimate_profiles import config_profiles

    for derived in config_profiles():
        assert load_model_profile(derived.name) == derived
    assert load_model_profile("gemma-4-31b").total_params == pytest.approx(30.7e9, rel=0.01)
    a4b = load_model_profile("gemma-4-26b-a4b")
    assert (a4b.total_params, a4b.active_params) == (pytest.approx(25.2e9, rel=0.01), pytest.approx(3.8e9, rel=0.01))


def test_a_missing_or_unknown_field_is_named(tmp_path):
    data = profile_to_json(load_hardware("H100"))
    path = tmp_path / "broken.json"
    del data["memory_bandwidth_gbs"]
    path.write_text(json.dumps(data))
    with pytest.raises(SpecdiffError, match=r"broken\.json: missing field 'memory_bandwidth_gbs'"):
        load_hardware(path)
    data = profile_to_json(load_model_profile("gemma-4-31b")) | {"layers": 3}
    path.write_text(json.dumps(data))
    with pytest.raises(SpecdiffError, match="unknown field 'layers'"):
        load_model_profile(path)
    data = profile_to_json(load_model_profile("gemma-4-31b")) | {"num_layers": "sixty"}
    path.write_text(json.dumps(data))
    with pytest.raises(SpecdiffError, match="field 'num_layers' is invalid"):
        load_model_profile(path)


def test_an_unknown_name_lists_the_known_ones():
    with pytest.raises(SpecdiffError, match="known: .*H100"):
        load_hardware("A100")


# -- calibration -------------------------------------------------------------------------------------------------


def test_fit_recovers_a_known_profile():
    truth = replace(toy_hardware(), bandwidth_efficiency=0.7, overhead_ms=2.0)
    model = toy_model(experts=8)
    observations = []
    for tokens in (1, 2, 4, 16):
        forwards = (Forward(1, tokens, tokens, 0),)
        observations.append(Observation(model, forwards, predict(truth, Observation(model, forwards, 1.0, "bf16")),
                                        "bf16"))
    fit = fit_hardware(replace(truth, bandwidth_efficiency=0.3, overhead_ms=0.0), observations, fit_flops=False)
    assert fit.hardware.bandwidth_efficiency == pytest.approx(0.7, rel=0.03)
    assert fit.hardware.overhead_ms == pytest.approx(2.0, rel=0.05)
    assert fit.worst < 0.02


def test_recorded_cpu_table_is_predicted_within_the_bar():
    """Held-out configurations and prompts measured by benchmarks/estimate_cpu_check.py, against the
    CPU profile fitted on the other configurations and prompts."""
    results = read_results(CPU_TABLE)
    hardware = load_hardware("CPU-1T")
    drafter, verifier = load_model_profile("pocket-drafter"), load_model_profile("pocket-verifier")
    spec = results[results["method"] == "specdiff"]
    workload = Workload(context=int((spec["prompt_tokens"] + spec["new_tokens"] / 2).mean()),
                        prompt_tokens=int(spec["prompt_tokens"].mean()), new_tokens=48)
    errors = []
    for (block, _steps), group in spec.groupby(["block_size", "denoising_steps"]):
        predicted = estimate(acceptance_from_results(group, (int(block),)), hardware, drafter, verifier, "fp32",
                             workload).iloc[0]
        errors.append(predicted["tokens_per_s"] / (group["new_tokens"].sum() / group["total_s"].sum()) - 1)
    assert len(errors) >= 10
    assert np.max(np.abs(errors)) <= 0.15


def test_estimate_beside_measured_keeps_every_measured_configuration():
    results = read_results(CPU_TABLE)
    table = estimate_beside_measured(results, load_hardware("H100"), load_model_profile("diffusiongemma-26b-a4b"),
                                     load_model_profile("gemma-4-31b"))
    assert len(table) == results[results["method"] == "specdiff"].groupby(["block_size", "denoising_steps"]).ngroups
    assert table["predicted_speedup"].notna().all() and (table["hardware"] == "H100").all()


# -- the command and the probe ------------------------------------------------------------------------------------


def test_estimate_command_prints_the_best_configuration_per_hardware():
    from typer.testing import CliRunner

    from specdiff.cli import app

    runner = CliRunner()
    out = runner.invoke(app, ["estimate", "--trace", str(CPU_TABLE), "--hardware", "H100,RTX5090", "--dtype", "fp8"])
    assert out.exit_code == 0, out.output
    flat = " ".join(out.output.split())
    assert "H100: best block" in flat and "RTX5090: best block" in flat and "(DiffusionGemma)" in flat
    bad = runner.invoke(app, ["estimate", "--trace", str(CPU_TABLE), "--hardware", "A100"])
    assert bad.exit_code == 2 and "known:" in bad.output and "Traceback" not in bad.output
    missing = runner.invoke(app, ["estimate", "--trace", "no/such.parquet"])
    assert missing.exit_code == 2 and "no results file" in missing.output


def test_gpu_cost_probe_writes_a_profile_the_model_reads(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gpu_costs import main

    out = tmp_path / "probe.json"
    assert main(["--scale", "tiny", "--device", "cpu", "--dtype", "fp32", "--base", "CPU-1T", "--context", "32",
                 "--max-width", "4", "--repeats", "1", "--out", str(out)]) == 0
    profile = load_hardware(out)
    assert profile.name == "CPU-1T-measured" and "verify K=4" in profile.calibration
    assert 0 < profile.bandwidth_efficiency <= 1 and profile.overhead_ms >= 0


def test_report_shows_the_estimate_beside_the_measured_figures():
    from typer.testing import CliRunner

    from specdiff.cli import app

    runner = CliRunner()
    out = runner.invoke(app, ["report", str(CPU_TABLE), "--estimate", "H100", "--top", "3"])
    assert out.exit_code == 0, out.output
    flat = " ".join(out.output.split())
    assert "measured here, predicted on H100" in flat
    expected = estimate_beside_measured(read_results(CPU_TABLE), load_hardware("H100"),
                                        load_model_profile("diffusiongemma-26b-a4b"), load_model_profile("gemma-4-31b"))
    best = expected.iloc[0]
    assert f"{best.predicted_speedup:.2f}x" in flat
    bad = runner.invoke(app, ["report", str(CPU_TABLE), "--estimate", "GTX480"])
    assert bad.exit_code == 2 and "unknown hardware profile 'GTX480'" in bad.output
