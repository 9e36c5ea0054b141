import json
import os

import keras
import numpy as np
import pytest

from fashion_cnn import hardware
from fashion_cnn.config import TrainConfig
from fashion_cnn.errors import RunError
from fashion_cnn.evaluate import predict_proba
from fashion_cnn.hardware import auto_precision, cpu_flags, resolve_precision
from fashion_cnn.runs import load_run_model
from fashion_cnn.train import train

ZEN3 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx avx2 fma\n\n"
SAPPHIRE = "processor\t: 0\nflags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"


def test_cpu_flags_reads_the_first_flags_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(ZEN3 + "processor\t: 1\nflags\t\t: other\n")
    assert cpu_flags(info) == {"fpu", "sse2", "avx", "avx2", "fma"}


def test_cpu_flags_is_empty_where_there_is_no_cpuinfo(tmp_path):
    assert cpu_flags(tmp_path / "missing") == frozenset()
    (tmp_path / "odd").write_text("nothing here\n")
    assert cpu_flags(tmp_path / "odd") == frozenset()


@pytest.mark.parametrize(
    "flags, gpus, expected",
    [
        ({"avx2", "avx512f", "avx512_bf16"}, [], "mixed_bfloat16"),
        ({"amx_bf16"}, [], "mixed_bfloat16"),
        ({"avx2", "avx512f"}, [], "float32"),  # AVX-512 without its bf16 extension
        (set(), [], "float32"),  # cannot tell: the safe choice
        (set(), [(8, 0)], "mixed_bfloat16"),
        ({"amx_bf16"}, [(7, 5)], "float32"),  # the GPU trains, and it has no bf16
        (set(), [(9, 0), (7, 0)], "float32"),
    ],
)
def test_auto_precision_picks_bf16_only_where_the_hardware_has_it(flags, gpus, expected):
    assert auto_precision(frozenset(flags), gpus) == expected


@pytest.mark.parametrize("machine", ["x86_64", "AMD64"])
def test_prefer_onednn_turns_onednn_on_for_x86_64(machine):
    env = {"PATH": "/bin"}
    assert hardware.prefer_onednn(env, machine) is True
    assert env == {"PATH": "/bin", "TF_ENABLE_ONEDNN_OPTS": "1"}


def test_prefer_onednn_keeps_the_users_choice_and_other_architectures():
    env = {"TF_ENABLE_ONEDNN_OPTS": "0"}
    assert hardware.prefer_onednn(env, "x86_64") is False
    assert env == {"TF_ENABLE_ONEDNN_OPTS": "0"}
    for machine in ("aarch64", "arm64", ""):
        env = {}
        assert hardware.prefer_onednn(env, machine) is False
        assert env == {}


def test_the_cli_asks_for_onednn_for_training_commands_only(monkeypatch):
    from fashion_cnn import cli

    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    monkeypatch.setattr(hardware.platform, "machine", lambda: "x86_64")
    for command in ("serve", "predict", "evaluate"):
        cli._setup(command=command)
        assert "TF_ENABLE_ONEDNN_OPTS" not in os.environ
    cli._setup(command="train")
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "1"


def test_resolve_precision_keeps_explicit_values(monkeypatch):
    monkeypatch.setattr(hardware, "cpu_flags", lambda: pytest.fail("explicit values need no probe"))
    assert resolve_precision("float32") == "float32"
    assert resolve_precision("mixed_bfloat16") == "mixed_bfloat16"


def _pretend(monkeypatch, tmp_path, cpuinfo):
    """Makes `hardware` read `cpuinfo` as this machine's /proc/cpuinfo, with no GPU."""
    (tmp_path / "cpuinfo").write_text(cpuinfo)
    real = hardware.cpu_flags
    monkeypatch.setattr(hardware, "cpu_flags", lambda: real(tmp_path / "cpuinfo"))
    monkeypatch.setattr(hardware, "gpu_capabilities", lambda: [])


@pytest.mark.parametrize("cpuinfo, expected", [(ZEN3, "float32"), (SAPPHIRE, "mixed_bfloat16")])
def test_auto_runs_record_the_precision_they_trained_in(
    synthetic_data, tmp_path, monkeypatch, cpuinfo, expected
):
    _pretend(monkeypatch, tmp_path, cpuinfo)
    config = TrainConfig(recipe="t", epochs=1, batch_size=64, scale=1 / 255, precision="auto")
    out = train(config, synthetic_data, tmp_path / "run", verbose=0)
    assert json.loads((out / "config.json").read_text())["precision"] == expected
    conv = keras.models.load_model(out / "model.keras").layers[1]
    assert conv.compute_dtype == {"float32": "float32", "mixed_bfloat16": "bfloat16"}[expected]
    # The same call resumes (finds the finished run) rather than refusing a changed config.
    assert train(config, synthetic_data, out, verbose=0) == out


@pytest.fixture(scope="module")
def bf16_run(tmp_path_factory, synthetic_data):
    config = TrainConfig(
        recipe="t", epochs=1, batch_size=64, scale=1 / 255, precision="mixed_bfloat16"
    )
    return train(config, synthetic_data, tmp_path_factory.mktemp("bf16"), verbose=0)


def dtypes(model):
    return {layer.compute_dtype for layer in model.layers}


def test_a_bf16_run_computes_in_float32_where_bf16_is_emulated(
    bf16_run, synthetic_data, tmp_path, monkeypatch
):
    trained = load_run_model(bf16_run, precision="trained")
    assert "bfloat16" in dtypes(trained)
    _pretend(monkeypatch, tmp_path, ZEN3)
    model = load_run_model(bf16_run)
    assert dtypes(model) == {"float32"}
    for a, b in zip(model.get_weights(), trained.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    x = synthetic_data.x_test[:64]
    np.testing.assert_allclose(predict_proba(model, x), predict_proba(trained, x), atol=0.02)
    assert "bfloat16" in dtypes(load_run_model(bf16_run, precision="trained"))


def test_a_bf16_run_computes_as_trained_where_bf16_is_native(bf16_run, tmp_path, monkeypatch):
    _pretend(monkeypatch, tmp_path, SAPPHIRE)
    assert "bfloat16" in dtypes(load_run_model(bf16_run))


def test_load_run_model_refuses_an_unknown_precision(bf16_run):
    with pytest.raises(RunError, match=r"`precision`: expected 'auto' or 'trained'.*'fp16'"):
        load_run_model(bf16_run, precision="fp16")
