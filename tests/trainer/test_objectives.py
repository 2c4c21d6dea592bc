"""Each objective against a direct, loop-based implementation of its paper's equation, and known values."""

import math

import pytest

torch = pytest.importorskip("torch")

from edgessl.trainer.objectives import barlow, masked, simclr, vicreg  # noqa: E402


def _z(n=6, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, d, generator=g, dtype=torch.float64)


# --- SimCLR eq. 1 ----------------------------------------------------------------------------------------
def ref_nt_xent(za, zb, tau):
    z = torch.cat([za, zb]).tolist()
    n2 = len(z)

    def cos(a, b):
        return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))

    total = 0.0
    for i in range(n2):
        j = (i + n2 // 2) % n2
        denom = sum(math.exp(cos(z[i], z[k]) / tau) for k in range(n2) if k != i)
        total += -math.log(math.exp(cos(z[i], z[j]) / tau) / denom)
    return total / n2


@pytest.mark.parametrize("tau", [0.1, 0.5, 1.0])
def test_nt_xent_matches_loop_reference(tau):
    za, zb = _z(seed=int(tau * 10))
    assert simclr.NTXentLoss(tau)(za, zb).item() == pytest.approx(ref_nt_xent(za, zb, tau), rel=1e-9)


def test_nt_xent_known_value_two_orthogonal_pairs():
    # two pairs of identical views, the pairs orthogonal: each anchor sees its positive at cos 1 and two
    # negatives at cos 0, so l = -log(e^{1/τ} / (e^{1/τ} + 2)) for every anchor.
    za = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    tau = 0.5
    expected = -math.log(math.exp(2) / (math.exp(2) + 2))
    assert simclr.nt_xent(za, za.clone(), tau).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError):
        simclr.NTXentLoss(0)


# --- VICReg ----------------------------------------------------------------------------------------------
def ref_vicreg(za, zb, lam=25.0, mu=25.0, nu=1.0, gamma=1.0, eps=1e-4):
    n, d = za.shape
    A, B = za.tolist(), zb.tolist()
    s = sum((A[i][j] - B[i][j]) ** 2 for i in range(n) for j in range(d)) / (n * d)

    def v(Z):
        out = 0.0
        for j in range(d):
            m = sum(Z[i][j] for i in range(n)) / n
            var = sum((Z[i][j] - m) ** 2 for i in range(n)) / (n - 1)
            out += max(0.0, gamma - math.sqrt(var + eps))
        return out / d

    def c(Z):
        means = [sum(Z[i][j] for i in range(n)) / n for j in range(d)]
        out = 0.0
        for a in range(d):
            for b in range(d):
                if a != b:
                    cov = sum((Z[i][a] - means[a]) * (Z[i][b] - means[b]) for i in range(n)) / (n - 1)
                    out += cov**2
        return out / d

    return lam * s + mu * (v(A) + v(B)) + nu * (c(A) + c(B))


def test_vicreg_matches_loop_reference():
    za, zb = _z(8, 4, seed=3)
    za = za * 0.5  # some dimensions below γ so the hinge is active
    assert vicreg.VICRegLoss()(za, zb).item() == pytest.approx(ref_vicreg(za, zb), rel=1e-9)


def test_vicreg_known_values():
    # identical, decorrelated views with unit std: only the variance term's ε shortfall remains
    z = torch.tensor([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]], dtype=torch.float64) * math.sqrt(3) / 2
    # per-dim unbiased var = 4·(3/4)/3 = 1, covariance 0
    assert vicreg.invariance_loss(z, z).item() == 0
    assert vicreg.covariance_loss(z).item() == pytest.approx(0, abs=1e-12)
    assert vicreg.variance_loss(z).item() == pytest.approx(0.0, abs=1e-12)  # sqrt(1 + 1e-4) > 1
    # collapsed embeddings: variance term = γ - sqrt(ε) per dim
    zc = torch.zeros(4, 3, dtype=torch.float64)
    assert vicreg.variance_loss(zc).item() == pytest.approx(1 - math.sqrt(1e-4))
    with pytest.raises(ValueError):
        vicreg.VICRegLoss(gamma=0)


# --- Barlow Twins ----------------------------------------------------------------------------------------
def ref_barlow(za, zb, lam=5e-3):
    n, d = za.shape
    A, B = za.tolist(), zb.tolist()

    def norm(Z):
        cols = []
        for j in range(d):
            m = sum(Z[i][j] for i in range(n)) / n
            sd = math.sqrt(sum((Z[i][j] - m) ** 2 for i in range(n)) / n)
            cols.append([(Z[i][j] - m) / (sd + 1e-5) for i in range(n)])
        return cols

    a, b = norm(A), norm(B)
    loss = 0.0
    for i in range(d):
        for j in range(d):
            c = sum(a[i][k] * b[j][k] for k in range(n)) / n
            loss += (1 - c) ** 2 if i == j else lam * c**2
    return loss


def test_barlow_matches_loop_reference():
    za, zb = _z(7, 4, seed=5)
    assert barlow.BarlowTwinsLoss()(za, zb).item() == pytest.approx(ref_barlow(za, zb), rel=1e-9)


def test_barlow_known_values():
    z = torch.tensor([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]], dtype=torch.float64)
    # identical decorrelated views: C = I (up to the 1e-5 in the std), loss ≈ 0
    assert barlow.BarlowTwinsLoss()(z, z).item() == pytest.approx(0, abs=1e-8)
    # anti-correlated views: C = -I, on-diagonal term 2² per dimension
    assert barlow.BarlowTwinsLoss()(z, -z).item() == pytest.approx(8.0, rel=1e-4)


# --- masked reconstruction -------------------------------------------------------------------------------
def test_patch_mask_masks_whole_patches_at_the_ratio():
    m = masked.random_patch_mask(16, 64, 8, 0.5, torch.Generator().manual_seed(0))
    assert m.shape == (16, 64)
    patches = m.view(16, 8, 8)
    assert torch.all(patches.all(-1) | (~patches).all(-1))  # whole patches only
    assert torch.all(patches.all(-1).sum(1) == 4)


def test_masked_mse_matches_loop_and_ignores_visible():
    g = torch.Generator().manual_seed(1)
    pred, target = torch.randn(3, 2, 10, generator=g), torch.randn(3, 2, 10, generator=g)
    mask = torch.rand(3, 10, generator=g) < 0.5
    num = den = 0.0
    for b in range(3):
        for c in range(2):
            for t in range(10):
                if mask[b, t]:
                    num += float(pred[b, c, t] - target[b, c, t]) ** 2
                    den += 1
    assert masked.masked_mse(pred, target, mask).item() == pytest.approx(num / den, rel=1e-6)
    pred2 = pred.clone()
    pred2[~mask.unsqueeze(1).expand_as(pred)] = 1e6  # visible samples do not count
    assert masked.masked_mse(pred2, target, mask).item() == pytest.approx(num / den, rel=1e-6)


def test_masked_ratio_range_validated():
    loss = masked.MaskedReconstructionLoss()
    assert (loss.min_ratio, loss.max_ratio) == (0.4, 0.75)
    x = torch.zeros(4, 3, 80)
    r = loss.sample_mask(x, torch.Generator().manual_seed(0)).float().mean().item()
    assert 0.39 <= r <= 0.76
    with pytest.raises(ValueError):
        masked.MaskedReconstructionLoss(min_ratio=0.8, max_ratio=0.5)
