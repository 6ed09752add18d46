"""Task library B: the character LM on scikit-learn's prose, the group-norm CNN, the deep
ill-conditioned MLP, the VAE, the RealNVP flow, ill-conditioned least squares and L2 softmax
regression. Interface, determinism, disjoint splits, variants, vmap(grad), a short AdamW run,
and the numbers each model is built from (convolutions, normalisation, densities, causality)."""

from __future__ import annotations

import hashlib
import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import grad, vmap

from sandbox.harness import RunConfig, run_candidate
from sandbox.references import load_reference
from sandbox.tasks import FAMILIES, TASK_CLASSES, get_task, text
from sandbox.tasks.cnn_norm import _map_patches, group_norm
from sandbox.tasks import flow
from sandbox.tasks.flow import moons_log_density
from sandbox.tasks.vae import _entropy

torch.set_num_threads(1)

NAMES = ["charlm_transformer", "cnn_groupnorm_digits", "mlp_deep_illcond", "vae_digits", "flow_moons",
         "linreg_illcond", "softmax_l2_digits"]
FAMILY = {"charlm_transformer": "attention", "cnn_groupnorm_digits": "cnn", "mlp_deep_illcond": "mlp",
          "vae_digits": "generative", "flow_moons": "generative", "linreg_illcond": "convex",
          "softmax_l2_digits": "convex"}
SHORT_RUN_LR = {"charlm_transformer": 1e-2, "cnn_groupnorm_digits": 1e-2, "mlp_deep_illcond": 3e-3,
                "vae_digits": 3e-3, "flow_moons": 1e-2, "linreg_illcond": 3e-2, "softmax_l2_digits": 3e-2}


def tensors_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def rows(x: torch.Tensor) -> set:
    return {tuple(r.tolist()) for r in x.reshape(len(x), -1)}


# --- every task of the library ---------------------------------------------------------------


def check_interface(name: str, family: str, steps: tuple[int, int]) -> None:
    """A library task's contract: registered under its name, its family, stochastic with a warm-up
    cosine schedule and a budget within ``steps``, a few variant knobs whose defaults are among
    their choices, float32 parameters, finite positive losses and a finite test metric."""
    task = get_task(name)
    assert TASK_CLASSES[name] is type(task) and task.family == family and task.family in FAMILIES
    assert task.stochastic and task.schedule == "warmup_cosine" and steps[0] <= task.steps <= steps[1]
    assert 2 <= len(task.variant_space) <= 5
    for attribute, choices in task.variant_space.items():
        assert getattr(type(task), attribute) in choices  # the default workload is one of the choices
    params = task.init_params(0)
    assert all(p.dtype == torch.float32 for p in params.values())
    for value in (task.loss(params, task.eval_batch()), task.val_loss(params), task.loss(params, task.batch(1, 0))):
        assert value.shape == () and math.isfinite(float(value)) and float(value) > 0
    assert math.isfinite(task.test_metric(params, 0))


def check_deterministic(name: str) -> None:
    """Parameters, minibatches and fixed splits depend on the seed (and step) alone."""
    task, fresh = get_task(name), type(get_task(name))()
    assert tensors_equal(task.init_params(3), fresh.init_params(3))
    assert not tensors_equal(task.init_params(3), task.init_params(4))
    assert tensors_equal(task.batch(7, 3), fresh.batch(7, 3))
    assert not tensors_equal(task.batch(7, 3), task.batch(7, 4))
    assert not tensors_equal(task.batch(7, 3), task.batch(8, 3))
    assert tensors_equal(task.val_batch(), fresh.val_batch()) and tensors_equal(task.eval_batch(), fresh.eval_batch())
    params = task.init_params(0)
    assert float(task.val_loss(params)) == float(fresh.val_loss(params))


@pytest.mark.parametrize("name", NAMES)
def test_interface(name):
    check_interface(name, FAMILY[name], (300, 3000))


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_given_a_seed(name):
    check_deterministic(name)


