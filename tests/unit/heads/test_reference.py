"""The reference-aware classifier and the shared synthetic faults."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from hydra.heads import create_head, load_model
from hydra.heads.faults import KINDS, apply_fault, make_faulty_with_kinds
from tests.helpers.heads import dataset

SIZE = (32, 40)
LABELS = ["Good", "Bad", "NoData"]


def _head(**kw):
    args = {"backbone": "plotnet", "reference": True, "input_size": SIZE}
    return create_head("classifier", labels=LABELS, problem_labels=["Bad", "NoData"], **(args | kw))


def _saved_loaded_and_without_reference(head, images, directory):
    """Save ``head``; check the reloaded one weighs ``images`` alike; then reload it with the
    reference buffers stripped from the file, as a model saved before heads had them."""
    head.eval()
    head.save(directory)
    loaded = load_model(directory)
    batch = torch.from_numpy(images[:4])
    with torch.no_grad():
        assert torch.allclose(loaded.weights(loaded.preprocess(batch)), head.weights(head.preprocess(batch)))
    state = load_file(str(directory / "model.safetensors"))
    save_file(
        {k: v for k, v in state.items() if not k.startswith("ref_")}, str(directory / "model.safetensors")
    )
    return loaded, load_model(directory)


def test_reference_is_the_median_of_the_good_images_only_each_counted_once():
    head = _head(reference_stat="median")
    good = torch.full((3, *SIZE, 3), 100, dtype=torch.uint8)
    good[1] = 120
    good[2] = 200
    bad = torch.zeros((4, *SIZE, 3), dtype=torch.uint8)
    # a Good image listed twice (oversampled) must not tip the median
    images = torch.cat([good, good[2:], bad])
    targets = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    assert head.fit_reference([(images, targets)]) == 3
    assert torch.allclose(head.ref_median, torch.full_like(head.ref_median, 120 / 255))
    assert bool(head.ref_ready)
    x = head.preprocess(good[:1])
    assert tuple(x.shape) == (1, 6, *SIZE)
    z = x[:, 3:]  # (100 - 120) / 255 over the spread: a negative deviation everywhere
    assert torch.all(z < 0)


def test_reference_travels_with_the_weights_and_old_models_load_without_one(tmp_path):
    head = _head()
    images, labels = dataset(12, *SIZE, seed=1)
    head.fit_reference([(torch.from_numpy(images), torch.from_numpy(labels))])
    loaded, old = _saved_loaded_and_without_reference(head, images, tmp_path / "m")
    assert torch.equal(loaded.ref_median, head.ref_median) and torch.equal(loaded.ref_scale, head.ref_scale)
    # a model saved before the reference existed: the buffers are missing from its file
    assert not bool(old.ref_ready) and torch.all(old.ref_median == 0.5)


def test_synthetic_faults_join_the_batch_with_problem_labels():
    head = _head(synth_faults=1.0, synth_weight=0.5)
    assert head._synthetic_label("dead_band") == LABELS.index("Bad")
    assert head._synthetic_label("empty") == LABELS.index("NoData")
    images, labels = dataset(8, *SIZE, seed=2)
    seen = {}
    original = head.net.forward

    def spy(x):
        seen["n"] = x.shape[0]
        return original(x)

    head.net.forward = spy
    head.train()
    loss = head.training_loss((torch.from_numpy(images), torch.from_numpy(labels)))
    assert torch.isfinite(loss)
    assert seen["n"] == 8 + int((labels == 0).sum())  # every Good image also came in as a fault
    without = _head(synth_faults=0.0)
    without.net.forward = spy
    without.training_loss((torch.from_numpy(images), torch.from_numpy(labels)))
    assert seen["n"] == 8


@pytest.mark.parametrize("kind", KINDS)
def test_every_fault_changes_a_plot_visibly(kind):
    images, labels = dataset(6, 60, 80, seed=5)
    img = torch.from_numpy(images[labels == 0][0]).permute(2, 0, 1).float() / 255
    out = apply_fault(img, kind, torch.Generator().manual_seed(3))
    changed = int(((out - img).abs().amax(dim=0) > 0.05).sum())
    assert out.shape == img.shape and changed >= 4, kind
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_faults_are_seeded_and_name_their_kind():
    images, _ = dataset(4, 60, 80, seed=6)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    a, kinds_a = make_faulty_with_kinds(x, torch.Generator().manual_seed(9))
    b, kinds_b = make_faulty_with_kinds(x, torch.Generator().manual_seed(9))
    assert kinds_a == kinds_b and set(kinds_a) <= set(KINDS) and torch.equal(a, b)
    assert np.all([k in KINDS for k in kinds_a])


def test_mean_reference_keeps_sometimes_drawn_apart_from_never_drawn():
    """The mean/std reference: a pixel a marker crosses in 1 of 4 Good plots is far less odd than a new one."""
    head = _head(reference_stat="mean", reference_floor=0.02)
    good = torch.full((4, *SIZE, 3), 255, dtype=torch.uint8)
    good[:, -1, :4] = torch.eye(4, dtype=torch.uint8)[:, :, None] * 5 + 250  # four distinct images
    good[0, 5, 5] = 0  # drawn in one Good image of four
    assert head.fit_reference([(good, torch.zeros(4, dtype=torch.long))]) == 4
    assert torch.allclose(head.ref_median[:, 5, 5], torch.full((3,), 0.75))
    assert torch.allclose(head.ref_scale[:, 5, 5], torch.full((3,), 0.75**0.5 * 0.5))
    assert torch.allclose(head.ref_scale[:, 0, 0], torch.full((3,), 0.02))  # never changes: the floor
    probe = torch.full((1, *SIZE, 3), 255, dtype=torch.uint8)
    probe[0, 5, 5] = 0
    probe[0, 9, 9] = 0
    z = head.preprocess(probe)[0, 3:] * 4.0
    assert -2.0 < float(z[0, 5, 5]) < -1.5  # (0 - 0.75) / 0.433
    assert float(z[0, 9, 9]) == -8.0  # never drawn there: clipped at Z_CLIP
    # the median reference cannot tell them apart: both pixels read the same
    med = _head(reference_stat="median", reference_floor=0.02)
    med.fit_reference([(good, torch.zeros(4, dtype=torch.long))])
    zm = med.preprocess(probe)[0, 3:] * 4.0
    assert float(zm[0, 5, 5]) == float(zm[0, 9, 9]) == -8.0
    with pytest.raises(ValueError, match="reference_stat must be one of mean, median"):
        _head(reference_stat="mode")


def test_reference_clip_keeps_a_never_missing_bar_apart_from_an_often_missing_one(tmp_path):
    """Beyond ``reference_clip`` spreads every deviation reads the same; a wider clip keeps them apart,
    and a model saved before heads had the setting reads deviations as it was trained (clip 8)."""
    import json

    good = torch.full((4, *SIZE, 3), 255, dtype=torch.uint8)
    good[:, -1, :4] = torch.eye(4, dtype=torch.uint8)[:, :, None] * 5 + 250  # four distinct images
    good[:, 12:, 20] = 0  # a bar every Good plot draws
    good[:3, 12:, 30] = 0  # and one that a Good plot now and then leaves out
    probe = good[:1].clone()
    probe[0, 12:, 20] = 255  # both missing
    probe[0, 12:, 30] = 255
    z = {}
    for clip in (8.0, 16.0):
        head = _head(reference_stat="mean", reference_floor=0.08, reference_clip=clip)
        head.fit_reference([(good, torch.zeros(4, dtype=torch.long))])
        z[clip] = head.preprocess(probe)[0, 3:] * (clip / 2.0)  # back to spreads
    # by hand: the always-drawn bar is (1 - 0) / 0.08 = 12.5 spreads off; the other (1 - 0.25) / 0.433 = 1.73
    assert float(z[8.0][0, 20, 20]) == 8.0 and abs(float(z[16.0][0, 20, 20]) - 12.5) < 1e-4
    assert abs(float(z[8.0][0, 20, 30]) - 0.75 / 0.75**0.5 / 0.5) < 1e-4
    assert abs(float(z[16.0][0, 20, 30]) - float(z[8.0][0, 20, 30])) < 1e-4
    head.save(tmp_path)
    assert abs(float(load_model(tmp_path).preprocess(probe)[0, 3, 20, 20]) - 12.5 * 2 / 16) < 1e-4
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["hparams"]["reference_clip"] == 16.0
    del config["hparams"]["reference_clip"]  # a model saved before the setting existed
    (tmp_path / "config.json").write_text(json.dumps(config))
    old = load_model(tmp_path)
    assert old.z_clip == 8.0
    assert float(old.preprocess(probe)[0, 3, 20, 20]) == 2.0  # 12.5 spreads clipped at 8, read as 2
    for bad in (0, -1.0, True, "8", float("inf")):
        with pytest.raises(ValueError, match="reference_clip must be a number of spreads > 0"):
            _head(reference_clip=bad)


def test_a_reference_window_forgives_a_bar_top_one_pixel_off_but_not_a_missing_bar():
    """With ``reference_window`` 5 a pixel next to where Good plots vary reads as ordinary variation."""
    good = torch.full((4, *SIZE, 3), 255, dtype=torch.uint8)
    for i in range(4):  # a bar whose top wanders over rows 10-11 (alternately), column 20-23 drawn
        good[i, 10 + i % 2 :, 20:24] = 0
    probe = good[:1].clone()
    probe[0, 9, 20:24] = 0  # the bar one row taller than any Good plot's
    probe[0, 25:, 5:8] = 0  # and a bar where Good plots never have one
    zs = {}
    for window in (1, 5):
        head = _head(reference_stat="mean", reference_window=window)
        head.fit_reference([(good, torch.zeros(4, dtype=torch.long))])
        zs[window] = head.preprocess(probe)[0, 3:] * 4.0
    assert float(zs[1][0, 9, 21]) == -8.0  # one pixel off: a fault at full strength without the window
    assert -2.5 < float(zs[5][0, 9, 21]) < -1.5  # (0 - 1) / 0.5: within the Good plots' variation
    assert float(zs[5][0, 30, 6]) == -8.0  # far from anything Good plots draw: still the full deviation
    head = _head(reference_window=5)
    head.fit_reference([(good, torch.zeros(4, dtype=torch.long))])
    assert torch.allclose(head.ref_scale[:, 8, 21], torch.full((3,), 0.5))  # the top row's 0.5, two rows up
    assert torch.allclose(head.ref_scale[:, 30, 6], torch.full((3,), 0.02))  # the floor, far from it
    for bad in (2, 0, True, 3.0):
        with pytest.raises(ValueError, match="reference_window must be an odd whole number"):
            _head(reference_window=bad)


def test_guided_cam_peaks_on_the_pixels_that_differ_inside_the_grad_cam_area():
    head = _head(reference_stat="mean", cam_guide=True)
    good = torch.full((4, *SIZE, 3), 255, dtype=torch.uint8)
    good[:, -1, :4] = torch.eye(4, dtype=torch.uint8)[:, :, None] * 5 + 250
    head.fit_reference([(good, torch.zeros(4, dtype=torch.long))])
    faulty = good[:1].clone()
    faulty[0, 20:23, 30:33] = 0  # a dark block at rows 20-22, columns 30-32
    x = head.preprocess(faulty)
    coarse = np.zeros((1, *SIZE), dtype=np.float32)
    coarse[0, 12:32, 20:40] = 1.0  # Grad-CAM: a flat blob over a wide area around it
    coarse[0, 13, 21] = 1.0
    out = head.refine_cam(x, coarse)
    r, c = np.unravel_index(int(out[0].argmax()), SIZE)
    assert 20 <= r <= 22 and 30 <= c <= 32 and out.max() == pytest.approx(1.0)
    # where the input shows no deviation, or the option is off, Grad-CAM is left as it is
    assert np.array_equal(head.refine_cam(head.preprocess(good[:1]), coarse), coarse)
    assert np.array_equal(_head().refine_cam(x, coarse), coarse)


def test_guided_cam_weighs_a_one_pixel_hot_bin_as_much_as_a_broad_change():
    """A hot bin one pixel wide against a broad region that changed (as when the axis rescales)."""
    head = _head(reference_stat="mean", cam_guide=True)
    good = torch.full((4, *SIZE, 3), 255, dtype=torch.uint8)
    head.fit_reference([(good, torch.zeros(4, dtype=torch.long))])
    faulty = good[:1].clone()
    faulty[0, 4:28, 8] = 0  # the hot bin: one column
    faulty[0, 14:28, 20:36] = 0  # a broad change
    x = head.preprocess(faulty)
    coarse = np.full((1, *SIZE), 0.9, dtype=np.float32)
    coarse[0, :, 6:11] = 1.0  # Grad-CAM leans towards the hot bin
    r, c = np.unravel_index(int(head.refine_cam(x, coarse)[0].argmax()), SIZE)
    assert c == 8 and 4 <= r < 28, (r, c)


@pytest.mark.parametrize("name", ["classifier", "siamese"])
def test_deviation_heat_map_peaks_on_the_largest_deviation_beyond_the_clip(name):
    """``cam_guide: deviation``: the map is the unclipped deviation, no gradients. A broad change far
    beyond the network's clip comes first in the image; the one bin that is further off is the peak."""
    from hydra.heads.cam import grad_cam

    kw = {"backbone": "plotnet"} if name == "classifier" else {"width": 4, "embed_dim": 8}
    head = create_head(
        name, labels=LABELS, problem_labels=["Bad", "NoData"], input_size=SIZE, reference=True,
        reference_stat="mean", cam_guide="deviation", **kw,
    )  # fmt: skip
    good = torch.full((4, *SIZE, 3), 255, dtype=torch.uint8)
    head.fit_reference([(good, torch.zeros(4, dtype=torch.long))])
    faulty = good[:1].clone()
    faulty[0, 2:10, 2:10] = 200  # 0.22 below the reference: 11 spreads (floor 0.02), past the clip of 8
    faulty[0, 20, 30] = 0  # one bin 50 spreads off
    x = head.preprocess(faulty)
    forwards = []  # Grad-CAM runs the network forward (and back); the deviation map runs no module
    hook = torch.nn.modules.module.register_module_forward_hook(lambda m, i, o: forwards.append(type(m)))
    try:
        maps = grad_cam(head, x, [1])
    finally:
        hook.remove()
    assert not forwards, forwards
    assert not any(p.grad is not None for p in head.parameters())
    assert maps.shape == (1, *SIZE) and maps.max() == pytest.approx(1.0)
    assert np.unravel_index(int(maps[0].argmax()), SIZE) == (20, 30)
    assert maps[0, 5, 5] == pytest.approx(11 / 50, rel=0.05)  # the broad change, in proportion
    # the clipped deviation (what the network reads) ties the two, and the broad change comes first
    clipped = x[:, 3:].abs().amax(dim=1)[0]
    assert float(clipped[5, 5]) == pytest.approx(float(clipped[20, 30]))
    for bad in ("yes", 1):
        with pytest.raises(ValueError, match="cam_guide must be true, false or 'deviation'"):
            create_head(name, labels=LABELS, input_size=SIZE, reference=True, cam_guide=bad, **kw)


