import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgessl.trainer import augment as A  # noqa: E402


def _x(B=8, C=3, T=64, seed=0):
    return torch.randn(B, C, T, generator=torch.Generator().manual_seed(seed))


def g(seed=0):
    return torch.Generator().manual_seed(seed)


def test_flips():
    x = _x()
    assert torch.equal(A.flip_time(x), x[..., torch.arange(63, -1, -1)])
    assert torch.equal(A.flip_sign(x), -x)
    assert torch.equal(A.flip_time(A.flip_time(x)), x)


def test_blockout_zeroes_exactly_the_block():
    x = _x() + 10  # no natural zeros
    y = A.blockout(x, g(), fraction=0.25)
    n = round(0.25 * 64)
    for b in range(len(x)):
        zero = (y[b] == 0).all(0)
        idx = torch.nonzero(zero).flatten()
        assert len(idx) == n and torch.all(torch.diff(idx) == 1)  # one contiguous block of λ·T
        assert torch.equal(y[b][:, ~zero], x[b][:, ~zero])


def test_scaled_noise_scales_with_channel_std():
    x = torch.zeros(512, 2, 256)
    x[:, 0] = torch.randn(512, 256) * 10
    x[:, 1] = torch.randn(512, 256) * 0.1
    d = A.scaled_noise(x, g(), sigma=0.5) - x
    ratio = d[:, 0].std() / d[:, 1].std()
    assert ratio == pytest.approx(100, rel=0.05)


def test_jitter_std():
    x = torch.zeros(64, 3, 512)
    assert (A.jitter(x, g(), sigma=0.05)).std() == pytest.approx(0.05, rel=0.03)


def test_crop_resize_of_a_ramp_is_a_ramp_inside_the_original():
    x = torch.linspace(0, 1, 100).expand(16, 1, 100).contiguous()
    y = A.crop_resize(x, g(), min_scale=0.5)
    d = torch.diff(y, dim=-1)
    assert torch.allclose(d, d[..., :1].expand_as(d), atol=1e-5)  # still linear
    span = y[..., -1] - y[..., 0]
    assert torch.all(span >= 0.5 - 1e-5) and torch.all(span <= 1 + 1e-5)
    assert y.min() >= 0 and y.max() <= 1


def test_magnitude_warp_factor_is_one_plus_lambda_sine():
    x = torch.ones(32, 3, 128)
    y = A.magnitude_warp(x, g(), sigma=0.3)
    assert torch.all((y - 1).abs() <= 0.3 + 1e-6)
    # the factor is a sinusoid of one cycle: its mean over the window is 1
    assert torch.allclose(y.mean(-1), torch.ones(32, 3), atol=1e-5)
    # phases differ per channel
    assert not torch.allclose(y[:, 0], y[:, 1])


def test_time_warp_monotone_and_keeps_endpoints():
    pos = A.time_warp_positions(64, 100, g(), torch.device("cpu"), sigma=0.5)
    assert torch.all(torch.diff(pos, dim=1) > 0)
    assert torch.allclose(pos[:, 0], torch.zeros(64)) and torch.allclose(pos[:, -1], torch.full((64,), 99.0))
    x = _x(64, 3, 100)
    y = A.time_warp(x, g(), sigma=0.5)
    assert torch.allclose(y[..., 0], x[..., 0], atol=1e-5) and torch.allclose(y[..., -1], x[..., -1], atol=1e-4)
    ramp = torch.linspace(0, 1, 100).expand(4, 1, 100).contiguous()
    assert torch.all(torch.diff(A.time_warp(ramp, g()), dim=-1) >= -1e-6)  # monotone warp of a ramp stays monotone


@pytest.mark.parametrize("omega", [0.1, 0.7, 1.5, 2.5])
def test_smooth_frequency_response_matches_H(omega):
    lam = torch.tensor([0.0, 0.2, 0.5])
    t = torch.arange(400, dtype=torch.float64)
    x = torch.cos(omega * t + 0.3).expand(3, 1, 400).contiguous()
    y = A.smooth(x, lam=lam)
    H = (1 - lam + lam * math.cos(omega)).double()
    inner = slice(1, -1)  # edges are replicated, the interior is the pure filter
    assert torch.allclose(y[:, 0, inner], H[:, None] * x[:, 0, inner], atol=1e-9)


def test_random_crop_is_a_contiguous_sub_window():
    x = torch.arange(50.0).expand(10, 2, 50).contiguous()
    y = A.random_crop(x, g(), length=20)
    assert y.shape == (10, 2, 20)
    assert torch.all(torch.diff(y, dim=-1) == 1)
    with pytest.raises(ValueError, match="length must be in"):
        A.random_crop(x, g(), length=60)


def test_probability_applies_per_sample_and_seeding():
    x = _x(1000)
    y = A.Augmentation("flip_sign", p=0.3)(x, g(1))
    flipped = (y == -x).all(-1).all(-1)
    assert 0.25 < flipped.float().mean() < 0.35
    assert torch.equal(y, A.Augmentation("flip_sign", p=0.3)(x, g(1)))