@pytest.mark.parametrize("name", NAMES)
def test_variants_differ_from_the_default_and_are_deterministic(name):
    cls = TASK_CLASSES[name]
    defaults = cls.variant_settings(0)
    drawn = [cls.variant_settings(v) for v in range(1, 9)]
    assert any(s != defaults for s in drawn)
    assert cls.variant_settings(3) == cls.variant_settings(3)
    variant = next(v for v in range(1, 9) if cls.variant_settings(v) != defaults)
    a, b = cls(variant), cls(variant)
    assert a.settings == cls.variant_settings(variant) and a.key == f"{name}@{variant}"
    assert tensors_equal(a.init_params(1), b.init_params(1)) and tensors_equal(a.batch(2, 1), b.batch(2, 1))
    base = get_task(name)
    changed_shapes = not tensors_equal({k: torch.tensor(v.shape) for k, v in a.init_params(1).items()},
                                       {k: torch.tensor(v.shape) for k, v in base.init_params(1).items()})
    params, batch = a.init_params(1), a.batch(2, 1)
    assert changed_shapes or not tensors_equal(batch, base.batch(2, 1)) \
        or float(a.val_loss(params)) != float(base.val_loss(params)) or float(a.loss(params, batch)) != float(base.loss(params, batch))


@pytest.mark.parametrize("name", NAMES)
def test_vmap_grad_matches_per_config_grad(name):
    task = get_task(name)
    per_seed = [task.init_params(s) for s in (0, 1)]
    stacked = {k: torch.stack([p[k] for p in per_seed]) for k in per_seed[0]}
    batch = task.batch(1, 0)
    batched = vmap(grad(task.loss), in_dims=(0, None))(stacked, batch)
    for i, params in enumerate(per_seed):
        single = grad(task.loss)(params, batch)
        for k in single:
            assert torch.allclose(batched[k][i], single[k], rtol=1e-4, atol=1e-6), (name, k)
    values = vmap(task.val_loss)(stacked)
    assert values.shape == (2,) and torch.isfinite(values).all()


@pytest.mark.parametrize("name", NAMES)
def test_a_short_adamw_run_lowers_the_validation_value(name):
    task = get_task(name)
    (result,) = run_candidate(load_reference("adamw"), task, [RunConfig(SHORT_RUN_LR[name], 0)], steps=40)
    assert result.ok and result.val_steps[0] == 0 and result.val_steps[-1] == 40
    assert result.val_losses[-1] < 0.97 * result.val_losses[0], (name, result.val_losses[0], result.val_losses[-1])


# --- the character corpus and language model -------------------------------------------------


def test_corpus_is_the_committed_ascii_text_split_into_disjoint_blocks():
    raw = text.CORPUS_PATH.read_bytes()
    assert len(raw) == text.CORPUS_CHARS and raw.isascii()
    assert hashlib.sha256(raw).hexdigest()[:16] == "05a4b3a00dc4be3b"  # any edit changes every LM number
    corpus = text.corpus()
    assert len(corpus.tokens) == len(raw) and int(corpus.tokens.max()) < corpus.vocab_size == len(text.VOCAB) == 57
    blocks = [set(b.tolist()) for b in (corpus.train_blocks, corpus.val_blocks, corpus.test_blocks)]
    assert not blocks[0] & blocks[1] and not blocks[0] & blocks[2] and not blocks[1] & blocks[2]
    assert len(blocks[1]) == len(blocks[2]) >= 9 and len(blocks[0]) >= 70
    assert "digits" in corpus.decode(corpus.tokens[:20000])