def _framed(n: int, frame: bool = True) -> torch.Tensor:
    """White plots (N x 32 x 40 x 3 uint8) with a black axes box from rows 4-27, columns 8-35."""
    images = torch.full((n, *SIZE, 3), 255, dtype=torch.uint8)
    if frame:
        images[:, [4, 27], 8:36] = 0
        images[:, 4:28, [8, 35]] = 0
    return images


@pytest.mark.parametrize(
    ("name", "guide"), [("classifier", True), ("classifier", "deviation"), ("siamese", "deviation")]
)
def test_heat_maps_stay_inside_the_plot_frame_that_the_reference_shows(name, guide):
    """A hot bin inside the axes box and a bigger change outside it (a tick label that moved): the
    heat map's peak is the bin, nothing outside the box is drawn; without a box the change wins."""
    from hydra.heads.cam import grad_cam
    from hydra.heads.reference import plot_frame

    kw = {"backbone": "plotnet"} if name == "classifier" else {"width": 4, "embed_dim": 8}
    for framed in (True, False):
        torch.manual_seed(0)
        head = create_head(
            name, labels=LABELS, problem_labels=["Bad", "NoData"], input_size=SIZE, reference=True,
            reference_stat="mean", cam_guide=guide, **kw,
        )  # fmt: skip
        good = _framed(4, framed)
        head.fit_reference([(good, torch.zeros(4, dtype=torch.long))])
        assert plot_frame(head.ref_median) == ((4, 27, 8, 35) if framed else None)
        faulty = good[:1].clone()
        faulty[0, 15, 20] = 100  # a bin inside the box
        faulty[0, 10:14, 1:5] = 0  # a tick label left of the box, further off and larger
        maps = grad_cam(head, head.preprocess(faulty), [1])
        peak = np.unravel_index(int(maps[0].argmax()), SIZE)
        if framed:
            assert 4 <= peak[0] <= 27 and 8 <= peak[1] <= 35, peak
            assert maps[0, :, :8].max() == 0.0 and maps[0, :, 36:].max() == 0.0
            assert maps[0].max() == pytest.approx(1.0)
            # the frame is found once per reference, and again when the reference changes
            assert head.reference_frame() is head.reference_frame() == (4, 27, 8, 35)
            state = {k: v.clone() for k, v in head.state_dict().items()}
            head.fit_reference([(_framed(4, False), torch.zeros(4, dtype=torch.long))])  # a new tensor
            assert head.reference_frame() is None
            head.load_state_dict(state)  # copied in place
            assert head.reference_frame() == (4, 27, 8, 35)
        elif guide == "deviation":
            # without a frame the larger change outside wins (an untrained net's Grad-CAM may peak anywhere)
            assert peak[1] < 8, peak


