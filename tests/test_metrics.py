"""Swap-quality figures (facejax/metrics.py) on real GRID faces and synthetic references."""

import math
import os

import cv2
import numpy as np
import pytest

from facejax import metrics
from facejax.faces import align, detect, find, identity, landmarks as lm, video
from tests.helpers import GRID

CLIP_A = os.path.join(GRID, "GRID_bbaf2n.mpg")
CLIP_B = os.path.join(GRID, "GRID_brbk7n.mpg")
OTHER = os.path.join(GRID, "GRID_lbax4n.mpg")


@pytest.fixture(scope="module")
def grid_face():
    """A real aligned 96 px face crop (float in [0, 1]) from a GRID frame, and the frame."""
    frame = video.FrameSource(CLIP_A).read(10)
    face, _ = find.FaceFinder(detect.make_detector("hog"), min_face=0)(frame)
    m = align.align_matrix(face.landmarks, 96, 0.6)
    return align.crop(frame, m, 96).astype(np.float64) / 255.0, frame, face


def _reference_ssim(x, y, data_range=1.0):
    """SSIM written out from Wang et al. (2004) with scikit-image's defaults, in plain numpy:
    separable 11-tap Gaussian (sigma 1.5) by explicit sums, population (co)variances."""
    t = np.arange(-5, 6)
    g = np.exp(-t ** 2 / (2 * 1.5 ** 2))
    g /= g.sum()

    def filt(im):
        p = np.pad(im, 5, mode="symmetric")
        rows = sum(g[k] * p[:, k:k + im.shape[1]] for k in range(11))
        return sum(g[k] * rows[k:k + im.shape[0], :] for k in range(11))

    out = []
    for c in range(x.shape[2]):
        a, b = x[..., c], y[..., c]
        ma, mb = filt(a), filt(b)
        va, vb = filt(a * a) - ma ** 2, filt(b * b) - mb ** 2
        cab = filt(a * b) - ma * mb
        c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
        s = (2 * ma * mb + c1) * (2 * cab + c2) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2))
        out.append(s[5:-5, 5:-5].mean())
    return float(np.mean(out))


def test_detail_correlation_tells_detail_from_noise(grid_face):
    """Against numpy's correlation of the written-out Laplacians; the face itself scores 1,
    blur less, and noise with more Laplacian variance than the face's own scores near 0
    (where laplacian_variance calls it the sharper)."""
    x, _, _ = grid_face
    face = (x * 255 + 0.5).astype(np.uint8)
    mask = np.zeros((96, 96), np.uint8)
    mask[20:70, 25:75] = 255

    def lap(im):
        g = cv2.cvtColor(im, cv2.COLOR_RGB2GRAY).astype(np.float64)
        return (g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4 * g[1:-1, 1:-1])

    blurred = cv2.GaussianBlur(face, (0, 0), 1.5)
    ref = np.corrcoef(lap(face)[21:67, 26:72].ravel(), lap(blurred)[21:67, 26:72].ravel())[0, 1]
    assert metrics.detail_correlation(face, blurred, mask) == pytest.approx(ref, rel=1e-9)
    assert metrics.detail_correlation(face, face, mask) == pytest.approx(1.0)
    noise = np.random.default_rng(0).normal(0, 12, face.shape)
    noisy = np.clip(cv2.GaussianBlur(face, (0, 0), 2.0) + noise, 0, 255).astype(np.uint8)
    assert metrics.laplacian_variance(noisy, mask) > metrics.laplacian_variance(face, mask)
    assert abs(metrics.detail_correlation(face, noisy, mask)) < 0.5 * ref
    assert math.isnan(metrics.detail_correlation(face, face, np.zeros_like(mask)))


