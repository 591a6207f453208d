"""The digits CNN, a short training run, and ``contractnet train digits``."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import contractnet as cn
from contractnet import cli, data, nn, optim, train

pytest.importorskip("sklearn.datasets")


@pytest.mark.parametrize("head, cls", [("contract", nn.ContractHead), ("flatten", nn.FlattenDense),
                                       ("cp", nn.CPHead), ("tucker", nn.TuckerHead)])
def test_build_model_maps_digits_to_ten_logits(head, cls):
    model = train.build_model(head, rng=0)
    assert isinstance(model[3], cls)
    out = model(np.zeros((2, 8, 8, 1), np.float32))
    assert out.shape == (2, 10) and out.dtype == np.float32


def test_build_model_rejects_unknown_head():
    with pytest.raises(ValueError, match="choose one of contract, flatten, cp, tucker"):
        train.build_model("dense")


@pytest.mark.parametrize("head, bad, match", [
    ("cp", {"rank": 0}, "rank must be a positive integer, got 0"),
    ("tucker", {"ranks": (2, 2)}, r"ranks must be three positive ints \(p, q, s\)"),
    ("contract", {"dtype": np.int32}, "dtype must be a floating dtype, got int32")])
def test_a_refused_model_leaves_the_generator_as_it_was(head, bad, match):
    generator = np.random.default_rng(0)
    state = generator.bit_generator.state
    with pytest.raises(ValueError, match=match):
        train.build_model(head, rng=generator, **bad)
    assert generator.bit_generator.state == state


def test_a_built_model_draws_from_the_generator_it_is_given():
    generator = np.random.default_rng(3)
    first = train.build_model("cp", rng=generator)
    second = train.build_model("cp", rng=generator)  # the generator moved on
    again = train.build_model("cp", rng=np.random.default_rng(3))
    assert not np.array_equal(first[0].parameters()["weight"], second[0].parameters()["weight"])
    for layer in (0, 3):
        for name, value in first[layer].parameters().items():
            np.testing.assert_array_equal(value, again[layer].parameters()[name])


def loss_on(model, x, y) -> float:
    return float(train.cross_entropy_loss(model)(model.parameters(), x, y))


def test_short_training_run_reduces_the_loss():
    d = data.load_digits(seed=0)
    x, y = d.x_train[:256], d.y_train[:256]
    model = train.build_model("contract", rng=0)
    opt = optim.Adam(model.parameters(), lr=0.01)
    before = loss_on(model, x, y)
    g = np.random.default_rng(0)
    for _ in range(2):
        train.train_epoch(model, opt, x, y, 32, g)
    assert loss_on(model, x, y) < 0.7 * before


def test_contract_and_flatten_heads_train_identically():
    # same seed -> same weights; same function -> same updates (up to rounding)
    d = data.load_digits(seed=0)
    x, y = d.x_train[:128], d.y_train[:128]
    runs = {}
    for head in ("contract", "flatten"):
        model = train.build_model(head, rng=1)
        opt = optim.SGD(model.parameters(), lr=0.05)
        train.train_epoch(model, opt, x, y, 32, np.random.default_rng(2))
        runs[head] = model
    w_contract = runs["contract"][3].parameters()["weight"]
    w_flat = runs["flatten"][3].parameters()["weight"]
    np.testing.assert_allclose(nn.flat_weight(w_contract), w_flat, atol=1e-5)


def test_train_digits_returns_figures():
    result = train.train_digits("cp", epochs=1, batch_size=64, rank=2, log=None)
    assert result["head"] == "cp" and result["epochs"] == 1
    assert result["params"] == train.build_model("cp", rank=2).num_parameters()
    assert 0.0 <= result["test_accuracy"] <= 1.0 and result["seconds_per_epoch"] > 0
    assert len(result["history"]) == 1


def test_cli_json_is_all_of_stdout():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [os.path.dirname(os.path.dirname(cn.__file__)), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "contractnet", "train", "digits", "--epochs", "1",
                           "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("epoch   1/1")  # progress
    result = json.loads(proc.stdout)
    for key in ("test_accuracy", "seconds_per_epoch", "params", "head", "epochs"):
        assert key in result
    assert result["head"] == "contract" and result["epochs"] == 1
    assert result["test_accuracy"] > 0.5


@pytest.mark.parametrize("argv, match", [
    # named as the options are written
    (["--epochs", "0"], "--epochs must be a positive integer"),
    (["--lr", "-1"], "--lr must be a positive number, got -1.0"),
    (["--lr", "inf"], "--lr must be a positive number, got inf"),
    (["--batch-size", "0"], "--batch-size must be a positive integer"),
    (["--seed", "-1"], "--seed must be a non-negative integer, got -1"),
    (["--rank", "4"], "--rank sets the cp head's rank; add --head cp"),
    (["--head", "cp", "--ranks", "1", "2", "3"], "--ranks sets the tucker head's ranks"),
    (["--head", "cp", "--rank", "0"], "--rank must be a positive integer, got 0"),
    (["--head", "tucker", "--ranks", "2", "-1", "2"],
     "--ranks must be three positive integers (P Q S), got 2 -1 2"),
])
def test_cli_bad_values_are_clean_errors(capsys, argv, match):
    assert cli.main(["train", "digits", *argv]) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err


@pytest.mark.filterwarnings("error::RuntimeWarning")  # diverges on purpose, and quietly
def test_json_output_is_valid_json_when_the_loss_is_nan(capsys):
    pytest.importorskip("sklearn")
    assert cli.main(["train", "digits", "--epochs", "1", "--lr", "1e30", "--json"]) == 0

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")
    result = json.loads(capsys.readouterr().out, parse_constant=refuse)
    assert result["train_loss"] is None and result["diverged"] == 1
    assert len(result["history"]) == 1  # the run stops where it diverged


@pytest.mark.filterwarnings("error::RuntimeWarning")  # diverges on purpose, and quietly
def test_a_non_finite_loss_raises_diverged_without_a_step_on_it():
    model = train.build_model(rng=0)
    opt = optim.SGD(model.parameters(), lr=1e30)
    x = np.random.default_rng(0).random((64, 8, 8, 1), dtype=np.float32)
    y = np.arange(64) % 10
    before = np.geterr()
    with pytest.raises(train.Diverged, match=r"training diverged in batch (\d+): its loss is "
                                             r"(nan|inf); a lower learning rate may help") as exc:
        train.train_epoch(model, opt, x, y, 8, np.random.default_rng(0))
    batch = int(exc.value.args[0].split("batch ")[1].split(":")[0])
    assert batch > 1 and opt.steps == batch - 1  # every batch before it stepped, it did not
    assert all(np.isfinite(v).all() for v in model.parameters().values())
    assert np.geterr() == before  # the warnings are silenced for the epoch only


def test_a_model_with_a_fixed_batch_size_trains():
    """The class count is read off the first batch, not off one example."""
    layer = nn.Einsum("bi,ik->bk", sizes={"b": 4, "i": 3, "k": 2}, rng=0)
    model = nn.Sequential(layer)
    x = np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32)
    loss = train.train_epoch(model, optim.SGD(model.parameters(), lr=0.1), x,
                             np.array([0, 1] * 4), 4, np.random.default_rng(0))
    assert np.isfinite(loss)


@pytest.mark.filterwarnings("error::RuntimeWarning")  # overflows on purpose, and quietly
def test_a_finite_loss_with_gradients_past_float32_is_a_divergence():
    model = nn.Sequential(nn.Dense(4, 3, rng=0), nn.Dense(3, 2, rng=1))
    params = model.parameters()
    params["0.weight"][...], params["1.weight"][...] = 1e-20, 1e19
    before = {k: v.copy() for k, v in params.items()}
    x = np.full((8, 4), 1e20, np.float32)
    with pytest.raises(train.Diverged, match=r"diverged in batch 1: gradient '.*' holds .* "
                                             r"infinite value"):
        train.train_epoch(model, optim.SGD(params, lr=0.1), x, np.zeros(8, int), 8,
                          np.random.default_rng(0))
    for k, v in params.items():
        np.testing.assert_array_equal(v, before[k])


def test_train_epoch_checks_every_label_before_the_first_step():
    model = train.build_model(rng=0)
    opt = optim.Adam(model.parameters(), lr=0.01)
    before = {k: v.copy() for k, v in model.parameters().items()}
    x = np.zeros((4, 8, 8, 1), np.float32)
    for y, message in ((np.array([1, 2, 3, 99]), r"labels must lie in \[0, 10\)"),
                       (np.array([1, 2, 3]), r"labels must have shape \(4,\)"),
                       (np.array([1.0, 2, 3, 4]), "labels must be integers")):
        with pytest.raises(ValueError, match=message):
            train.train_epoch(model, opt, x, y, 2, np.random.default_rng(0))
    for k, v in model.parameters().items():
        np.testing.assert_array_equal(v, before[k])
    assert opt.steps == 0
    rng = np.random.default_rng(5)  # a refusal draws nothing: a retry shuffles as a first try
    with pytest.raises(ValueError, match="labels must lie"):
        train.train_epoch(model, opt, x, np.array([1, 2, 3, 99]), 2, rng)
    assert rng.integers(1000) == np.random.default_rng(5).integers(1000)


def test_cli_rejects_unknown_head_and_dataset(capsys):
    for argv in (["train", "digits", "--head", "dense"], ["train", "mnist"]):
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_train_epoch_and_evaluate_refuse_empty_data_and_a_foreign_optimizer():
    model, other = train.build_model(rng=0), train.build_model(rng=1)
    x, y = np.zeros((0, 8, 8, 1), np.float32), np.zeros(0, int)
    opt = optim.Adam(model.parameters())
    with pytest.raises(ValueError, match="train_epoch needs at least one example"):
        train.train_epoch(model, opt, x, y, 32, np.random.default_rng(0))
    with pytest.raises(ValueError, match="evaluate needs at least one example"):
        train.evaluate(model, x, y)
    with pytest.raises(ValueError, match=r"evaluate needs at least one example.*shape \(\)"):
        train.evaluate(model, np.float64(1.0), y)
    before = {k: v.copy() for k, v in other.parameters().items()}
    x, y = np.ones((4, 8, 8, 1), np.float32), np.arange(4)
    first = next(iter(model.parameters()))
    with pytest.raises(ValueError, match=f"holds other memory than the model's array for "
                                         f"'{first}'"):
        train.train_epoch(model, optim.Adam(other.parameters()), x, y, 2,
                          np.random.default_rng(0))
    for k, v in other.parameters().items():
        np.testing.assert_array_equal(v, before[k])


def test_train_epoch_takes_an_optimizer_built_on_views_of_the_models_arrays():
    model = train.build_model(rng=0)
    opt = optim.SGD({k: v[...] for k, v in model.parameters().items()}, lr=0.1)
    before = {k: v.copy() for k, v in model.parameters().items()}
    x, y = np.ones((4, 8, 8, 1), np.float32), np.arange(4)
    train.train_epoch(model, opt, x, y, 2, np.random.default_rng(0))
    assert any((v != before[k]).any() for k, v in model.parameters().items())
