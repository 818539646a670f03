"""Assignment 5: PointNet classification and segmentation, robustness, and a model with locality.

Modules
-------
synthetic   procedural chairs / vases / lamps as surface point clouds with per-point part labels
data        the course's .npy layout (``a5/{cls,seg}/{data,label}_{train,test}.npy``) or the
            cached procedural stand-in in the same layout; bounding-box features
models      PointNet (classification, segmentation) and PointNet++ (farthest-point sampling,
            ball query, feature propagation), built from a :class:`~a5_pointnet.models.ModelConfig`
pointops    farthest-point sampling, ball query, three-nearest-neighbour interpolation
baseline    the bounding-box-extents classifier that the PointNet accuracy is compared with
common      evaluation in chunks, checkpoint loading, turntable GIFs with the course colours

Command lines: ``train``, ``eval_cls``, ``eval_seg``, ``robustness``, ``demo``
(``python -m a5_pointnet.<name> --help``).

Dimension letters: B batch (point clouds), P points per cloud, C channels/classes,
M sampled centroids, K neighbours per centroid.
"""

import l3d  # noqa: F401,E402  (first: l3d sets the CPU threads' wait policy before torch loads)
