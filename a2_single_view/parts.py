"""The questions of Assignment 2 as the gallery shows them (torch-free: read by ``l3d.report``).

Every folder is written by ``python -m a2_single_view.demo`` (the commands below at --quick
size); the course's R2N2 renders are not in the data root, so every part runs on the procedural
stand-in and says so in its metrics.json. The course publishes no reference images for A2.
"""

from l3d.checks import Part

_A2 = "a2_single_view"
_TRAIN = "python -m a2_single_view.train_model --type {t} --load_feat --quick && " \
         "python -m a2_single_view.eval_model --type {t} --quick"

PARTS = [
    Part("A2 1.1", "Fitting a voxel grid", f"{_A2}/fit_vox",
         command="python -m a2_single_view.fit_data --type vox --quick",
         checks=("iou",), media=("fit_vox.gif", "losses.png")),
    Part("A2 1.2", "Fitting a point cloud", f"{_A2}/fit_point",
         command="python -m a2_single_view.fit_data --type point --quick",
         checks=("chamfer",), media=("fit_point.gif", "losses.png")),
    Part("A2 1.3", "Fitting a mesh", f"{_A2}/fit_mesh",
         command="python -m a2_single_view.fit_data --type mesh --quick",
         checks=("chamfer",), media=("fit_mesh.gif", "losses.png")),
    Part("A2 2.1", "Image to voxel grid", f"{_A2}/eval_vox", command=_TRAIN.format(t="vox"),
         checks=("f1_margin_over_mean_shape",), media=("example_*.gif", "eval_vox.png")),
    Part("A2 2.2", "Image to point cloud", f"{_A2}/eval_point", command=_TRAIN.format(t="point"),
         checks=("f1_margin_over_mean_shape",), media=("example_*.gif", "eval_point.png")),
    Part("A2 2.3", "Image to mesh", f"{_A2}/eval_mesh",
         command="python -m a2_single_view.train_model --type mesh --load_feat --quick "
                 "--init_from output/a2_single_view/train_point/checkpoints/last.pt && "
                 "python -m a2_single_view.eval_model --type mesh --quick",
         checks=("f1_margin_over_mean_shape",), media=("example_*.gif", "eval_mesh.png")),
    Part("A2 2.4", "Quantitative comparison (F1)", f"{_A2}/compare",
         command="python -m a2_single_view.compare",
         checks=("smallest_margin_over_mean_shape",), media=("compare_f1.png",)),
    Part("A2 2.5", "Effect of w_smooth", f"{_A2}/study_wsmooth",
         command="python -m a2_single_view.study_wsmooth --load_feat --quick --steps 50 "
                 "--init_from output/a2_single_view/train_mesh/checkpoints/last.pt",
         checks=("smoothness_ratio",), media=("examples.gif", "f1_curves.png")),
    Part("A2 2.6", "Interpreting the model", f"{_A2}/interpret_point",
         command="python -m a2_single_view.interpret --type point --quick",
         checks=("error_explains_f1",), media=("error_*.gif", "failures.png")),
    Part("A2 3.1", "Implicit network", f"{_A2}/eval_implicit", command=_TRAIN.format(t="implicit"),
         checks=("f1_margin_over_mean_shape",), media=("example_*.gif", "eval_implicit.png")),
    Part("A2 3.3", "One class vs three classes", f"{_A2}/study_classes_point",
         command="python -m a2_single_view.study_classes --type point --load_feat --quick --steps 50 "
                 "--init_from output/a2_single_view/train_point/checkpoints/last.pt",
         checks=("three_class_gain_on_cars_airplanes",), media=("examples.gif", "f1_curves.png")),
]