def test_a_good_training_image_reads_its_deviation_from_a_reference_without_it():
    """The classifier's training input: the batch's Good images (and the synthetic faults made from
    them) against the reference of the *other* Good images, as a new Good plot would be; the
    rest against the reference itself. Checked against references fitted by hand."""
    images, labels = dataset(10, *SIZE, seed=7, bad_fraction=0.3)
    images, labels = torch.from_numpy(images), torch.from_numpy(labels)
    head = _head(reference_window=3)
    head.fit_reference([(images, labels)])
    goods = torch.nonzero(labels == 0).flatten()
    x01 = head.to_unit(images)
    faulty = 1.0 - x01[goods[:1]]  # a "synthetic fault" made from the first Good image
    x = torch.cat([x01, faulty])
    sources = torch.cat([x01, x01[goods[:1]]])
    member = torch.cat([labels == 0, torch.tensor([True])])
    got = head.training_input(x, sources, member)
    for row in range(len(x)):
        if bool(member[row]):
            left_out = int(goods[0]) if row == len(images) else row
            others = [i for i in goods.tolist() if i != left_out]
            by_hand = _head(reference_window=3)
            by_hand.fit_reference([(images[others], labels[others])])
            want = by_hand.normalize(x[row : row + 1])
        else:
            want = head.normalize(x[row : row + 1])
        torch.testing.assert_close(got[row : row + 1], want, rtol=1e-4, atol=1e-4)
    # against itself a Good image reads closer to its reference than against the others
    itself = head.normalize(x01[goods])[:, 3:].abs().sum()
    assert float(got[goods][:, 3:].abs().sum()) > float(itself) * 1.05
    # a median reference has no leave-one-out form: the input is normalize's
    median = _head(reference_stat="median")
    median.fit_reference([(images, labels)])
    torch.testing.assert_close(median.training_input(x, sources, member), median.normalize(x))


