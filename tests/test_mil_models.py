"""MIL networks: padding and permutation invariance, exact decompositions, losses."""

import numpy as np
import pytest
import torch

from lnmkit.mil import ARCHITECTURES, build_model, collate_bags, cox_partial_likelihood, smooth_top1_svm_loss
from lnmkit.mil._models import masked_softmax

D = 12
TASKS = ("lnm", "otc", "survival")


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    # Tiny networks: a second intra-op thread only adds synchronisation cost on busy CI cores.
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _bags(seed=0, sizes=(7, 23, 15)):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, D)).astype(np.float32) for n in sizes]


def _model(arch, dropout=0.0):
    torch.manual_seed(0)
    return build_model(arch, D, hidden=16, dropout=dropout, tasks=TASKS).eval()


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_padding_never_changes_outputs(arch):
    model = _model(arch)
    bags = _bags()
    x, mask = collate_bags(bags)
    # Extra padded rows full of large garbage (and NaN) must be ignored exactly.
    extra = torch.full((x.shape[0], 9, D), 1e4)
    extra[:, ::2] = float("nan")
    x_pad = torch.cat([x, extra], dim=1)
    mask_pad = torch.cat([mask, torch.zeros(x.shape[0], 9, dtype=torch.bool)], dim=1)
    with torch.no_grad():
        batched = model(x_pad, mask_pad)
        for i, bag in enumerate(bags):
            alone = model(torch.from_numpy(bag)[None], None)
            n = bag.shape[0]
            for t in TASKS:
                np.testing.assert_allclose(batched["logits"][t][i], alone["logits"][t][0], atol=1e-6, rtol=1e-5)
                np.testing.assert_allclose(batched["contribution"][t][i, :n], alone["contribution"][t][0],
                                           atol=1e-6, rtol=1e-5)
                assert torch.all(batched["contribution"][t][i, n:] == 0)
            np.testing.assert_allclose(batched["attention"][i, :n], alone["attention"][0], atol=1e-6, rtol=1e-5)
            np.testing.assert_allclose(batched["embedding"][i], alone["embedding"][0], atol=1e-6, rtol=1e-5)
            assert torch.all(batched["attention"][i, n:] == 0)
            assert torch.isfinite(batched["embedding"][i]).all()


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_tile_order_does_not_matter(arch):
    model = _model(arch)
    bag = torch.from_numpy(_bags(sizes=(31,))[0])[None]
    perm = torch.randperm(31, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        a, b = model(bag), model(bag[:, perm])
    for t in TASKS:
        np.testing.assert_allclose(a["logits"][t], b["logits"][t], atol=1e-6, rtol=1e-5)
    np.testing.assert_allclose(a["attention"][0, perm], b["attention"][0], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_contributions_sum_to_logit_and_attention_to_one(arch):
    model = _model(arch)
    x, mask = collate_bags(_bags())
    with torch.no_grad():
        out = model(x, mask)
    np.testing.assert_allclose(out["attention"].sum(1), np.ones(3), atol=1e-6)
    for t in TASKS:
        bias = model.heads[t].bias.detach()
        np.testing.assert_allclose(out["contribution"][t].sum(1) + bias, out["logits"][t], atol=1e-5)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_training_loss_ignores_padding(arch):
    # dropout=0 and train mode: the CLAM instance loss is active and must be padding-free too.
    model = _model(arch, dropout=0.0).train()
    bags = _bags(sizes=(20, 40))
    x, mask = collate_bags(bags)
    x_pad = torch.cat([x, torch.randn(2, 13, D) * 50], dim=1)
    mask_pad = torch.cat([mask, torch.zeros(2, 13, dtype=torch.bool)], dim=1)
    targets = {"lnm": torch.tensor([1.0, 0.0]), "otc": torch.tensor([float("nan"), 1.0]),
               "time": torch.tensor([5.0, 9.0]), "event": torch.tensor([1.0, 0.0])}
    l1, parts1 = model.compute_loss(model(x, mask), targets)
    l2, parts2 = model.compute_loss(model(x_pad, mask_pad), targets)
    np.testing.assert_allclose(l1.item() if not l1.requires_grad else l1.detach().item(), l2.detach().item(), atol=1e-6, rtol=1e-5)
    assert set(parts1) == set(parts2)
    if arch == "clam-sb":
        assert "instance" in parts1


def test_otc_loss_ignores_node_positive_and_unknown():
    model = _model("abmil")
    x, mask = collate_bags(_bags(sizes=(5, 6, 7, 8)))
    out = model(x, mask)
    base = {"lnm": torch.tensor([1.0, 0.0, 1.0, 0.0]), "otc": torch.tensor([1.0, 0.0, 0.0, float("nan")]),
            "time": torch.ones(4), "event": torch.zeros(4)}
    changed = dict(base, otc=torch.tensor([0.0, 0.0, 1.0, 1.0]))
    changed["otc"][3] = float("nan")
    _, p1 = model.compute_loss(out, base)
    _, p2 = model.compute_loss(out, changed)
    assert float(p1["otc"]) == pytest.approx(float(p2["otc"]), abs=0)
    # ...while the one eligible patient (pN0, known OTC) does count.
    flipped = dict(base, otc=torch.tensor([1.0, 1.0, 0.0, float("nan")]))
    _, p3 = model.compute_loss(out, flipped)
    assert float(p3["otc"]) != pytest.approx(float(p1["otc"]))


def _cox_reference(risk, time, event):
    total, n_ev = 0.0, 0
    for i in range(len(risk)):
        if event[i]:
            at_risk = time >= time[i]
            total -= risk[i] - np.log(np.exp(risk[at_risk]).sum())
            n_ev += 1
    return total / max(n_ev, 1)


def test_cox_partial_likelihood_matches_breslow_reference():
    rng = np.random.default_rng(1)
    risk = rng.normal(size=12)
    time = rng.choice([3.0, 5.0, 8.0, 13.0], size=12)  # many tied times
    event = rng.integers(0, 2, size=12).astype(float)
    got = cox_partial_likelihood(torch.tensor(risk), torch.tensor(time), torch.tensor(event))
    assert float(got) == pytest.approx(_cox_reference(risk, time, event), rel=1e-10)
    none = cox_partial_likelihood(torch.tensor(risk), torch.tensor(time), torch.zeros(12))
    assert float(none) == 0.0


def test_cox_partial_likelihood_against_lifelines():
    lifelines = pytest.importorskip("lifelines")
    import pandas as pd

    rng = np.random.default_rng(2)
    x = rng.normal(size=60)
    time = np.round(rng.exponential(10 * np.exp(-0.8 * x)), 0) + 1  # rounding creates ties
    event = (rng.uniform(size=60) < 0.7).astype(float)
    df = pd.DataFrame({"x": x, "T": time, "E": event})
    cph = lifelines.CoxPHFitter(baseline_estimation_method="breslow").fit(df, "T", "E")
    beta = float(cph.params_["x"])
    # lifelines maximises the Efron likelihood; ours is Breslow, so compare at our optimum instead:
    # the Breslow optimum must sit close to lifelines' Efron beta when ties are few.
    grid = np.linspace(beta - 0.5, beta + 0.5, 201)
    nll = [float(cox_partial_likelihood(torch.tensor(b * x), torch.tensor(time), torch.tensor(event))) for b in grid]
    assert abs(grid[int(np.argmin(nll))] - beta) < 0.08


def test_smooth_svm_tends_to_hinge():
    scores = torch.tensor([[2.0, 0.5], [0.1, 0.3], [1.0, 1.0]])
    target = torch.tensor([0, 0, 1])
    hinge = torch.clamp(1 + scores.gather(1, (1 - target)[:, None]).squeeze(1) - scores.gather(1, target[:, None]).squeeze(1), min=0)
    got = smooth_top1_svm_loss(scores, target, tau=1e-3)
    np.testing.assert_allclose(got, hinge, atol=1e-2)
    assert torch.all(smooth_top1_svm_loss(scores, target, tau=1.0) >= hinge - 1e-6)


def test_masked_softmax_is_exact():
    logits = torch.tensor([[1.0, 2.0, 50.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    out = masked_softmax(logits, mask)
    np.testing.assert_allclose(out, [[1 / (1 + np.e), np.e / (1 + np.e), 0], [1, 0, 0]], atol=1e-7)


def test_build_model_rejects_unknown_names():
    with pytest.raises(ValueError, match="arch must be one of"):
        build_model("transmil2", D)
    with pytest.raises(ValueError, match="tasks must be distinct"):
        build_model("abmil", D, tasks=("lnm", "stage"))
    with pytest.raises(ValueError, match="must include 'lnm'"):
        build_model("clam-sb", D, tasks=("otc",))


def test_collate_bags_pads_and_masks():
    x, mask = collate_bags([np.ones((2, 3)), np.ones((4, 3))])
    assert x.shape == (2, 4, 3) and mask.tolist() == [[True, True, False, False], [True] * 4]
    assert float(x[0, 2:].abs().sum()) == 0.0


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_packed_forward_equals_padded_forward(arch):
    model = _model(arch)
    bags = _bags(sizes=(7, 23, 15, 1))
    x, mask = collate_bags(bags)
    with torch.no_grad():
        padded = model(x, mask)
        packed = model.forward_packed(torch.from_numpy(np.concatenate(bags)), [b.shape[0] for b in bags])
        same_length = model.forward_packed(torch.from_numpy(np.concatenate(bags[:1] * 3)), [7, 7, 7])
    assert packed["attention"].shape == padded["attention"].shape
    for t in TASKS:
        np.testing.assert_allclose(packed["logits"][t], padded["logits"][t], atol=1e-6, rtol=1e-5)
        np.testing.assert_allclose(packed["contribution"][t], padded["contribution"][t], atol=1e-6, rtol=1e-5)
        np.testing.assert_allclose(same_length["logits"][t], padded["logits"][t][[0, 0, 0]], atol=1e-6, rtol=1e-5)
    np.testing.assert_allclose(packed["attention"], padded["attention"], atol=1e-6, rtol=1e-5)
    np.testing.assert_allclose(packed["embedding"], padded["embedding"], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("arch", ["abmil", "clam-sb"])
def test_packed_training_loss_and_gradients_equal_padded(arch):
    bags = _bags(sizes=(9, 30, 16))
    targets = {"lnm": torch.tensor([1.0, 0.0, 1.0]), "otc": torch.tensor([float("nan"), 1.0, float("nan")]),
               "time": torch.tensor([5.0, 9.0, 2.0]), "event": torch.tensor([1.0, 0.0, 1.0])}
    grads = []
    for packed in (False, True):
        model = _model(arch).train()  # dropout 0: training mode without randomness
        if packed:
            out = model.forward_packed(torch.from_numpy(np.concatenate(bags)), [b.shape[0] for b in bags])
        else:
            out = model(*collate_bags(bags))
        loss, _ = model.compute_loss(out, targets)
        loss.backward()
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    assert len(grads[0]) == len(grads[1])
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-4)


def test_packed_forward_rejects_bad_lengths():
    model = _model("abmil")
    with pytest.raises(ValueError, match="sum\\(lengths\\)"):
        model.forward_packed(torch.zeros(10, D), [4, 5])
    with pytest.raises(ValueError, match="length >= 1"):
        model.forward_packed(torch.zeros(10, D), [10, 0])
