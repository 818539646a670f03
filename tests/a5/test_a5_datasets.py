"""The public point-cloud releases: tiny copies in each layout, written here from the procedural
shapes with the releases' file names and value conventions, read back through ``resolve_data`` /
``load_split``, and trained on with ``python -m a5_pointnet.train``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from l3d.errors import UserError

import a5_pointnet.datasets as ds
from a5_pointnet.data import DataSpec, load_categories, load_normals, load_split, resolve_data
from a5_pointnet.synthetic import generate_class

# ShapeNet-part's 16 categories, their synsets and part counts (global part ids run through them in this order)
SHAPENET = [("Airplane", "02691156", 4), ("Bag", "02773838", 2), ("Cap", "02954340", 2), ("Car", "02958343", 4),
            ("Chair", "03001627", 4), ("Earphone", "03261776", 3), ("Guitar", "03467517", 3),
            ("Knife", "03624134", 2), ("Lamp", "03636649", 4), ("Laptop", "03642806", 2),
            ("Motorbike", "03790512", 6), ("Mug", "03797390", 2), ("Pistol", "03948459", 3),
            ("Rocket", "04099429", 3), ("Skateboard", "04225987", 3), ("Table", "04379243", 3)]
FIRST_PART = dict(zip([c for c, _, _ in SHAPENET], np.cumsum([0] + [n for _, _, n in SHAPENET])[:-1].tolist()))
# procedural chair parts (seat, back, legs, arms, base, headrest) -> ShapeNet's four chair parts
CHAIR_TO_SHAPENET = np.array([1, 0, 2, 3, 2, 0])


def shapes(cls: str, n: int, points: int, seed: int):
    """Procedural clouds (n, points, 3) with unit normals (away from the centroid: a stand-in,
    only the file format matters here) and part ids."""
    pts, parts = generate_class(cls, n, points, seed, stream=7)
    nrm = pts - pts.mean(1, keepdims=True)
    nrm /= np.linalg.norm(nrm, axis=-1, keepdims=True).clip(1e-9)
    return pts, nrm.astype(np.float32), parts


def lamp_parts(pts):
    """Three lamp parts by height (base, pole, shade) as local ids 0..2."""
    y = pts[..., 1]
    lo, hi = y.min(1, keepdims=True), y.max(1, keepdims=True)
    return np.digitize((y - lo) / (hi - lo), [0.2, 0.7])


# ------------------------------------------------------------------------------------------------
# writers of the four layouts
# ------------------------------------------------------------------------------------------------
MN_H5_CLASSES = ("chair", "lamp", "vase")  # ModelNet40's names, in its (alphabetical) order


def write_modelnet_h5(root: Path, n_train=60, n_test=30, points=2048, seed=0, all_names: bool = False) -> dict:
    """With ``all_names``, shape_names.txt lists 40 classes and the three shapes carry the label ids of
    chair, lamp and vase among them (ModelNet40's ids 8, 19 and 37), as in the full release."""
    d = root / "modelnet40_ply_hdf5_2048"
    d.mkdir(parents=True)
    names_list = list(MN_H5_CLASSES)
    ids = np.arange(3)
    if all_names:
        names_list = [f"class_{k:02d}" for k in range(40)]
        ids = np.array([8, 19, 37])
        for i, c in zip(ids, MN_H5_CLASSES):
            names_list[i] = c
    (d / "shape_names.txt").write_text("".join(f"{c}\n" for c in names_list))
    out = {}
    for split, n, files in (("train", n_train, 2), ("test", n_test, 1)):
        per = [shapes(c, n, points, seed + 10 * k + (split == "test")) for k, c in enumerate(MN_H5_CLASSES)]
        data = np.concatenate([p[0] for p in per])
        normal = np.concatenate([p[1] for p in per])
        label = np.repeat(ids, n).astype(np.uint8)[:, None]  # (N, 1) uint8 as released
        order = np.random.default_rng(seed).permutation(len(data))  # the release's files are shuffled
        data, normal, label = data[order], normal[order], label[order]
        names = []
        for k, chunk in enumerate(np.array_split(np.arange(len(data)), files)):
            name = f"ply_data_{split}{k}.h5"
            with h5py.File(d / name, "w") as f:
                f.create_dataset("data", data=data[chunk])
                f.create_dataset("label", data=label[chunk])
                f.create_dataset("normal", data=normal[chunk])
                f.create_dataset("faceId", data=np.zeros((len(chunk), points), np.int32))
            names.append(f"data/modelnet40_ply_hdf5_2048/{name}")  # as the release writes them
        (d / f"{split}_files.txt").write_text("".join(f"{n}\n" for n in names))
        out[split] = (data, label[:, 0].astype(np.int64), normal)
    return out


MN_TXT_CLASSES = {"chair": "chair", "lamp": "lamp", "night_stand": "vase"}  # release name -> procedural class


def write_modelnet_txt(root: Path, n_train=40, n_test=20, points=1024, seed=0) -> dict:
    d = root / "modelnet40_normal_resampled"
    names = sorted(MN_TXT_CLASSES)
    out = {"train": [], "test": []}
    ids = {"train": [], "test": []}
    for k, name in enumerate(names):
        (d / name).mkdir(parents=True)
        pts, nrm, _ = shapes(MN_TXT_CLASSES[name], n_train + n_test, points, seed + k)
        for i in range(n_train + n_test):
            split = "train" if i < n_train else "test"
            sid = f"{name}_{i + 1:04d}"
            np.savetxt(d / name / f"{sid}.txt", np.concatenate([pts[i], nrm[i]], 1), fmt="%.6f", delimiter=",")
            ids[split].append(sid)
            out[split].append((pts[i], k, nrm[i]))
    (d / "modelnet40_shape_names.txt").write_text("".join(f"{n}\n" for n in names))
    (d / "modelnet10_shape_names.txt").write_text("chair\nnight_stand\n")
    for split in ("train", "test"):
        (d / f"modelnet40_{split}.txt").write_text("".join(f"{s}\n" for s in ids[split]))
        (d / f"modelnet10_{split}.txt").write_text("".join(f"{s}\n" for s in ids[split] if not s.startswith("lamp")))
    (d / "filelist.txt").write_text("".join(f"{s.rsplit('_', 1)[0]}/{s}.txt\n" for s in ids["train"] + ids["test"]))
    return {s: (np.stack([o[0] for o in v]), np.array([o[1] for o in v]), np.stack([o[2] for o in v]))
            for s, v in out.items()}


SN_SUBSET = ("Chair", "Lamp")


def _shapenet_shapes(n: int, seed: int):
    """n chairs and n lamps: (points, normals, global part ids, category index in SN_SUBSET)."""
    cp, cn, cpart = shapes("chair", n, 2048, seed)
    lp, ln, _ = shapes("lamp", n, 2048, seed + 1)
    gp = np.concatenate([FIRST_PART["Chair"] + CHAIR_TO_SHAPENET[cpart], FIRST_PART["Lamp"] + lamp_parts(lp)])
    return np.concatenate([cp, lp]), np.concatenate([cn, ln]), gp, np.repeat([0, 1], n)


def write_shapenet_txt(root: Path, n=(12, 4, 8), seed=0) -> dict:
    """Chairs and lamps only (synsetoffset2category.txt lists these two): clouds of 1400..2048
    points, lamps with three of their four parts."""
    d = root / "shapenetcore_partanno_segmentation_benchmark_v0_normal"
    (d / "train_test_split").mkdir(parents=True)
    syn = {c: s for c, s, _ in SHAPENET}
    (d / "synsetoffset2category.txt").write_text("".join(f"{c}\t{syn[c]}\n" for c in SN_SUBSET))
    rng = np.random.default_rng(seed)
    out = {}
    for k, split in enumerate(("train", "val", "test")):
        pts, nrm, part, cat = _shapenet_shapes(n[k], seed + 3 * k)
        entries, clouds = [], []
        for i in range(len(pts)):
            token = "".join(rng.choice(list("0123456789abcdef"), 32))
            keep = int(rng.integers(1400, 2049))
            (d / syn[SN_SUBSET[cat[i]]]).mkdir(exist_ok=True)
            rows = np.concatenate([pts[i, :keep], nrm[i, :keep], part[i, :keep, None].astype(np.float32)], 1)
            np.savetxt(d / syn[SN_SUBSET[cat[i]]] / f"{token}.txt", rows, fmt="%.6f", delimiter=" ")
            entries.append(f"shape_data/{syn[SN_SUBSET[cat[i]]]}/{token}")
            clouds.append((pts[i, :keep], part[i, :keep], cat[i]))
        (d / "train_test_split" / f"shuffled_{split}_file_list.json").write_text(json.dumps(entries))
        out[split] = clouds
    return out


def write_shapenet_h5(root: Path, n=(10, 4, 8), seed=0) -> dict:
    """All 16 categories listed with the full part table (so 16 categories, 50 parts), shapes of
    chairs and lamps only."""
    d = root / "hdf5_data"
    d.mkdir(parents=True)
    (d / "all_object_categories.txt").write_text("".join(f"{c} {s}\n" for c, s, _ in SHAPENET))
    table = [[s, p] for _, s, k in SHAPENET for p in range(k)]
    (d / "overallid_to_catid_partid.json").write_text(json.dumps(table))
    out = {}
    for k, split in enumerate(("train", "val", "test")):
        pts, _, part, cat = _shapenet_shapes(n[k], seed + 5 + 3 * k)
        label = np.array([[i for i, (c, _, _) in enumerate(SHAPENET) if c == SN_SUBSET[j]][0] for j in cat], np.uint8)
        with h5py.File(d / f"ply_data_{split}0.h5", "w") as f:
            f.create_dataset("data", data=pts)
            f.create_dataset("label", data=label[:, None])
            f.create_dataset("pid", data=part.astype(np.uint8))
        (d / f"{split}_hdf5_file_list.txt").write_text(f"ply_data_{split}0.h5\n")
        out[split] = (pts, part, label.astype(np.int64))
    return out


# ------------------------------------------------------------------------------------------------
# tests
# ------------------------------------------------------------------------------------------------
def test_modelnet40_h5_loads_as_written(tmp_path):
    truth = write_modelnet_h5(tmp_path / "dl", n_train=6, n_test=4, points=64)
    spec = resolve_data("cls", "auto", str(tmp_path / "dl"), cache_dir=str(tmp_path / "cache"), quiet=True)
    assert spec.source == "modelnet40_h5" and spec.classes("cls") == 3 and spec.names() == MN_H5_CLASSES
    assert spec.num_train == 18 and spec.num_test == 12 and spec.num_points == 64
    for split in ("train", "test"):
        x, y = load_split(spec.root, "cls", split)
        assert x.shape == (len(truth[split][0]), 64, 3) and x.dtype == np.float32
        np.testing.assert_array_equal(x, truth[split][0])  # two .h5 files of train, in the listed order
        np.testing.assert_array_equal(y, truth[split][1])
    assert load_normals(spec.root, "cls", "test") is None  # normals only on request
    spec_n = resolve_data("cls", "modelnet40_h5", str(tmp_path / "dl" / "modelnet40_ply_hdf5_2048"),
                          cache_dir=str(tmp_path / "cache"), quiet=True, normals=True, cloud_points=16)
    np.testing.assert_array_equal(load_normals(spec_n.root, "cls", "test"), truth["test"][2][:, :16])
    assert spec.label("cls").startswith("dataset: ModelNet40 (modelnet40_ply_hdf5_2048)")
    assert DataSpec(**spec.to_dict()) == spec  # what checkpoints store rebuilds the same spec


def test_modelnet_txt_40_and_10_parse_once_and_subset(tmp_path, monkeypatch):
    truth = write_modelnet_txt(tmp_path, n_train=5, n_test=3, points=200)
    folder = str(tmp_path / "modelnet40_normal_resampled")
    cache = str(tmp_path / "cache")
    t = time.perf_counter()
    spec = resolve_data("cls", "modelnet40_txt", folder, cache_dir=cache, quiet=True)
    first = time.perf_counter() - t
    assert spec.names() == ("chair", "lamp", "night_stand") and spec.classes("cls") == 3
    x, y = load_split(spec.root, "cls", "test")
    np.testing.assert_allclose(x, truth["test"][0], atol=6e-7)  # written with 6 decimals
    np.testing.assert_array_equal(y, truth["test"][1])
    # the parse is cached: a second conversion (another subset) reads no text
    monkeypatch.setattr(ds, "_parse_text_split", lambda *a, **k: pytest.fail("parsed the text again"))
    t = time.perf_counter()
    sub = resolve_data("cls", "auto", folder, cache_dir=cache, quiet=True, num_train=4, num_test=2,
                       cloud_points=50, point_pick="random", seed=3)
    second = time.perf_counter() - t
    xs, ys = load_split(sub.root, "cls", "train")
    assert xs.shape == (4, 50, 3) and sub.num_train == 4 and sub.num_points == 50
    full = truth["train"][0]
    for cloud, lab in zip(xs, ys):  # every kept cloud is a training cloud of its class, its points 50 distinct ones of it
        cand = full[truth["train"][1] == lab]  # (m, 200, 3)
        gap = np.abs(cand[:, :, None] - cloud[None, None]).max(-1).min(1)  # (m, 50): picked point to nearest point
        assert (gap.max(1) < 1e-6).any() and len(np.unique(cloud, axis=0)) == 50
    assert second < first
    monkeypatch.undo()
    # ModelNet10's lists of the same folder: two classes (night_stand keeps its underscore)
    ten = resolve_data("cls", "modelnet10_txt", folder, cache_dir=cache, quiet=True)
    x10, y10 = load_split(ten.root, "cls", "train")
    assert ten.names() == ("chair", "night_stand") and len(x10) == 10 and set(y10.tolist()) == {0, 1}


def test_shapenet_part_text_subset_counts_from_the_files(tmp_path):
    truth = write_shapenet_txt(tmp_path, n=(3, 1, 2))
    spec = resolve_data("seg", "shapenet_part", str(tmp_path), cache_dir=str(tmp_path / "cache"), quiet=True)
    # Chair's 4 parts (12..15) and the 3 lamp parts present (24..26) -> 7 contiguous parts, 2 categories
    meta = json.loads((Path(spec.root) / "dataset.json").read_text())
    assert spec.source == "shapenet_part_txt" and spec.classes("seg") == 7 and spec.classes("cls") == 2
    assert meta["part_ids"] == [12, 13, 14, 15, 24, 25, 26] and meta["category_parts"] == [[0, 1, 2, 3], [4, 5, 6]]
    assert spec.num_train == 8 and spec.num_test == 4 and spec.num_points == ds.RAGGED_POINTS  # train = train + val
    x, y = load_split(spec.root, "seg", "test")
    cats, parts, names = load_categories(spec.root, "test")
    assert x.shape == (4, 2048, 3) and y.shape == (4, 2048) and names == SN_SUBSET
    lut = {g: k for k, g in enumerate(meta["part_ids"])}
    for i, (pts, part, cat) in enumerate(truth["test"]):
        n = len(pts)  # shorter clouds repeat their points in order
        np.testing.assert_allclose(x[i], pts[np.arange(2048) % n], atol=6e-7)
        assert y[i].tolist() == [lut[p] for p in part[np.arange(2048) % n]] and cats[i] == cat
        assert set(y[i].tolist()) <= set(parts[cat])
    # the same files as a classification set of the categories
    cspec = resolve_data("cls", "auto", str(tmp_path), cache_dir=str(tmp_path / "cache"), quiet=True)
    assert load_split(cspec.root, "cls", "test")[1].tolist() == [c for _, _, c in truth["test"]]


def test_shapenet_part_h5_full_table(tmp_path):
    truth = write_shapenet_h5(tmp_path, n=(3, 2, 2))
    spec = resolve_data("seg", "auto", str(tmp_path / "hdf5_data"), cache_dir=str(tmp_path / "cache"), quiet=True)
    assert spec.source == "shapenet_part_h5" and spec.classes("seg") == 50 and spec.classes("cls") == 16
    x, y = load_split(spec.root, "seg", "train")
    np.testing.assert_array_equal(x, np.concatenate([truth["train"][0], truth["val"][0]]))
    np.testing.assert_array_equal(y, np.concatenate([truth["train"][1], truth["val"][1]]))  # full set: ids kept
    cats, parts, names = load_categories(spec.root, "test")
    assert len(parts) == 16 and parts[4] == [12, 13, 14, 15] and parts[8] == [24, 25, 26, 27]
    assert cats.tolist() == truth["test"][2].tolist() and names[4] == "Chair"
    assert load_categories(spec.root, "test", limit=1)[0].tolist() == truth["test"][2][:1].tolist()
    # the course layout: one kind of object holding all six parts
    (tmp_path / "course" / "seg").mkdir(parents=True)
    np.save(tmp_path / "course" / "seg" / "label_test.npy", np.zeros((3, 5), np.int64))
    cats, parts, names = load_categories(tmp_path / "course", "test", limit=2)
    assert cats.tolist() == [0, 0] and parts == [[0, 1, 2, 3, 4, 5]] and names == ("chair",)


def test_errors_are_one_line_and_name_the_file(tmp_path):
    cache = str(tmp_path / "cache")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match=r"empty: expected the course layout .* or a release: modelnet40_ply_hdf5_2048.*found none of them"):
        resolve_data("cls", "auto", str(empty), cache_dir=cache)
    with pytest.raises(UserError, match="no such folder"):
        resolve_data("cls", "auto", str(tmp_path / "nowhere"), cache_dir=cache)
    write_modelnet_h5(tmp_path / "mn", n_train=2, n_test=2, points=16)
    with pytest.raises(UserError, match="expected the shapenet_part release"):
        resolve_data("seg", "shapenet_part", str(tmp_path / "mn"), cache_dir=cache)
    with pytest.raises(UserError, match="part labels .* use --task cls"):
        resolve_data("seg", "auto", str(tmp_path / "mn"), cache_dir=cache)
    with pytest.raises(UserError, match="--data_path"):
        resolve_data("cls", "modelnet40_h5", None, cache_dir=cache)
    (tmp_path / "mn" / "modelnet40_ply_hdf5_2048" / "ply_data_test0.h5").unlink()
    with pytest.raises(UserError, match=r"test_files.txt: expected files that exist; it lists .*ply_data_test0.h5"):
        resolve_data("cls", "auto", str(tmp_path / "mn"), cache_dir=cache)
    write_modelnet_txt(tmp_path / "txt", n_train=1, n_test=1, points=8)
    victim = tmp_path / "txt" / "modelnet40_normal_resampled" / "lamp" / "lamp_0002.txt"
    victim.unlink()
    with pytest.raises(UserError, match=r"modelnet40_test.txt: expected files that exist; it lists lamp_0002"):
        resolve_data("cls", "auto", str(tmp_path / "txt"), cache_dir=cache)
    victim.write_text("1,2\n")
    with pytest.raises(UserError, match=r"lamp_0002.txt: expected 6 numbers per line"):
        resolve_data("cls", "auto", str(tmp_path / "txt"), cache_dir=cache)


