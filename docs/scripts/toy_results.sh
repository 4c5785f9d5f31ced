#!/usr/bin/env bash
# The 2-D toy runs of docs/results.md section (e): for each toy, a shortrun and a longrun EBM
# (flags/shortrun_toy.cfg with --dataset overridden; the toy's own longrun preset:
# flags/longrun_toy.cfg for eight Gaussians, flags/longrun_toy_<toy>.cfg for the others, whose step
# sizes differ), then 500 chains from noise and 500 from exact samples run 100,000 steps with each
# model's own sampler, next to the exact energy -log p run by the same sampler at the longrun step
# size (docs/scripts/toy_stability.py).
# Usage: bash docs/scripts/toy_results.sh [train|eval|all] [toy ...]
#   toys: eight_gaussians two_rings checkerboard_smooth (default: all three)
# Each training run resumes when re-run. On 2 CPU cores (2-3 jobs at once) a longrun toy model takes
# 14-19 min to train and its 1,000 chains x 100,000 steps 7-15 min (session 6).
set -euo pipefail
cd "$(dirname "$0")/../.."
P=.venv/bin/python
step=${1:-all}
shift || true
toys=("$@")
[ ${#toys[@]} -gt 0 ] || toys=(eight_gaussians two_rings checkerboard_smooth)
for toy in "${toys[@]}"; do
  longrun_cfg=flags/longrun_toy_$toy.cfg
  [[ $toy == eight_gaussians ]] && longrun_cfg=flags/longrun_toy.cfg
  LONGRUN_EPS=$(sed -n 's/^--epsilon=//p' "$longrun_cfg")
  if [[ $step == train || $step == all ]]; then
    $P -m ebm_tf.train --flagfile=flags/shortrun_toy.cfg --dataset=toy_$toy --model_dir=runs/toys/shortrun_$toy
    $P -m ebm_tf.train --flagfile="$longrun_cfg" --model_dir=runs/toys/longrun_$toy
  fi
  if [[ $step == eval || $step == all ]]; then
    $P docs/scripts/toy_stability.py \
        --runs=shortrun=runs/toys/shortrun_$toy,longrun=runs/toys/longrun_$toy,exact=exact \
        --exact_step_size=$LONGRUN_EPS \
        --record_steps=0,1000,3000,10000,30000,100000 --num_chains=500 --bins=20 --seed=0 \
        --output_json=docs/toy_stability_$toy.json --output_png=docs/toy_stability_$toy.png
  fi
done
