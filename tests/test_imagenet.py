"""Streamed ImageNet: torchvision's real ImageNet class over a tiny fabricated
copy (three classes of small JPEGs), the lazy image list, and the paper-profile
runs of the sensitivity paper's Table 3."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from replicate import data, models, train
from replicate.config import ConfigError, RunConfig
from replicate.data import DataNotFound
from replicate.imagenet import LazyImages
from replicate.methods import pretrained as pretrained_mod
from replicate.methods import sensitivity as sens
from replicate.runner import load_model, run

WNIDS = ("n00000001", "n00000002", "n00000003")
COLOURS = ((200, 30, 30), (30, 200, 30), (30, 30, 200))   # one flat colour per class
N_TRAIN, N_VAL = 4, 2


def fabricate_imagenet(root):
    """root/meta.bin + train/<wnid>/*.JPEG + val/<wnid>/*.JPEG, what torchvision's
    ImageNet class leaves after unpacking the official archives."""
    root.mkdir(parents=True)
    sizes = [(300, 260), (250, 400), (320, 240), (230, 230)]
    for split, n in (("train", N_TRAIN), ("val", N_VAL)):
        for c, (wnid, colour) in enumerate(zip(WNIDS, COLOURS)):
            d = root / split / wnid
            d.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", sizes[(i + c) % len(sizes)], colour).save(d / f"{wnid}_{i}.JPEG", quality=95)
    meta = ({w: (f"class {k}",) for k, w in enumerate(WNIDS)}, [w for w in WNIDS for _ in range(N_VAL)])
    torch.save(meta, root / "meta.bin")
    return root


@pytest.fixture
def imagenet_dir(tmp_path, monkeypatch):
    root = fabricate_imagenet(tmp_path / "data" / "imagenet")
    monkeypatch.setenv("REPLICATE_DATA", str(tmp_path / "data"))
    data._clear_cache()
    yield root
    data._clear_cache()


def _label_of_path(path) -> int:
    return WNIDS.index(str(path).split("/")[-2])


def test_loads_through_torchvision(imagenet_dir):
    ds = data.load("imagenet")
    assert isinstance(ds.x_train, LazyImages) and isinstance(ds.x_test, LazyImages)
    assert ds.num_classes == 3 and ds.n_train == 3 * N_TRAIN and ds.n_test == 3 * N_VAL
    assert ds.x_train.shape == (3 * N_TRAIN, 3, 224, 224) and ds.input_shape == (3, 224, 224)
    assert ds.source == "env:REPLICATE_DATA/imagenet"
    assert [_label_of_path(p) for p in ds.x_train.paths] == ds.y_train.tolist()
    assert [_label_of_path(p) for p in ds.x_test.paths] == ds.y_test.tolist()


def test_eval_decode_is_centre_crop_of_the_image(imagenet_dir):
    ds = data.load("imagenet")
    x = ds.x_test[torch.arange(ds.n_test)]
    assert x.shape == (ds.n_test, 3, 224, 224) and x.dtype == torch.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    # flat-colour images: every decoded pixel is the class colour (JPEG error a few levels)
    for img, y in zip(x, ds.y_test.tolist()):
        want = torch.tensor(COLOURS[y], dtype=torch.float32).view(3, 1, 1) / 255
        assert (img - want).abs().max() < 6 / 255
    assert torch.equal(ds.x_test[0:2], x[:2])          # slices decode the same way, deterministically


def test_training_batches_depend_only_on_the_generator(tmp_path):
    # a non-flat image so that different crops give different pixels
    rng = np.random.default_rng(0)
    path = tmp_path / "noise.JPEG"
    Image.fromarray(rng.integers(0, 256, (300, 260, 3), dtype=np.uint8)).save(path)
    lazy = LazyImages([path] * 6)
    idx = torch.arange(6)
    a = lazy.batch(idx, torch.Generator().manual_seed(1))
    b = lazy.batch(idx, torch.Generator().manual_seed(1))
    c = lazy.batch(idx, torch.Generator().manual_seed(2))
    assert a.shape == (6, 3, 224, 224)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])                 # each image gets its own crop
    assert torch.equal(lazy.batch(idx), lazy[idx])     # no generator: the evaluation transform


def test_subset_and_validation_split_stay_lazy_and_aligned(imagenet_dir):
    ds = data.load("imagenet")
    sub = data.subset(ds, 5, 4, seed=3)
    assert isinstance(sub.x_train, LazyImages) and len(sub.x_train) == 5 and len(sub.x_test) == 4
    assert [_label_of_path(p) for p in sub.x_train.paths] == sub.y_train.tolist()
    assert [_label_of_path(p) for p in sub.x_test.paths] == sub.y_test.tolist()
    train_part, val_part = data.split_validation(ds, 3, seed=0)
    assert len(train_part.x_train) == ds.n_train - 3 and len(val_part.x_test) == 3
    assert set(val_part.x_test.paths).isdisjoint(train_part.x_train.paths)
    assert [_label_of_path(p) for p in val_part.x_test.paths] == val_part.y_test.tolist()
    with pytest.raises(IndexError):
        ds.x_train[torch.tensor([ds.n_train])]


def test_missing_and_corrupt_imagenet_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("REPLICATE_DATA", str(tmp_path))
    data._clear_cache()
    with pytest.raises(DataNotFound, match="image-net.org") as info:
        data.load("imagenet")
    assert "\n" not in str(info.value) and "ILSVRC2012_img_val.tar" in str(info.value)
    # archives present but not the real ones: torchvision's md5 check fails
    d = tmp_path / "imagenet"
    d.mkdir()
    for name in ("ILSVRC2012_devkit_t12.tar.gz", "ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar"):
        (d / name).write_bytes(b"not an archive")
    data._clear_cache()
    with pytest.raises(DataNotFound, match="incomplete or corrupted"):
        data.load("imagenet")
    data._clear_cache()


def test_fit_rejects_tensor_augmentation_on_streamed_images(imagenet_dir):
    ds = data.load("imagenet")
    model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 3))
    with pytest.raises(ConfigError, match="augment"):
        train.fit(model, ds, epochs=1, augment="crop-flip")


def test_streamed_training_run_end_to_end(imagenet_dir, monkeypatch):
    """dense training and a sensitivity second phase on streamed images, through the
    runner, with a validation split and top-5 recorded (a tiny stand-in model: VGG-16
    is too slow for a CPU test)."""
    def tiny(shape, classes):
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 8, stride=8), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(2),
                                   torch.nn.Flatten(), torch.nn.Linear(16, classes))
    monkeypatch.setitem(models.MODELS, "tiny-rgb", models.ModelSpec("tiny-rgb", tiny, "vision", 1.0))
    base = RunConfig(method="dense", model="tiny-rgb", dataset="imagenet", profile="smoke", epochs=2,
                     batch_size=4, val_size=3)
    rec = run(base)
    assert rec["status"] == "ok" and rec["provenance"]["n_train"] == 3 * N_TRAIN - 3
    m = rec["metrics"]
    assert {"test_top5_error", "val_error", "test_error"} <= set(m)
    assert m["test_top5_error"] == 0.0                 # 3 classes: the true one is always in the top 5
    again = run(base, fresh=True)
    assert again["metrics"]["test_loss"] == m["test_loss"]   # same seed, same batches and crops
    child = sens.phase2(base, 1e-3, 0.5, "sensitivity", epochs=1, lr=0.01)
    crec = run(child)
    assert crec["status"] == "ok" and crec["metrics"]["remaining"] < 1.0


def test_vgg16_is_torchvision_vgg16():
    m = models.build("vgg16", (3, 224, 224), 1000)
    assert sum(p.numel() for p in m.parameters()) == 138_357_544
    assert set(m.state_dict()) == set("net." + k for k in m.net.state_dict())   # loads torchvision weights
    with pytest.raises(ValueError, match="RGB"):
        models.build("vgg16", (1, 28, 28), 10)


def test_table3_configurations_and_pretrained_run(imagenet_dir, monkeypatch):
    pre = sens.vgg16_imagenet("pretrained")
    assert (pre.method, pre.model, pre.dataset, pre.profile, pre.epochs) == ("pretrained", "vgg16", "imagenet", "paper", 0)
    s, wd = sens.vgg16_imagenet("sensitivity"), sens.vgg16_imagenet("weight decay")
    assert s.parent == pre and wd.parent == pre
    assert s.args["reduction"] == "batch_sum" and wd.args["coefficients"] == "none"
    assert s.args["lam"] == wd.args["lam"] == sens.IMAGENET_PHASE2["lam"]
    s.validate()
    with pytest.raises(ConfigError, match="unknown setting"):
        sens.vgg16_imagenet("sensitivity", lr_typo=1)
    with pytest.raises(ConfigError, match="epochs=0"):
        pre.replace(epochs=1).validate()

    # the pretrained run loads the published weights; here a fixed random state dict stands in
    torch.manual_seed(5)
    fake = models.build("vgg16", (3, 224, 224), 3).net.state_dict()
    monkeypatch.setattr(pretrained_mod, "torchvision_state_dict", lambda model, weights: fake)
    cfg = sens.vgg16_imagenet("pretrained", profile="smoke")
    rec = run(cfg)
    m = rec["metrics"]
    assert rec["status"] == "ok" and m["epochs_run"] == 0 and "test_top5_error" in m
    assert m["pretrained_weights"] == "torchvision vgg16 IMAGENET1K_V1"
    assert m["weights"] == sum(v.numel() for k, v in fake.items() if k.endswith("weight"))
    model, _ = load_model(cfg)
    assert all(torch.equal(v, fake[k]) for k, v in model.net.state_dict().items())