def test_laplacian_variance_against_numpy_and_under_blur(grid_face):
    """The 4-neighbour Laplacian written out in numpy (inside a mask away from the border);
    blur lowers it, and more blur lowers it more."""
    x, _, _ = grid_face
    face = (x * 255 + 0.5).astype(np.uint8)
    grey = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY).astype(np.float64)
    lap = (grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:]
           - 4 * grey[1:-1, 1:-1])
    mask = np.zeros((96, 96), np.uint8)
    mask[20:70, 25:75] = 255
    # Inside the mask shrunk by 2 px: rows 22-67, columns 27-72; lap[i] is grey row i + 1.
    ref = lap[21:67, 26:72].var()
    assert metrics.laplacian_variance(face, mask) == pytest.approx(ref, rel=1e-9)
    values = [metrics.laplacian_variance(cv2.GaussianBlur(face, (0, 0), s) if s else face,
                                         mask) for s in (0, 1, 2)]
    assert values[0] > 2 * values[1] > 0 and values[1] > values[2]
    assert math.isnan(metrics.laplacian_variance(face, np.zeros_like(mask)))


def test_psnr_ssim_identical_noise_blur(grid_face):
    x, _, _ = grid_face
    assert metrics.psnr(x, x) == math.inf
    assert metrics.ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    rng = np.random.default_rng(0)
    previous_psnr, previous_ssim = math.inf, 1.0
    for sigma in (0.01, 0.03, 0.1):
        y = x + rng.normal(0, sigma, x.shape)
        # Unclipped Gaussian noise: MSE = sigma^2, so PSNR = -20 log10(sigma).
        assert metrics.psnr(x, y) == pytest.approx(-20 * math.log10(sigma), abs=0.1)
        s = metrics.ssim(x, y)
        assert s == pytest.approx(_reference_ssim(x, y), abs=1e-9)
        assert s < previous_ssim
        previous_ssim = s
    previous_ssim = 1.0
    for k in (3, 7, 15):
        y = cv2.GaussianBlur(x, (k, k), 0)
        p, s = metrics.psnr(x, y), metrics.ssim(x, y)
        assert s == pytest.approx(_reference_ssim(x, y), abs=1e-9)
        assert p < previous_psnr and s < previous_ssim
        previous_psnr, previous_ssim = p, s
    print(f"blur 15: PSNR {previous_psnr:.2f} dB SSIM {previous_ssim:.4f}")
    # A brightness offset changes only the luminance term: (2 m (m + d) + C1) / (m^2 +
    # (m + d)^2 + C1) on a flat image.
    flat = np.full((32, 32, 1), 0.4)
    assert metrics.ssim(flat, flat + 0.1) == pytest.approx(
        (2 * 0.4 * 0.5 + 1e-4) / (0.16 + 0.25 + 1e-4), abs=1e-9)
    with pytest.raises(ValueError):
        metrics.ssim(x, x[:10])


@pytest.fixture(scope="module")
def embeddings():
    """dlib embeddings of 4 frames each of three GRID speakers."""
    finder = find.FaceFinder(detect.make_detector("hog"), min_face=0)
    emb = identity.FaceEmbedder()
    out = {}
    for name, clip in (("a", CLIP_A), ("b", CLIP_B), ("c", OTHER)):
        src = video.FrameSource(clip)
        rows = []
        for i in (0, 20, 40, 60):
            frame = src.read(i)
            face, _ = finder(frame)
            rows.append(emb.from_landmarks(frame, face.landmarks))
            finder.reset()
        out[name] = np.array(rows)
    return out


def test_embeddings_separate_speakers(embeddings):
    for name, e in embeddings.items():
        d = np.linalg.norm(e[:, None] - e[None], axis=-1)
        assert d.max() < identity.SAME_PERSON, (name, d.max())
    for p, q in (("a", "b"), ("a", "c"), ("b", "c")):
        d = np.linalg.norm(embeddings[p][:, None] - embeddings[q][None], axis=-1)
        assert d.min() > identity.SAME_PERSON, (p, q, d.min())
    # Retrieval: each speaker's frames, held out from their own set, find their own speaker.
    sets = {n: e[1:] for n, e in embeddings.items()}
    for n, e in embeddings.items():
        m = metrics.identity_metrics(e[:1], sets, target=n, source="a" if n != "a" else "b")
        assert m["retrieval_accuracy"] == 1.0 and m["share_same_person_as_target"] == 1.0


