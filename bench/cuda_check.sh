#!/usr/bin/env bash
# CUDA check: every assignment's GPU path once, with the full-size timings.
#
#     bash bench/cuda_check.sh [OUT_DIR]        (default output/cuda_check; needs a CUDA GPU)
#     SPEED_ONLY=1 bash bench/cuda_check.sh     (only the renderer / Gaussian speed benchmarks and
#                                                their table; on the CPU when there is no GPU)
#
# SPEED_ARGS_RASTER / SPEED_ARGS_A4 add flags to the two speed benchmarks (e.g. shorter runs).
#
# Each step runs with a time limit, prints its own numbers and leaves its files under OUT_DIR;
# a failing step is reported and the next one runs. The summary (one line per step: status and
# wall seconds) is OUT_DIR/steps.tsv; everything printed is OUT_DIR/log.txt.
set -u
OUT_DIR=${1:-output/cuda_check}
mkdir -p "$OUT_DIR"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
: > "$OUT_DIR/steps.tsv"

step() {  # step NAME LIMIT_S COMMAND...
    local name=$1 limit=$2
    shift 2
    echo "=== $name (limit ${limit} s): $*"
    local t0=$SECONDS
    timeout "$limit" "$@"
    local rc=$?
    printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - t0))" >> "$OUT_DIR/steps.tsv"
    echo "=== $name: exit $rc after $((SECONDS - t0)) s"
}

