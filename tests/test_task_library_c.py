"""Task library C (issue 18, a broader test tier): the GRU character LM, the batch-norm ResNet,
the embedding-bag topic classifier, the diabetes regression MLP, phase retrieval, the mixture
density network and the sorting transformer. Interface, determinism, variants, vmap(grad), a
short AdamW run, and the numbers each model is built from."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import grad, vmap

from sandbox.harness import RunConfig, run_candidate
from sandbox.references import load_reference
from sandbox.tasks import TASK_CLASSES, get_task, mdn
from sandbox.tasks.resnet_bn import batch_norm, shift_images
from tests.test_task_library_b import check_deterministic, check_interface, rows, tensors_equal

torch.set_num_threads(1)

FAMILY = {"charlm_gru": "rnn", "resnet_bn_digits": "cnn", "embedbag_topics": "embedding", "mlp_diabetes": "mlp",
          "phase_retrieval": "classical", "mdn_inverse_sine": "generative", "sort_transformer": "attention"}
NAMES = list(FAMILY)
SHORT_RUN_LR = {"charlm_gru": 3e-2, "resnet_bn_digits": 3e-2, "embedbag_topics": 3e-2, "mlp_diabetes": 3e-3,
                "phase_retrieval": 1e-2, "mdn_inverse_sine": 1e-2, "sort_transformer": 1e-2}


@pytest.mark.parametrize("name", NAMES)
def test_interface(name):
    check_interface(name, FAMILY[name], (250, 1000))


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_given_a_seed(name):
    check_deterministic(name)


@pytest.mark.parametrize("name", NAMES)
def test_variants_are_other_workloads_and_deterministic(name):
    cls = TASK_CLASSES[name]
    defaults = cls.variant_settings(0)
    assert cls.variant_settings(2) != defaults and cls.variant_settings(3) == cls.variant_settings(3)
    a, b, base = cls(2), cls(2), get_task(name)
    assert a.settings == cls.variant_settings(2) and a.key == f"{name}@2"
    assert tensors_equal(a.init_params(1), b.init_params(1)) and tensors_equal(a.batch(2, 1), b.batch(2, 1))
    shapes = lambda t: {k: tuple(v.shape) for k, v in t.init_params(1).items()}  # noqa: E731
    params = a.init_params(1)
    assert shapes(a) != shapes(base) or not tensors_equal(a.batch(2, 1), base.batch(2, 1)) \
        or float(a.val_loss(params)) != float(base.val_loss(params))


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


# --- the numbers the models are built from ---------------------------------------------------


def test_gru_matches_torch_gru_cell():
    task = get_task("charlm_gru")
    params = task.init_params(0)
    x = task.val_batch()["x"][:, :3]  # (context, 3)
    h_dim = task.hidden
    # torch's GRUCell on one-hot inputs: W_ih is our embedding (the input projection), gates (r, z, n).
    cell = torch.nn.GRUCell(task.vocab, h_dim)
    with torch.no_grad():
        cell.weight_ih.copy_(params["embed"].t())
        cell.bias_ih.copy_(params["bias"])
        cell.weight_hh.copy_(params["rec"].t())
        cell.bias_hh.copy_(torch.cat([torch.zeros(2 * h_dim), params["rec_bias"]]))
        h = torch.zeros(3, h_dim)
        states = []
        for t in range(x.shape[0]):
            h = cell(F.one_hot(x[t], task.vocab).float(), h)
            states.append(h)
        theirs = torch.stack(states, 1) @ params["out"] + params["out_bias"]
    assert torch.allclose(task._logits(params, x), theirs, atol=1e-5)


def test_gru_lm_is_causal_and_starts_near_uniform():
    task = get_task("charlm_gru")
    params = task.init_params(0)
    x = task.val_batch()["x"][:, :2]
    changed = x.clone()
    changed[6:] = (changed[6:] + 1) % task.vocab
    a, b = task._logits(params, x), task._logits(params, changed)
    assert torch.allclose(a[:, :6], b[:, :6]) and not torch.allclose(a[:, 6:], b[:, 6:])
    assert abs(float(task.val_loss(params)) - math.log(57)) < 1.0


def test_batch_norm_and_shift_augmentation():
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(6, 16, 4, generator=gen) * 3 + 1
    ours = batch_norm(h, torch.ones(4), torch.zeros(4))
    theirs = F.batch_norm(h.permute(0, 2, 1), None, None, training=True, eps=1e-5).permute(0, 2, 1)
    assert torch.allclose(ours, theirs, atol=1e-5)
    images = torch.arange(2 * 64, dtype=torch.float32).reshape(2, 64) + 1
    shifted = shift_images(images, torch.Generator().manual_seed(1)).reshape(2, 8, 8)
    for original, moved in zip(images.reshape(2, 8, 8), shifted):
        # Every shifted image is the original moved by at most one pixel each way, zeros shifted in.
        assert any(torch.equal(moved, F.pad(original, (1, 1, 1, 1))[di:di + 8, dj:dj + 8])
                   for di in range(3) for dj in range(3))
    task = get_task("resnet_bn_digits")
    params = task.init_params(0)
    assert torch.equal(params["gain2"], torch.zeros_like(params["gain2"]))  # the block starts as the identity


def test_embedding_bag_documents_carry_their_topic_and_a_row_is_the_bag_mean():
    task = get_task("embedbag_topics")
    tokens, labels = task.documents(200, torch.Generator().manual_seed(0))
    own = torch.stack([torch.isin(doc, task._topic_vocab[k]).float().mean() for doc, k in zip(tokens, labels)])
    other = torch.stack([torch.isin(doc, task._topic_vocab[(k + 1) % task.topics]).float().mean()
                         for doc, k in zip(tokens, labels)])
    assert float(own.mean()) > float(other.mean()) + 0.5 * task.signal
    # a batch row is the document's word frequencies: the mean of its embeddings is one matmul
    x = task.frequencies(tokens[:5])
    assert torch.allclose(x.sum(1), torch.ones(5))
    params = task.init_params(0)
    assert torch.allclose(x @ params["embed"], params["embed"][tokens[:5]].mean(1), atol=1e-6)
    assert len(rows(task.eval_batch()["x"]) & rows(task.val_batch()["x"])) == 0


def test_diabetes_targets_are_standardised_on_the_training_rows():
    task = get_task("mlp_diabetes")
    y = task._train["y"]
    assert abs(float(y.mean())) < 1e-5 and abs(float(y.std()) - 1) < 1e-5
    assert (len(y), len(task._val["y"]), len(task._test["y"])) == (354, 44, 44)


def test_phase_retrieval_is_solved_by_the_signal_up_to_sign():
    task = get_task("phase_retrieval")
    signal = task._signal
    for w in (signal, -signal):
        assert float(task.val_loss({"w": w})) < 1e-10 and task.test_metric({"w": w}, 0) == 0.0
    assert 0.5 < float(task.val_loss({"w": torch.zeros_like(signal)})) < 1.5  # normalised by E[(a.x)^4] = 3


def test_mdn_true_conditional_density_integrates_to_one_and_scores_zero():
    x = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    grid = (torch.arange(20000, dtype=torch.float64) + 0.5) / 20000
    density = mdn.conditional_log_density(grid[None, :].expand(3, -1).reshape(-1), x.repeat_interleave(20000), 0.05)
    assert torch.allclose(density.exp().reshape(3, -1).mean(1), torch.ones(3, dtype=torch.float64), atol=1e-3)
    task = get_task("mdn_inverse_sine")
    val = task.val_batch()
    assert float((val["log_p"] - val["log_p"]).mean()) == 0.0  # the truth against itself
    params = task.init_params(0)
    assert float(task.val_loss(params)) > 0.1
    assert not rows(task._train["t"][:, None]) & rows(val["t"][:, None])


def test_sorting_targets_are_the_sorted_inputs():
    task = get_task("sort_transformer")
    batch = task.batch(1, 0)
    assert torch.equal(batch["y"].argmax(-1), batch["x"].sort(dim=1).values)
    # no mask: the first position's logits depend on the last token
    params = task.init_params(0)
    x = batch["x"][:2]
    changed = x.clone()
    changed[:, -1] = (changed[:, -1] + 1) % task.vocab
    assert not torch.allclose(task._logits(params, x)[:, 0], task._logits(params, changed)[:, 0])