def test_pipeline_fresh_views_each_call_and_deterministic_per_seed():
    pipe = A.default_pipeline()
    x = _x(32, 3, 315)
    gen = g(5)
    v1, v2 = pipe(x, gen), pipe(x, gen)
    assert not torch.allclose(v1, v2)
    assert torch.equal(v1, pipe(x, g(5)))
    assert v1.shape == x.shape and torch.isfinite(v1).all()


def test_errors():
    with pytest.raises(ValueError, match=r"\[batch, channels, time\]"):
        A.jitter(torch.zeros(3, 10))
    with pytest.raises(ValueError, match="unknown augmentation"):
        A.Augmentation("rotate90")  # not an op: rotate takes degrees
    with pytest.raises(ValueError, match="probability"):
        A.Augmentation("jitter", p=2)


def test_batched_equals_per_sample():
    """Per-sample parameters in a batch give what each sample gets alone."""
    x = _x(4, 3, 64)
    y_batch = A.smooth(x, lam=torch.full((4,), 0.4))
    y_one = torch.cat([A.smooth(x[i : i + 1], lam=torch.tensor([0.4])) for i in range(4)])
    assert torch.allclose(y_batch, y_one)
    np.testing.assert_allclose(y_batch.numpy(), y_one.numpy())


def test_axis_triads_by_name():
    har = ["body_acc_x", "body_acc_y", "body_acc_z", "body_gyro_x", "body_gyro_y", "body_gyro_z",
           "total_acc_x", "total_acc_y", "total_acc_z"]  # fmt: skip
    assert A.axis_triads(har) == ((0, 1, 2), (3, 4, 5), (6, 7, 8))
    assert A.axis_triads(["acc_z", "acc_x", "temp", "acc_y", "gyro_x"]) == ((1, 3, 0),)  # x, y, z order
    assert A.axis_triads(["Acc-X", "Acc-Y", "Acc-Z"]) == ((0, 1, 2),)
    assert A.axis_triads(["acc_x", "acc_y", "pressure"]) == ()


def test_rotation_matrices_equal_scipy_rotvec_on_the_same_draws():
    from scipy.spatial.transform import Rotation

    R = A.rotation_matrices(200, 30.0, g(3))
    gen = g(3)  # the same draws, in the same order, turned into rotation vectors for scipy
    axis = torch.randn(200, 3, generator=gen)
    axis = axis / axis.norm(dim=1, keepdim=True)
    theta = math.radians(30.0) * (2 * torch.rand(200, generator=gen) - 1)
    ref = Rotation.from_rotvec((axis * theta[:, None]).double().numpy()).as_matrix()
    np.testing.assert_allclose(R.double().numpy(), ref, atol=1e-6)
    angles = np.degrees(np.abs(theta.numpy()))
    assert angles.max() <= 30.0 and angles.max() > 25.0  # bounded, and the range is used
    np.testing.assert_allclose(torch.linalg.det(R).numpy(), 1.0, atol=1e-5)
    # a hand-made case: 90 degrees about z takes x to y
    Rz = torch.tensor(Rotation.from_rotvec([0, 0, math.pi / 2]).as_matrix(), dtype=torch.float32)
    x = torch.tensor([[[1.0], [0.0], [0.0]]])
    assert torch.allclose(Rz @ x, torch.tensor([[[0.0], [1.0], [0.0]]]), atol=1e-6)


def test_rotate_turns_every_triad_of_a_window_by_the_same_rotation():
    B, T = 6, 40
    acc = _x(B, 3, T, seed=1)
    gyro = _x(B, 3, T, seed=2)
    other = _x(B, 1, T, seed=3)
    x = torch.cat([gyro[:, :1], acc, other, gyro[:, 1:]], 1)  # gyro x, acc x/y/z, other, gyro y/z
    triads = ((1, 2, 3), (0, 5, 6))
    y = A.rotate(x, g(7), max_degrees=40.0, triads=triads)
    R = A.rotation_matrices(B, 40.0, g(7))  # the op's draws
    assert torch.allclose(y[:, [1, 2, 3]], R @ acc, atol=1e-5)
    assert torch.allclose(y[:, [0, 5, 6]], R @ gyro, atol=1e-5)  # the same rotation for the other sensor
    assert torch.equal(y[:, 4:5], other)  # channels of no triad untouched
    # per sample: the rotation recovered from acc by least squares maps gyro too (one device, one pose)
    for b in range(B):
        Rb = torch.linalg.lstsq(acc[b].T, y[b, [1, 2, 3]].T).solution.T
        assert torch.allclose(Rb @ gyro[b], y[b, [0, 5, 6]], atol=1e-4)
    assert torch.allclose(y[:, [1, 2, 3]].norm(dim=1), acc.norm(dim=1), atol=1e-5)  # lengths kept
    assert torch.allclose(A.rotate(acc, g(0), max_degrees=0.0), acc)  # no angle, no change
    assert not torch.allclose(A.rotate(acc, g(0)), acc)


def test_rotate_errors():
    with pytest.raises(ValueError, match="triads of a 6-channel window"):
        A.rotate(_x(2, 6, 10))
    with pytest.raises(ValueError, match="at least one"):
        A.rotate(_x(2, 6, 10), triads=())
    with pytest.raises(ValueError, match=r"3 channel indices in \[0, 6\)"):
        A.rotate(_x(2, 6, 10), triads=((0, 1, 6),))
