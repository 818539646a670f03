"""Turn a folder of photos into a COLMAP scene (structure from motion with pycolmap).

    python -m l3d.prepare --images <photos> --output_dir <scene>

Stages, each with its own progress bar: SIFT feature extraction (one shared camera,
``--camera_model``), matching (``--matcher exhaustive`` compares every pair; ``sequential``
only neighbours in file-name order, for video frames), incremental mapping (the bar counts
registered images), and undistortion into a PINHOLE model. The scene folder then holds
``images/`` (undistorted) and ``sparse/`` (cameras, images, points3D), readable by
:func:`l3d.scenes.read_colmap`, the Assignment 3 configs (``data.format=colmap``) and the
Gaussian trainer (``--data_path <scene>``). The working files (``database.db``, the distorted
model) stay in ``<scene>/colmap/``. metrics.json records the registered images, the points and
the mean reprojection error.

When fewer than ``--min_registered`` images register (too little texture or overlap) the
script stops with one line saying so and a non-zero exit status.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Dict, List, Optional

from .cli import ScriptParser, nonneg_int, positive_int, report, run_cli, script_parser
from .errors import UserError, user_error

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
CAMERA_MODELS = ("SIMPLE_RADIAL", "SIMPLE_PINHOLE", "PINHOLE", "RADIAL", "OPENCV")
#: --quick: SIFT on smaller photos with fewer features (a few seconds per stage for tens of photos)
QUICK = dict(max_image_size=800, max_features=2048)


def build_parser() -> ScriptParser:
    ap = script_parser(__doc__, "scene", presets={"quick": QUICK})
    ap.add_flag("data_path", aliases=("--images",), help="the folder of photos (JPEG/PNG, one scene)")
    ap.add_argument("--matcher", choices=["exhaustive", "sequential"], default="exhaustive",
                    help="exhaustive: every pair of images; sequential: each image with its --overlap successors "
                         "in file-name order (video frames)")
    ap.add_argument("--overlap", type=positive_int, default=10, help="sequential matching: successors per image")
    ap.add_argument("--camera_model", choices=CAMERA_MODELS, default="SIMPLE_RADIAL",
                    help="the camera model shared by all photos (distortion is removed at the end)")
    ap.add_argument("--max_image_size", type=positive_int, default=1600,
                    help="SIFT runs on photos shrunk to at most this side (pixels)")
    ap.add_argument("--max_features", type=positive_int, default=8192, help="SIFT features per image at most")
    ap.add_argument("--peak_threshold", type=float, default=0.0067,
                    help="SIFT peak threshold (lower finds more features on low-contrast photos)")
    ap.add_argument("--min_registered", type=positive_int, default=3,
                    help="fewer registered images than this is a failure (non-zero exit)")
    ap.add_argument("--num_threads", type=nonneg_int, default=0, help="CPU threads for COLMAP (0: all)")
    return ap


def _image_names(folder: Path) -> List[str]:
    if not folder.is_dir():
        raise user_error(f"--images {folder}", "a folder of photos", "no such folder")
    names = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if len(names) < 3:
        raise user_error(f"--images {folder}", "at least 3 photos (.jpg, .png, ...)", len(names))
    return names


def _stage(bar_desc: str, total: int = 1):
    from .train import progress

    return progress(total, desc=bar_desc)


def reconstruct(images: Path, out: Path, matcher: str = "exhaustive", overlap: int = 10,
                camera_model: str = "SIMPLE_RADIAL", max_image_size: int = 1600, max_features: int = 8192,
                peak_threshold: float = 0.0067, min_registered: int = 3, num_threads: int = 0, seed: int = 0,
                device: str = "auto") -> Dict[str, object]:
    """Run the four stages (module docstring); returns the numbers metrics.json records.

    Raises:
        UserError: no photos, fewer than ``min_registered`` registered images, an output folder
            that already holds a scene.
    """
    import pycolmap

    from .scenes import quiet_colmap

    names = _image_names(images)
    if (out / "sparse").exists() or (out / "images").exists():
        raise user_error(f"--output_dir {out}", "a new or empty folder", "one that already holds a scene (images/, sparse/)")
    work = out / "colmap"
    if work.exists():
        shutil.rmtree(work)  # the working files of an earlier, unfinished run
    work.mkdir(parents=True)
    db = work / "database.db"
    dev = {"auto": pycolmap.Device.auto, "cpu": pycolmap.Device.cpu}.get(device, pycolmap.Device.cuda)
    threads = num_threads if num_threads > 0 else -1
    times: Dict[str, float] = {}
    pycolmap.set_random_seed(seed)
    with quiet_colmap():
        t = time.perf_counter()
        reader = pycolmap.ImageReaderOptions()
        reader.camera_model = camera_model
        ext = pycolmap.FeatureExtractionOptions()
        ext.num_threads = threads
        ext.max_image_size = max_image_size
        ext.sift.max_num_features = max_features
        ext.sift.peak_threshold = peak_threshold
        with _stage(f"1/4 SIFT features ({len(names)} photos)") as bar:
            pycolmap.extract_features(str(db), str(images), image_names=names, camera_mode=pycolmap.CameraMode.SINGLE,
                                      reader_options=reader, extraction_options=ext, device=dev)
            bar.update()
        times["features_s"] = time.perf_counter() - t
        t = time.perf_counter()
        mopt = pycolmap.FeatureMatchingOptions()
        mopt.num_threads = threads
        pairs = len(names) * (len(names) - 1) // 2 if matcher == "exhaustive" else len(names) * overlap
        with _stage(f"2/4 {matcher} matching (~{pairs} pairs)") as bar:
            if matcher == "exhaustive":
                pycolmap.match_exhaustive(str(db), matching_options=mopt, device=dev)
            else:
                pair_opt = pycolmap.SequentialPairingOptions()
                pair_opt.overlap = overlap
                pycolmap.match_sequential(str(db), matching_options=mopt, pairing_options=pair_opt, device=dev)
            bar.update()
        times["matching_s"] = time.perf_counter() - t
        t = time.perf_counter()
        opts = pycolmap.IncrementalPipelineOptions()
        opts.num_threads = threads
        opts.random_seed = seed
        opts.min_model_size = min(3, min_registered)
        opts.mapper.init_min_num_inliers = 40  # small photo sets: fewer features per pair than COLMAP's 100
        opts.mapper.abs_pose_min_num_inliers = 15
        (work / "sparse").mkdir()
        with _stage("3/4 incremental mapping (registered images)", total=len(names)) as bar:
            recs = pycolmap.incremental_mapping(str(db), str(images), str(work / "sparse"), options=opts,
                                                next_image_callback=lambda: bar.update())
        times["mapping_s"] = time.perf_counter() - t
    best_id = max(recs, key=lambda k: recs[k].num_reg_images()) if recs else None
    registered = recs[best_id].num_reg_images() if best_id is not None else 0
    if registered < min_registered:
        raise UserError(f"registration failed: {registered} of {len(names)} photos of {images} registered "
                        f"(need at least {min_registered}); photos need overlap and texture "
                        f"(try more photos, --matcher exhaustive, or a lower --peak_threshold)")
    rec = recs[best_id]
    t = time.perf_counter()
    with quiet_colmap(), _stage("4/4 undistortion into a PINHOLE model") as bar:
        pycolmap.undistort_images(str(out), str(work / "sparse" / str(best_id)), str(images), num_threads=threads)
        bar.update()
    times["undistortion_s"] = time.perf_counter() - t
    return {"photos": len(names), "registered": registered, "models": len(recs), "points": rec.num_points3D(),
            "mean_reprojection_error_px": float(rec.compute_mean_reprojection_error()),
            "registered_names": sorted(im.name for im in rec.images.values() if im.has_pose), **times,
            "total_s": sum(times.values())}


def main(argv: Optional[List[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    if args.data_path is None:
        raise user_error("--images", "the folder of photos", "nothing")
    out = Path(args.output_dir)
    m = reconstruct(Path(args.data_path), out, args.matcher, args.overlap, args.camera_model, args.max_image_size,
                    args.max_features, args.peak_threshold, args.min_registered, args.num_threads, args.seed,
                    args.device)
    print(f"registered {m['registered']} of {m['photos']} photos, {m['points']} points, mean reprojection error "
          f"{m['mean_reprojection_error_px']:.3f} px")
    report(out, m, [out / "images", out / "sparse"])


if __name__ == "__main__":
    run_cli(main)