def test_landmark_error_zero_on_itself_and_grows_with_warp(grid_face):
    _, frame, face = grid_face
    predictor = lm.LandmarkPredictor()
    assert lm.normalised_mean_error(face.landmarks, face.landmarks) == 0.0
    errors = []
    centre = face.landmarks.mean(0)
    for stretch in (1.0, 1.05, 1.15):
        # Stretch the frame vertically about the face centre: a known change of shape.
        m = np.array([[1.0, 0, 0], [0, stretch, centre[1] * (1 - stretch)]])
        warped = cv2.warpAffine(frame, m, (frame.shape[1], frame.shape[0]))
        moved = align.transform_points(m, face.landmarks)
        pred = predictor(warped, lm.box_of(moved))
        errors.append(lm.normalised_mean_error(pred, face.landmarks))
        # The predicted landmarks follow the warp (what the warp does to the source points).
        assert lm.normalised_mean_error(pred, moved) < 0.05
    expected = [lm.normalised_mean_error(
        align.transform_points(np.array([[1.0, 0, 0], [0, s, centre[1] * (1 - s)]]),
                               face.landmarks), face.landmarks) for s in (1.05, 1.15)]
    print("NME under stretch 1, 1.05, 1.15:", errors, "warp alone:", expected)
    assert errors[0] < 0.03
    assert errors[0] < errors[1] < errors[2]
    assert errors[2] == pytest.approx(expected[1], abs=0.03)
    # Mouth opening: unchanged by a similarity (scale, rotation, shift); opening the lips by
    # half their gap along each inner-lip pair makes it 1.5 times as large.
    pts = face.landmarks.astype(np.float64)
    sim = cv2.getRotationMatrix2D((100.0, 50.0), 20.0, 1.3)
    assert metrics.mouth_opening(align.transform_points(sim, pts)) == pytest.approx(
        metrics.mouth_opening(pts), rel=1e-9)
    opened = pts.copy()
    opened[[67, 66, 65]] += 0.5 * (pts[[67, 66, 65]] - pts[[61, 62, 63]])
    assert metrics.mouth_opening(opened) == pytest.approx(
        1.5 * metrics.mouth_opening(pts), rel=1e-9)


def test_runs_and_jitter_and_correlation():
    assert [(r.start, r.stop) for r in metrics.runs([0, 1, 2, 5, 6, 9], 1)] == [
        (0, 3), (3, 5), (5, 6)]
    assert math.isnan(metrics.correlation([1, 1, 1], [1, 2, 3]))
    assert metrics.correlation([1, 2, 3, 4], [2, 4, 6, 8]) == pytest.approx(1.0)


def test_mouth_opening_error_on_real_landmarks(grid_face):
    """The error is the mean absolute difference of the openings, in eye distances: a source
    whose lips are closed (inner lower lip on the upper) against a swap that opens them by
    3 and by 6 pixels, straight down, on real landmarks: |0 − 3/e| and |0 − 6/e| on two of
    four frames, so the mean is (3 + 6) / (4 e), e the outer-eye-corner distance."""
    _, _, face = grid_face
    closed = face.landmarks.astype(np.float64)
    closed[[67, 66, 65]] = closed[[61, 62, 63]]
    e = math.hypot(*(closed[36] - closed[45]))  # written out: points 36 and 45
    assert metrics.mouth_opening(closed) == 0.0
    swaps = []
    for gap in (0.0, 3.0, 0.0, 6.0):
        p = closed.copy()
        p[[67, 66, 65], 1] += gap
        swaps.append(p)
        assert metrics.mouth_opening(p) == pytest.approx(gap / e, rel=1e-12)
    source = [metrics.mouth_opening(closed)] * 4
    swap = [metrics.mouth_opening(p) for p in swaps]
    assert metrics.mean_abs_difference(source, swap) == pytest.approx(9.0 / (4 * e), rel=1e-12)
    # Symmetric, zero on itself; a frame without a figure (nan) is left out, not counted as 0.
    assert metrics.mean_abs_difference(swap, source) == metrics.mean_abs_difference(source, swap)
    assert metrics.mean_abs_difference(swap, swap) == 0.0
    assert metrics.mean_abs_difference([0.0, math.nan], [0.1, 0.5]) == pytest.approx(0.1)
    assert math.isnan(metrics.mean_abs_difference([], []))
    # A constant source makes the correlation meaningless (nan), not the error.
    assert math.isnan(metrics.correlation(source, swap))
