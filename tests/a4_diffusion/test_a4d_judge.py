"""The judge that scores SDS results with the small prior: a classifier of shape, colour and view
trained on procedural renders, held to accuracies far above chance on renders it never saw, and its
``--score`` command labels a picture as the prompt that made it."""

import json

import pytest
import torch

from a4_gaussians_diffusion.diffusion import judge
from a4_gaussians_diffusion.diffusion.renders import COLOURS, VIEWS, caption, render_set
from l3d.media import save_image

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("judge")
    judge.main(["--num_images", "480", "--num_test", "160", "--steps", "150", "--batch_size", "32", "--no_cow",
                "--device", "cpu", "--output_dir", str(out)])
    return out


def test_judge_is_accurate_on_held_out_renders(trained):
    m = json.loads((trained / "metrics.json").read_text())
    acc, chance = m["heldout_accuracy"], m["chance"]
    # measured 0.975 / 1.000 / 0.844 at this size (chance 0.25 / 0.2 / 0.33)
    assert acc["shape"] >= 0.85 and acc["colour"] >= 0.9 and acc["view"] >= 0.65
    assert all(acc[k] > 2 * chance[k] for k in acc)
    assert m["heldout_accuracy_blurred"]["colour"] >= 0.9  # a soft SDS image is still judged by its colour


def test_score_names_a_renders_prompt(trained, tmp_path):
    shapes = json.loads((trained / "metrics.json").read_text())["shapes"]
    pics = render_set(6, seed=777, shapes=shapes, show_progress=False)  # seeds apart from training and held-out
    for i in range(len(pics)):
        save_image(tmp_path / f"pic_{i}.png", pics.images[i])
    j = judge.Judge.load(trained / "judge.pt")
    right = 0
    for i in range(len(pics)):
        prompt = caption(shapes[int(pics.shape[i])], list(COLOURS)[int(pics.colour[i])], VIEWS[int(pics.view[i])])
        out = judge.main(["--score", str(tmp_path / f"pic_{i}.png"), "--prompt", prompt, "--load_checkpoint",
                          str(trained / "judge.pt"), "--output_dir", str(tmp_path / "scores")])
        right += out["match"]["shape"] == 1.0 and out["match"]["colour"] == 1.0
        # the command and the class agree
        assert j.labels(pics.float_images()[i:i + 1])[0]["shape"] == out["images"][0]["shape"]
    assert right >= 5  # of 6 (shape and colour both right)
    with pytest.raises(Exception, match="--score"):
        judge.main(["--score", str(tmp_path / "missing.png"), "--load_checkpoint", str(trained / "judge.pt")])


def test_judge_logs_its_held_out_verdicts_to_tensorboard(trained):
    import io

    import numpy as np
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(trained / "tensorboard"), size_guidance={"images": 0})
    acc.Reload()
    ev = acc.Images("val/heldout_judged")[-1]
    img = np.asarray(Image.open(io.BytesIO(ev.encoded_image_string)).convert("RGB")).astype(int)
    assert ev.step == 149 and img.shape == (2 * 38, 8 * 38, 3)  # 16 renders of 32 px, each in a 3-px frame
    corners = img[0::38, 0::38].reshape(-1, 3)  # each frame's top-left pixel: green (right) or red (missed)
    green = (corners[:, 1] > 150) & (corners[:, 0] < 100)
    red = (corners[:, 0] > 180) & (corners[:, 1] < 100)
    assert (green | red).all() and green.sum() >= 10


def test_judge_names_no_shape_where_no_object_shows(trained):
    j = judge.Judge.load(trained / "judge.pt")
    red_field = torch.tensor(COLOURS["red"]).view(1, 3, 1, 1).expand(1, 3, 32, 32)  # a collapsed run's frame
    blank = torch.ones(1, 3, 32, 32)
    labs = j.labels(torch.cat([red_field, blank]))
    assert [lab["object"] for lab in labs] == ["fills the frame", "empty"]
    assert all(lab["shape"] == lab["colour"] == lab["view"] == "none" for lab in labs)
    pics = render_set(200, seed=4242, shapes=("cube", "sphere", "cone", "torus"), show_progress=False)
    assert all(lab["object"] == "yes" for lab in j.labels(pics.float_images()))  # every render shows its object