def test_a_plot_frame_is_a_closed_box_of_a_fair_size():
    from hydra.heads.reference import plot_frame

    box = _framed(1)[0].permute(2, 0, 1).float() / 255
    assert plot_frame(box) == (4, 27, 8, 35)
    open_box = box.clone()
    open_box[:, 4:28, [8, 35]] = 1.0  # two horizontal lines, no sides
    assert plot_frame(open_box) is None
    small = torch.ones(3, *SIZE)
    small[:, [4, 12], 8:36] = 0.0  # a closed box over a fifth of the image
    small[:, 4:13, [8, 35]] = 0.0
    assert plot_frame(small) is None
    red = box.clone()
    red[0] = 1.0  # a red box is dark in green and blue: still a frame
    assert plot_frame(red) == (4, 27, 8, 35)


def test_the_siamese_head_reads_the_reference_too_and_keeps_it_with_its_weights(tmp_path):
    from torch.utils.data import DataLoader, TensorDataset

    from tests.helpers.heads import make_trainer

    head = create_head(
        "siamese",
        labels=LABELS,
        problem_labels=["Bad", "NoData"],
        input_size=SIZE,
        width=4,
        embed_dim=8,
        reference=True,
    )
    first_conv = next(m for m in head.net.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.in_channels == 6  # the image and its deviation map
    images, labels = dataset(12, *SIZE, seed=4)
    good_only = torch.from_numpy(images[labels == 0])
    loader = DataLoader(TensorDataset(good_only, torch.zeros(len(good_only), dtype=torch.long)), batch_size=4)
    make_trainer(max_epochs=1).fit(head, loader)
    assert bool(head.ref_ready)  # set from the Good images before training
    expected = good_only.permute(0, 3, 1, 2).float().div(255).mean(dim=0)
    assert torch.allclose(head.ref_median, expected, atol=1e-5)
    loaded, old = _saved_loaded_and_without_reference(head, images, tmp_path / "m")
    assert torch.equal(loaded.ref_median, head.ref_median)
    # a Siamese model saved before heads could have a reference loads with the neutral one
    assert not bool(old.ref_ready)


def test_leave_one_out_deviation_is_each_good_image_against_a_reference_of_the_others():
    from hydra.heads.reference import leave_one_out_deviation

    images, labels = dataset(10, *SIZE, seed=6, bad_fraction=0.0)
    goods = torch.from_numpy(images)
    pick = torch.tensor([0, 3, 9])
    got = leave_one_out_deviation(goods.permute(0, 3, 1, 2).float() / 255, pick, floor=0.02, window=3, top=7)
    for i, score in zip(pick.tolist(), got.tolist(), strict=True):
        # by hand: a reference fitted on the nine others, then the score of the one left out
        head = _head(reference_window=3)
        others = torch.cat([goods[:i], goods[i + 1 :]])
        assert head.fit_reference([(others, torch.zeros(len(others), dtype=torch.long))]) == 9
        expected = head.deviation_score(head.preprocess(goods[i : i + 1]), 7)
        assert score == pytest.approx(float(expected), rel=1e-4)
    # a seen image reads closer to its reference than an unseen one
    head = _head(reference_window=3)
    head.fit_reference([(goods, torch.zeros(10, dtype=torch.long))])
    assert float(head.deviation_score(head.preprocess(goods[:1]), 7)) < got[0]


def _siamese(**kw):
    args = dict(labels=LABELS, problem_labels=["Bad", "NoData"], input_size=SIZE, width=4, embed_dim=8)
    args |= dict(reference=True, reference_window=3, reference_score=True, reference_top=6, bank_size=64)
    return create_head("siamese", **(args | kw))


def test_reference_score_needs_a_mean_reference():
    with pytest.raises(ValueError, match="reference_score needs reference"):
        _siamese(reference=False)
    with pytest.raises(ValueError, match="reference_score needs reference"):
        _siamese(reference_stat="median")
    with pytest.raises(ValueError, match="reference_top"):
        _siamese(reference_top=0)


def test_siamese_reference_score_flags_a_one_bin_fault_and_travels_with_the_weights(tmp_path):
    """Good images only: a two-pixel dot (a hot bin's marker) outscores every unseen Good plot;
    without reference_score, the embedding's coarse grid (2x3 cells here) lets some Good plot outscore it."""
    from torch.utils.data import DataLoader, TensorDataset

    from tests.helpers.heads import histogram_plot, make_trainer

    rng = np.random.default_rng(8)
    good = torch.from_numpy(np.stack([histogram_plot(*SIZE, rng) for _ in range(40)]))
    torch.manual_seed(0)
    head = _siamese()
    loader = DataLoader(TensorDataset(good, torch.zeros(len(good), dtype=torch.long)), batch_size=8)
    make_trainer(max_epochs=2).fit(head, loader)
    centre_e, spread_e, centre_d, spread_d = head.score_norm.tolist()
    assert spread_e > 0 and spread_d > 0 and centre_d > 0  # fitted on the Good images, leave-one-out
    unseen = torch.from_numpy(np.stack([histogram_plot(*SIZE, rng) for _ in range(12)]))
    hot = unseen.clone()
    hot[:, 4:6, 20] = 0  # a two-pixel dot above the bars, where Good plots are always blank
    head.eval()
    with torch.no_grad():
        good_p = head.weights(head.preprocess(unseen))[:, 1:].sum(dim=1)
        hot_p = head.weights(head.preprocess(hot))[:, 1:].sum(dim=1)
    assert float(hot_p.min()) > float(good_p.max()), (hot_p, good_p)
    head.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert torch.equal(loaded.score_norm, head.score_norm)
    with torch.no_grad():
        assert torch.allclose(loaded.weights(loaded.preprocess(hot)), head.weights(head.preprocess(hot)))
    # a model saved before reference_score existed loads and scores by the embedding alone
    state = load_file(str(tmp_path / "m" / "model.safetensors"))
    save_file(
        {k: v for k, v in state.items() if k != "score_norm"}, str(tmp_path / "m" / "model.safetensors")
    )
    assert torch.equal(load_model(tmp_path / "m").score_norm, torch.tensor([0.0, 1.0, 0.0, 1.0]))