DEV=$($PY -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')" 2>/dev/null || echo cpu)

speed_table() {  # old vs new of the two speed benchmarks, one line each
    $PY - "$OUT_DIR" <<'PYEOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = []
r = out / "raster.json"
if r.is_file():
    d = json.loads(r.read_text())
    for k in ("baseline", "new"):
        if k in d:
            rows.append((f"cow {d['image_size']}px raster+Phong+UV ({k})", f"{d[k]['render_ms']:.1f} ms",
                         f"Embree/l3d {d[k]['ratio_embree_over_l3d']:.2f}", f"{d[k]['peak_rss_mib']:.0f} MiB RSS"
                         + (f", {d[k]['cuda_peak_mib']:.0f} MiB CUDA" if d[k].get("cuda_peak_mib") else "")))
            if "turntable_gif_s" in d[k]:
                rows.append((f"{d['turntable_frames']}-frame turntable GIF ({k})", f"{d[k]['turntable_gif_s']:.2f} s",
                             f"render {d[k]['turntable_render_s']:.2f} s", ""))
a = out / "a4_speed.json"
if a.is_file():
    d = json.loads(a.read_text())
    for k in ("baseline", "new"):
        if k in d.get("train", {}):
            t = d["train"][k]
            rows.append((f"Gaussians train iter 160x90 ({k})", f"{t['iter_wall_s'] * 1e3:.1f} ms",
                         f"CPU {t['iter_cpu_s'] * 1e3:.1f} ms", f"{t['peak_rss_mib']:.0f} MiB RSS"))
        if k in d.get("big", {}):
            b = d["big"][k]
            rows.append((f"{d['big']['num_gaussians']} Gaussians 648x420 ({k})", f"{b['frame_wall_s']:.3f} s",
                         f"with backward {b['grad_wall_s']:.3f} s", f"+{b['grad_peak_rss_delta_mib']:.0f} MiB RSS"
                         + (f", {b['grad_cuda_peak_mib']:.0f} MiB CUDA" if b.get("grad_cuda_peak_mib") else "")))
    for name, p in d.get("psnr", {}).items():
        rows.append((f"1000 iterations ({name})", f"{p['train_s']:.1f} s", f"PSNR {p['psnr']:.2f} dB", ""))
w = max((len(x[0]) for x in rows), default=10)
for row in rows:
    print(f"{row[0]:{w}s}  {row[1]:>10s}  {row[2]:24s}  {row[3]}")
PYEOF
}

if [ "${SPEED_ONLY:-0}" = 1 ]; then
    {
    echo "speed benchmarks on $DEV"
    step raster 600 $PY bench/bench_raster.py --device "$DEV" --output "$OUT_DIR/raster.json" ${SPEED_ARGS_RASTER:-}
    step a4_speed 900 $PY bench/bench_a4_speed.py --device "$DEV" --output "$OUT_DIR/a4_speed.json" ${SPEED_ARGS_A4:-}
    echo "speed (old = baseline commit, new = this tree):"
    speed_table
    } 2>&1 | tee "$OUT_DIR/log.txt"
    cat "$OUT_DIR/steps.tsv"
    exit 0
fi

{
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"

# Assignment 1 / core: cow at 512 x 512 (raster + Phong + UV) and the 100-frame turntable GIF,
# this tree against the baseline commit (bench_speed_common.BASELINE_COMMIT)
step raster 240 $PY bench/bench_raster.py --device cuda --output "$OUT_DIR/raster.json"
step a1_render_360 120 $PY -m a1_rendering.render_360 --device cuda --output_dir "$OUT_DIR/a1"

# Assignment 2: fit a mesh, train + evaluate a point model (tiny procedural preset: the GPU path, not quality)
step a2_fit_mesh 120 $PY -m a2_single_view.fit_data --type mesh --max_iter 2000 --device cuda --output_dir "$OUT_DIR/a2_fit_mesh"
step a2_train_point 120 $PY -m a2_single_view.train_model --type point --preset tiny --max_iter 300 --batch_size 16 \
    --save_freq 300 --device cuda --output_dir "$OUT_DIR/a2_point"
step a2_eval_point 120 $PY -m a2_single_view.eval_model --type point --preset tiny --device cuda \
    --load_checkpoint "$OUT_DIR/a2_point/checkpoints/last.pt" --vis_count 2 --output_dir "$OUT_DIR/a2_point_eval"

# Assignment 3: NeRF step (1024 rays x 128 samples) FLOP/s vs matmul; NeRF (60 s) and VolSDF (45 s) at 128 x 128
step a3_nerf_step 120 $PY bench/bench_a3_nerf_step.py --device cuda --output "$OUT_DIR/a3_nerf_step.json"
step a3_nerf_lego 300 $PY -m a3_volume_surface.volume_rendering_main --config-name=nerf_lego device=cuda \
    training.time_budget_s=60 training.render_interval=0 training.resume=false output_dir="$OUT_DIR/a3_nerf"
step a3_volsdf 200 $PY -m a3_volume_surface.surface_rendering_main --config-name=volsdf_surface device=cuda \
    training.time_budget_s=45 training.resume=false output_dir="$OUT_DIR/a3_volsdf"

# Assignment 4 Q1: tiled vs dense rasteriser (10k Gaussians, 256 x 256), 1000-iteration training
step a4_gauss_bench 180 $PY bench/bench_a4_gaussians.py --device cuda --output "$OUT_DIR/a4_gaussians.json"
step a4_speed 600 $PY bench/bench_a4_speed.py --device cuda --output "$OUT_DIR/a4_speed.json"
step a4_gauss_train 300 $PY -m a4_gaussians_diffusion.gaussians.train --data_path synthetic --num_itrs 1000 \
    --device cuda --output_dir "$OUT_DIR/a4_gaussians"

# Assignment 4 Q2: the tiny random pipeline through the CUDA path (fp16, attention slicing)
step a4_tiny 60 $PY -m a4_gaussians_diffusion.diffusion.tiny "$OUT_DIR/tiny_sd"
step a4_sds_image 120 $PY -m a4_gaussians_diffusion.diffusion.image_optimization --model "$OUT_DIR/tiny_sd" \
    --prompt "a hamburger" --quick --device cuda --output_dir "$OUT_DIR/sds_image"
step a4_sds_nerf 180 $PY -m a4_gaussians_diffusion.diffusion.nerf_optimization --model "$OUT_DIR/tiny_sd" \
    --prompt "a standing corgi dog" --quick --device cuda --output_dir "$OUT_DIR/sds_nerf"

# Assignment 5: throughput at 10000 points and a full-size classification run
step a5_throughput 180 $PY bench/bench_a5_throughput.py --device cuda --output "$OUT_DIR/a5_throughput.json"
step a5_train_cls 240 $PY -m a5_pointnet.train --task cls --num_epochs 5 --device cuda --output_dir "$OUT_DIR/a5_cls"
echo "speed (old = baseline commit, new = this tree):"
speed_table
} 2>&1 | tee "$OUT_DIR/log.txt"
echo "steps (name, exit status, seconds):"
cat "$OUT_DIR/steps.tsv"