def test_pick_points_first_random_and_repeats():
    offsets = np.array([0, 3, 8])  # clouds of 3 and 5 points
    first = ds.pick_points(offsets, 4, "first")
    assert first.tolist() == [[0, 1, 2, 0], [3, 4, 5, 6]]
    rnd = ds.pick_points(offsets, 5, "random", seed=1)
    assert sorted(rnd[1].tolist()) == [3, 4, 5, 6, 7]  # a permutation of the cloud's own points
    assert set(rnd[0].tolist()) == {0, 1, 2} and rnd[0, 3] == rnd[0, 0]  # cycles through the same order


def _train(tmp_path, data_dir, name, epochs: int = 2):
    from a5_pointnet import train

    out = tmp_path / name
    t = time.perf_counter()
    assert train.main(["--task", "cls", "--quick", "--data_dir", str(data_dir), "--cache_dir", str(tmp_path / "cache"),
                       "--output_dir", str(out), "--num_epochs", str(epochs), "--num_points", "256", "--eval_points", "256",
                       "--final_points", "256", "--batch_size", "12", "--bn_batches", "2", "--width", "0.25",
                       "--device", "cpu", "--no-baseline"]) == 0
    return json.loads((out / "metrics.json").read_text()), time.perf_counter() - t


@pytest.mark.parametrize("layout", ["h5", "txt"])
def test_train_pointnet_on_modelnet_fixture_beats_chance(tmp_path, layout):
    if layout == "h5":
        write_modelnet_h5(tmp_path / "data", n_train=16, n_test=12, points=256)
    else:
        write_modelnet_txt(tmp_path / "data", n_train=16, n_test=12, points=256)
    m, secs = _train(tmp_path, tmp_path / "data", layout)
    assert m["data_source"] == f"modelnet40_{layout}" and m["data"].startswith("dataset: ModelNet40")
    assert m["num_train"] == 48 and m["num_test"] == 36  # three balanced classes: chance is 1/3
    assert m["test_accuracy"] > 0.6, m["test_accuracy"]
    print(f"{layout}: held-out accuracy {m['test_accuracy']:.3f}, run {secs:.1f} s, training {m['train_time_s']:.1f} s")


def test_train_sizes_the_model_from_a_40_class_release(tmp_path):
    """A release that lists 40 classes trains a 40-way model (labels 8, 19, 37 are in range) and reports
    per-class accuracy only for the classes that have test clouds."""
    import torch

    write_modelnet_h5(tmp_path / "data", n_train=16, n_test=12, points=256, all_names=True)
    m, _ = _train(tmp_path, tmp_path / "data", "h5_40", epochs=5)  # 37 unused outputs: a little longer
    state = torch.load(tmp_path / "h5_40" / "checkpoints" / "best.pt", map_location="cpu", weights_only=False)
    saved = state.get("config", state.get("model_config"))
    assert saved["num_classes"] == 40
    assert sorted(k for k in m if k.startswith("test_accuracy_")) == [
        "test_accuracy_chair", "test_accuracy_lamp", "test_accuracy_vase"]
    assert m["test_accuracy"] > 0.6, m["test_accuracy"]
