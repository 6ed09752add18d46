"""Task library A (issue 18): the converted classical/digits tasks and the new recurrent,
embedding and coordinate tasks. For each: the v2 interface, determinism, disjoint splits,
variants, vmap(grad), and a short AdamW run that lowers the validation value."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import grad, vmap

from sandbox.harness import RunConfig, run_candidate
from sandbox.references import load_reference
from sandbox.tasks import TASK_CLASSES, get_task
from sandbox.tasks.base import FAMILIES
from sandbox.tasks.coordinate import generated_image
from sandbox.tasks.embedding import zipf_ids

torch.set_num_threads(1)

LIBRARY_A = [
    "noisy_quadratic", "quadratic_diagonal", "rosenbrock", "logreg_separable", "logreg_breast_cancer",
    "mlp_digits", "mlp_wine", "transformer_modadd", "deep_linear", "cnn_digits", "autoencoder_digits",
    "teacher_student", "rnn_adding", "mingru_sentiment", "mf_zipf", "siren_image", "fourier_signal",
]
NEW = ["rnn_adding", "mingru_sentiment", "mf_zipf", "siren_image", "fourier_signal"]


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def rows(t: torch.Tensor) -> set:
    return {tuple(r) for r in t.reshape(len(t), -1).tolist()}


@pytest.mark.parametrize("name", LIBRARY_A)
def test_interface_family_and_variant_space(name):
    cls = TASK_CLASSES[name]
    assert cls.family in FAMILIES
    assert 2 <= len(cls.variant_space) <= 4, "2-4 workload attributes"
    for attr, choices in cls.variant_space.items():
        assert getattr(cls, attr) in choices, f"{name}.{attr}: the default must be one of its choices"
    task = get_task(name)
    assert isinstance(task.val_metric_name, str) and task.val_metric_name
    value = float(task.val_loss(task.init_params(0)))
    assert math.isfinite(value) and value > 0


@pytest.mark.parametrize("name", LIBRARY_A)
def test_variants_differ_from_the_default_and_are_deterministic(name):
    cls = TASK_CLASSES[name]
    differing = [v for v in range(1, 6) if cls.variant_settings(v) != cls.variant_settings(0)]
    assert differing, f"{name}: variants 1-5 all equal the default workload"
    v = differing[0]
    one, again = cls(v), cls(v)
    assert one.settings == again.settings
    assert same(one.init_params(3), again.init_params(3))
    assert same(one.batch(4, 3), again.batch(4, 3)) and same(one.val_batch(), again.val_batch())
    start = float(one.loss(one.init_params(0), one.eval_batch()))
    assert math.isfinite(start) and start > 0


def _data_rows(task, batch: dict) -> set:
    """The rows a batch holds, as hashable tuples (inputs and targets side by side)."""
    if "mask" in batch:  # deep_linear: entries of one matrix, selected by masks
        return {tuple(ij) for ij in batch["mask"].nonzero().tolist()}
    if "u" in batch:  # mf_zipf: (user, item) pairs
        return set(zip(batch["u"].tolist(), batch["i"].tolist()))
    x = batch["x"]
    if x.dim() == 3 and task.family == "rnn":  # time-major sequences
        x = x.transpose(0, 1)
    return rows(x)


@pytest.mark.parametrize("name", [n for n in LIBRARY_A if n not in ("noisy_quadratic", "quadratic_diagonal", "rosenbrock")])
def test_train_validation_and_test_splits_are_disjoint(name):
    task = get_task(name)
    train_attr = next(a for a in ("_train", "_x") if hasattr(task, a))
    train = getattr(task, train_attr)
    train = train if isinstance(train, dict) else {"x": train}
    val = task.val_batch()
    test = getattr(task, "_test", None)
    train_rows, val_rows = _data_rows(task, train), _data_rows(task, val)
    assert val_rows and train_rows
    # Bundled image sets hold a few duplicate images; generated sets none.
    allowed = 10 if name in ("mlp_digits", "cnn_digits", "autoencoder_digits") else 0
    if name == "mingru_sentiment" or name == "rnn_adding":
        allowed = len(val_rows) // 50  # short random sequences can repeat by chance
    assert len(train_rows & val_rows) <= allowed
    if isinstance(test, dict) and ("x" in test or "mask" in test or "u" in test):
        test_rows = _data_rows(task, test)
        assert len(test_rows & val_rows) <= allowed and len(test_rows & train_rows) <= allowed


@pytest.mark.parametrize("name", NEW)
def test_vmap_grad_matches_per_config_grad(name):
    task = get_task(name)
    params = [task.init_params(s) for s in (0, 1)]
    stacked = {k: torch.stack([p[k] for p in params]) for k in params[0]}
    batch = task.batch(1, 0)
    batched = vmap(grad(task.loss), in_dims=(0, None))(stacked, batch)
    for i, p in enumerate(params):
        single = grad(task.loss)(p, batch)
        for k in p:
            assert torch.allclose(batched[k][i], single[k], atol=1e-5, rtol=1e-4), (name, k)


@pytest.mark.parametrize("name", NEW)
def test_a_short_adamw_run_lowers_the_validation_value(name):
    task = get_task(name)
    lr = 3e-2 if name in ("mf_zipf", "mingru_sentiment") else 1e-2
    (result,) = run_candidate(load_reference("adamw"), task, [RunConfig(lr, 0)], steps=40)
    assert result.ok
    assert result.val_losses[-1] < 0.9 * result.val_losses[0], (name, result.val_losses[0], result.val_losses[-1])


def test_minibatches_depend_on_seed_and_step_but_data_does_not():
    task = get_task("mf_zipf")
    assert not same(task.batch(1, 0), task.batch(1, 1)) and not same(task.batch(1, 0), task.batch(2, 0))
    assert same(TASK_CLASSES["mf_zipf"]().val_batch(), task.val_batch())


def test_zipf_ids_make_a_heavy_head_and_a_long_tail():
    ids = zipf_ids(20000, 500, 1.1, torch.Generator().manual_seed(0))
    counts = torch.bincount(ids, minlength=500).sort(descending=True).values
    assert counts[0] > 20 * counts[250].clamp_min(1)  # the head row is seen far more often
    assert int((counts <= 5).sum()) > 50  # and many rows almost never


def test_mf_zipf_tail_rows_get_sparse_gradients():
    task = get_task("mf_zipf")
    g = grad(task.loss)(task.init_params(0), task.batch(1, 0))
    touched = int((g["user"] != 0).any(-1).sum())
    assert 0 < touched < task.users // 2


def test_mingru_parallel_scan_equals_the_recurrence():
    task = get_task("mingru_sentiment")
    p, x = task.init_params(0), task.eval_batch()["x"][:, :32]
    u = torch.relu(x @ p["w_conv"] + p["b_conv"])
    z = torch.sigmoid(u @ p["w_gate"] + p["b_gate"])
    c = u @ p["w_cand"] + p["b_cand"]
    h = torch.zeros_like(c[0])
    for t in range(x.shape[0]):
        h = (1 - z[t]) * h + z[t] * c[t]
    assert torch.allclose(h @ p["w_out"] + p["b_out"], task._logits(p, x), atol=1e-5)


def test_adding_problem_targets_are_the_marked_sums():
    task = get_task("rnn_adding")
    x, y = task.val_batch()["x"], task.val_batch()["y"]
    assert torch.equal((x[..., 1] == 1).sum(0), torch.full((x.shape[1],), 2))
    assert torch.allclose((x[..., 0] * x[..., 1]).sum(0), y)
    # Predicting the mean target leaves the textbook baseline MSE of about 1/6.
    assert abs(float(((y - 1.0) ** 2).mean()) - 1 / 6) < 0.03


def test_logreg_separable_has_a_finite_optimum():
    """v2's L2 term: the regularised loss has a minimiser at a finite |w| (v1 had none)."""
    task = get_task("logreg_separable")
    w = torch.zeros(task.dim, requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        value = task.loss({"w": w, "b": b}, task.eval_batch())
        value.backward()
        return value

    opt.step(closure)
    norm = float(w.norm())
    assert 1.0 < norm < 50.0
    scaled = {"w": 2 * w.detach(), "b": b.detach()}
    assert float(task.loss(scaled, task.eval_batch())) > float(closure())  # growing |w| further hurts


def test_generated_image_is_fixed_and_has_structure():
    image = generated_image(32, 41)
    assert torch.equal(image, generated_image(32, 41))
    assert float(image.std()) > 0.1 and abs(float(image.mean())) < 1e-5