def test_lm_windows_stay_inside_their_split():
    task, corpus = get_task("charlm_transformer"), text.corpus()
    length = task.context + 1
    for blocks, count in ((corpus.val_blocks, 32), (corpus.test_blocks, 256), (corpus.train_blocks, 4)):
        starts = text.window_starts(blocks, length, count)
        assert set((starts // text.BLOCK).tolist()) <= set(blocks.tolist())
        assert set(((starts + length - 1) // text.BLOCK).tolist()) <= set(blocks.tolist())
    starts = text.random_starts(corpus.train_blocks, length, 500, torch.Generator().manual_seed(0))
    assert torch.equal(starts // text.BLOCK, (starts + length - 1) // text.BLOCK)
    assert set((starts // text.BLOCK).tolist()) <= set(corpus.train_blocks.tolist())


def test_lm_is_causal_and_starts_near_uniform():
    task = get_task("charlm_transformer")
    params = task.init_params(0)
    x = task.val_batch()["x"][:2]
    changed = x.clone()
    changed[:, 20:] = (changed[:, 20:] + 1) % task.vocab
    a, b = task._logits(params, x), task._logits(params, changed)
    assert torch.allclose(a[:, :20], b[:, :20], atol=1e-5) and not torch.allclose(a[:, 20:], b[:, 20:])
    assert abs(float(task.val_loss(params)) - math.log(57)) < 1.5


# --- numbers the other models are built from -------------------------------------------------


def test_group_norm_and_im2col_convolution_match_torch():
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(5, 16, 8, generator=gen)
    ours = group_norm(h, torch.ones(8), torch.zeros(8), 2)
    theirs = F.group_norm(h.transpose(1, 2).reshape(5, 8, 4, 4), 2).reshape(5, 8, 16).transpose(1, 2)
    assert torch.allclose(ours, theirs, atol=1e-5)
    w = torch.randn(9 * 8, 12, generator=gen)
    ours = _map_patches(h) @ w
    kernel = w.reshape(9, 8, 12).permute(2, 1, 0).reshape(12, 8, 3, 3)
    theirs = F.conv2d(h.transpose(1, 2).reshape(5, 8, 4, 4), kernel, padding=1).reshape(5, 12, 16).transpose(1, 2)
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_moons_density_and_flow_density_integrate_to_one(monkeypatch):
    # Coarse but sufficient: grid spacing 0.1 against a blur of 0.25, quadrature spacing pi/128.
    monkeypatch.setattr(flow, "QUADRATURE", 128)
    grid = torch.linspace(-8, 8, 161, dtype=torch.float64)
    xs, ys = torch.meshgrid(grid, grid, indexing="ij")
    points = torch.stack([xs.flatten(), ys.flatten()], -1)
    cell = float(grid[1] - grid[0]) ** 2
    assert float(flow.moons_log_density(points, 0.25).exp().sum()) * cell == pytest.approx(1.0, abs=1e-3)
    task = get_task("flow_moons")
    params = task.init_params(0)
    params["w3"] = params["w3"] * 100  # a far-from-identity flow: the log-determinant matters
    q = task.log_q(params, points.float()).double().exp().sum() * cell
    assert float(q) == pytest.approx(1.0, abs=0.01)


def test_flow_loss_is_a_kl_estimate_against_the_true_density():
    task = get_task("flow_moons")
    val = task.val_batch()
    assert torch.allclose(val["log_p"].double(), moons_log_density(val["x"], task.noise), atol=1e-4)
    # A model that is the truth scores ~0: the loss of the data's own log-density against itself.
    assert float((val["log_p"] - val["log_p"]).mean()) == 0.0
    train = rows(task._train["x"])
    assert not train & rows(val["x"]) and not train & rows(task._test["x"])


def test_vae_reconstruction_term_is_bernoulli_cross_entropy_minus_the_data_entropy():
    x = torch.tensor([[0.0, 0.25, 1.0, 0.5]])
    logits = torch.tensor([[-2.0, 0.3, 4.0, 0.0]])
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    kl = (torch.sigmoid(logits).log().neg() * x + torch.sigmoid(-logits).log().neg() * (1 - x)).sum() - _entropy(x).sum()
    assert float(bce - _entropy(x).sum()) == pytest.approx(float(kl), abs=1e-5) and float(kl) > 0
    assert float(_entropy(torch.tensor([0.0, 1.0])).sum()) == 0.0


def test_least_squares_spectrum_and_floor():
    task = get_task("linreg_illcond")
    x = task._train["x"].double()
    eigenvalues = torch.linalg.eigvalsh(x.T @ x / len(x))
    assert 0.5 * task.condition < float(eigenvalues[-1] / eigenvalues[0]) < 2 * task.condition
    best = {"w": task.w_star.float(), "b": torch.zeros(())}
    assert float(task.val_loss(best)) == pytest.approx(task.noise**2 / 2, rel=0.15)
    assert float(task.val_loss(task.init_params(0))) > 10 * task.noise**2
    train = rows(task._train["x"])
    assert not train & rows(task._val["x"]) and not train & rows(task._test["x"])


def test_softmax_regression_scores_the_unregularised_validation_ce():
    task = get_task("softmax_l2_digits")
    params = task.init_params(0)
    val = task.val_batch()
    regularised = float(task.loss(params, val))
    assert float(task.val_loss(params)) == pytest.approx(regularised - 0.5 * task.l2 * float((params["w"] ** 2).sum()), rel=1e-5)


def test_deep_mlp_inputs_span_the_declared_decades_and_start_at_unit_scale():
    task = get_task("mlp_deep_illcond")
    spread = math.log10(float(task._scale.max() / task._scale.min()))
    assert task.input_spread - 0.5 < spread <= task.input_spread
    pre_activation = task._x[:256] @ task.init_params(0)["w1"]
    assert 0.5 < float(pre_activation.std()) < 2.0
