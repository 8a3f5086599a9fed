"""A smaller `trustmarket demo --task text` in CI: all-MiniLM-L6-v2 with FFA-LoRA on SQuAD questions, on a fresh
anvil, one round: the round finalizes and verifies, only the adapters and the head travel, everyone is paid."""

from __future__ import annotations

import json

import pytest
import torch

from backend.marketplace.demo_text import TextDemoConfig, run_text_demo


@pytest.mark.slow
def test_the_text_demo_fine_tunes_adapters_and_pays_for_them(tmp_path, compiled_artifacts):
    threads = torch.get_num_threads()
    config = TextDemoConfig(
        trainers=2, rounds=1, per_trainer=16, validation=16, test=24, max_steps=3, challenge_window=1
    )
    report = run_text_demo(tmp_path, config)
    assert json.loads((tmp_path / "report.json").read_text()) == report
    assert torch.get_num_threads() == threads  # the demo's one thread is given back
    assert report["torch_threads"] == 1

    initial, first = report["rounds"]
    assert initial["round"] == -1 and first["round"] == 0
    assert first["validation_accuracy"] > 1 / 3  # three articles: better than a guess after one round
    assert first["accuracy"] >= initial["accuracy"]
    # Only the B matrices and the head travel: a small fraction of the full model.
    assert first["update_bytes"] < 0.05 * first["full_model_bytes"]
    assert report["travelling_parameters"] < 0.01 * report["base_parameters"]
    assert report["lora"]["ffa"] is True and report["model"].startswith("hf:")
    assert [v["match"] for v in report["verified"]] == [True]
    assert set(report["payouts"]) == set(first["scores"]) and len(first["scores"]) == config.trainers
