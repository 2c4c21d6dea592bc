"""SS-GAN, CLIP-style and BEiT-style objectives against direct, loop-based implementations and known values."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgessl.trainer.objectives import beit, clip, ssgan  # noqa: E402
from edgessl.trainer.text import describe, hashed_features  # noqa: E402


def _sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v))


# -- SS-GAN ------------------------------------------------------------------------------------------
def test_transforms_are_identity_time_flip_sign_flip_both():
    x = torch.arange(12.0).reshape(1, 2, 6)
    views, r = ssgan.all_transforms(x)
    assert r.tolist() == [0, 1, 2, 3]
    assert torch.equal(views[0], x[0])
    assert torch.equal(views[1], torch.flip(x[0], [-1]))
    assert torch.equal(views[2], -x[0])
    assert torch.equal(views[3], -torch.flip(x[0], [-1]))
    with pytest.raises(ValueError, match="0..3"):
        ssgan.apply_transform(x, 4)


def test_ssgan_losses_match_loop_over_samples():
    g = torch.Generator().manual_seed(0)
    b = 5
    d_real, d_fake = torch.randn(b, generator=g), torch.randn(b, generator=g)
    q_real, q_fake = torch.randn(4 * b, 4, generator=g), torch.randn(4 * b, 4, generator=g)
    r = torch.arange(4).repeat_interleave(b)
    alpha, beta = 0.2, 1.0
    # V(G, D) = E log D(x) + E log(1 - D(G(z))); L_D = -V - β E log Q(r|x^r)
    v = sum(math.log(_sigmoid(float(d_real[i]))) for i in range(b)) / b + \
        sum(math.log(1 - _sigmoid(float(d_fake[i]))) for i in range(b)) / b  # fmt: skip
    log_q_real = sum(float(torch.log_softmax(q_real[i], 0)[r[i]]) for i in range(4 * b)) / (4 * b)
    ref_d = -v - beta * log_q_real
    # non-saturating generator: -E log D(G(z)) - α E log Q(r|G(z)^r)
    log_q_fake = sum(float(torch.log_softmax(q_fake[i], 0)[r[i]]) for i in range(4 * b)) / (4 * b)
    ref_g = -sum(math.log(_sigmoid(float(d_fake[i]))) for i in range(b)) / b - alpha * log_q_fake
    loss = ssgan.SSGANLoss(alpha, beta)
    assert float(loss.d_loss(d_real, d_fake, q_real, r)) == pytest.approx(ref_d, rel=1e-5)
    assert float(loss.g_loss(d_fake, q_fake, r)) == pytest.approx(ref_g, rel=1e-5)


def test_ssgan_known_values_at_indifference():
    # D outputs 0 (p = 1/2) and Q is uniform: L_D = 2 log 2 + β log 4, L_G = log 2 + α log 4
    z, q, r = torch.zeros(3), torch.zeros(12, 4), torch.arange(4).repeat_interleave(3)
    assert float(ssgan.discriminator_loss(z, z, q, r, beta=1.0)) == pytest.approx(2 * math.log(2) + math.log(4))
    assert float(ssgan.generator_loss(z, q, r, alpha=0.2)) == pytest.approx(math.log(2) + 0.2 * math.log(4))


# -- CLIP-style ------------------------------------------------------------------------------------------
def ref_clip(u, t, y, s):
    u = [ui / np.linalg.norm(ui) for ui in u]
    t = [tc / np.linalg.norm(tc) for tc in t]
    b, k = len(u), len(t)
    l_it = 0.0
    for i in range(b):
        den = sum(math.exp(s * float(u[i] @ t[c])) for c in range(k))
        l_it += -math.log(math.exp(s * float(u[i] @ t[y[i]])) / den)
    l_it /= b
    l_ti, classes = 0.0, sorted(set(y))
    for c in classes:
        den = sum(math.exp(s * float(t[c] @ u[j])) for j in range(b))
        pos = [i for i in range(b) if y[i] == c]
        l_ti += sum(-math.log(math.exp(s * float(t[c] @ u[i])) / den) for i in pos) / len(pos)
    l_ti /= len(classes)
    return 0.5 * (l_it + l_ti)


@pytest.mark.parametrize("scale", [1.0, 14.3])
def test_clip_loss_matches_loop_reference(scale):
    g = torch.Generator().manual_seed(1)
    u, t = torch.randn(9, 6, generator=g), torch.randn(4, 6, generator=g)
    y = torch.tensor([0, 1, 1, 3, 0, 3, 3, 1, 0])  # class 2 absent from the batch
    got = float(clip.clip_loss(u, t, y, torch.tensor(math.log(scale))))
    assert got == pytest.approx(ref_clip(u.numpy(), t.numpy(), y.tolist(), scale), rel=1e-5)


def test_clip_reduces_to_symmetric_clip_with_unique_pairs():
    # one window per class and perfectly aligned unit vectors: logits s·I, both directions equal
    s = 10.0
    e = torch.eye(3)
    want = -math.log(math.exp(s) / (math.exp(s) + 2))
    assert float(clip.clip_loss(e, e, torch.arange(3), torch.tensor(math.log(s)))) == pytest.approx(want, rel=1e-3)


def test_clip_temperature_starts_at_007_and_is_clamped():
    m = clip.CLIPLoss()
    assert float(1 / m.logit_scale.detach().exp()) == pytest.approx(0.07)
    with torch.no_grad():
        m.logit_scale.fill_(10.0)
    e = torch.eye(2)
    assert float(m(e, e, torch.arange(2)).detach()) == pytest.approx(float(clip.clip_loss(e, e, torch.arange(2),
                                                                                 torch.tensor(math.log(100.0)))))  # fmt: skip


def test_hashed_text_features_share_words_and_are_deterministic():
    f = hashed_features(["walking up the stairs", "walking down the stairs", "lying down still"])
    assert np.allclose(np.linalg.norm(f, axis=1), 1)
    assert np.array_equal(f, hashed_features(["walking up the stairs", "walking down the stairs", "lying down still"]))
    assert f[0] @ f[1] > f[0] @ f[2] > -1
    with pytest.raises(ValueError, match="no words"):
        hashed_features(["?!"])


def test_describe_defaults_and_overrides(tmp_path):
    assert describe(["left", "gesture_3"]) == ["stroke left", "gesture 3"]
    assert describe(["square"]) == ["stroke up, then stroke right, then stroke down, then stroke left"]
    p = tmp_path / "d.json"
    p.write_text('{"gesture_3": "a circle"}')
    assert describe(["gesture_3"], p) == ["a circle"]
    p.write_text("[1, 2")
    with pytest.raises(ValueError, match="expected a JSON object"):
        describe(["x"], p)


# -- BEiT-style ------------------------------------------------------------------------------------------
def test_patches_and_tokenize_match_loops():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 20, generator=g)
    p = beit.patches(x, 8)  # 2 whole patches, trailing 4 samples dropped
    assert p.shape == (2, 2, 24)
    for b in range(2):
        for j in range(2):
            assert torch.equal(p[b, j], x[b, :, j * 8 : (j + 1) * 8].reshape(-1))
    cb = torch.randn(5, 24, generator=g)
    tok = beit.tokenize(x, cb, 8)
    for b in range(2):
        for j in range(2):
            d = [float(((p[b, j] - cb[k]) ** 2).sum()) for k in range(5)]
            assert int(tok[b, j]) == int(np.argmin(d))


def test_kmeans_recovers_separated_clusters():
    g = torch.Generator().manual_seed(3)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    v = torch.cat([c + 0.1 * torch.randn(50, 2, generator=g) for c in centres])
    got = beit.kmeans(v, 3, generator=g)
    d = torch.cdist(centres, got)
    assert float(d.min(1).values.max()) < 0.2
    with pytest.raises(ValueError, match="at least k"):
        beit.kmeans(v[:2], 3)


def test_masked_token_loss_matches_loop_and_ignores_visible_patches():
    g = torch.Generator().manual_seed(4)
    logits, tokens = torch.randn(2, 5, 7, generator=g), torch.randint(0, 7, (2, 5), generator=g)
    mask = torch.tensor([[True, False, True, False, False], [False, False, False, True, True]])
    terms = [-float(torch.log_softmax(logits[b, j], 0)[tokens[b, j]]) for b in range(2) for j in range(5) if mask[b, j]]
    assert float(beit.masked_token_loss(logits, tokens, mask)) == pytest.approx(sum(terms) / len(terms), rel=1e-6)
    changed = logits.clone()
    changed[~mask] = 100.0  # visible patches do not count
    assert float(beit.masked_token_loss(changed, tokens, mask)) == pytest.approx(sum(terms) / len(terms), rel=1e-6)
    with pytest.raises(ValueError, match="no patch"):
        beit.masked_token_loss(logits, tokens, torch.zeros_like(mask))
