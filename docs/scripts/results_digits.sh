#!/usr/bin/env bash
# The runs behind docs/results.md (sklearn digits 8x8, 2 CPU cores). Each step resumes when
# re-run. Usage: bash docs/scripts/results_digits.sh [train|longrun|shortrun|shortrun_own|midrun|sweep|inception|all]
set -euo pipefail
cd "$(dirname "$0")/../.."
P=.venv/bin/python
OUT=runs/results
CLF=runs/classifier_digits
# One protocol for every model: 128 chains from the same 128 training images, the same seed, each
# model's own Langevin settings (run config), snapshots up to 50,000 steps.
PROTOCOL=(--init=data --split=train --num_samples=128 --batch_size=128 --num_steps=50000
          --record_steps=0,50,175,500,1750,5000,17500 --segment_steps=2500 --seed=0
          --feature=classifier --classifier_dir=$CLF)
step=${1:-all}

if [[ $step == train || $step == all ]]; then
  # The classifier and the midrun EBM of docs/defense_results.md:
  [ -d $CLF ] || $P -m ebm_tf.train_classifier --flagfile=flags/classifier_digits.cfg --model_dir=$CLF
  [ -d runs/midrun_digits ] || $P -m ebm_tf.train --flagfile=flags/midrun_digits.cfg --model_dir=runs/midrun_digits
  $P -m ebm_tf.train --flagfile=flags/shortrun_digits.cfg --train_steps=3000 --checkpoint_every=500 \
      --model_dir=runs/shortrun_digits_3k
  $P -m ebm_tf.train --flagfile=flags/longrun_prior_digits.cfg --model_dir=runs/longrun_prior_digits
  $P -m ebm_tf.train --flagfile=flags/longrun_correction_digits.cfg \
      --prior_model_dir=runs/longrun_prior_digits --model_dir=runs/longrun_correction_digits
fi
if [[ $step == longrun || $step == all ]]; then
  $P -m ebm_tf.evaluate_stability --model_dir=runs/longrun_correction_digits "${PROTOCOL[@]}" \
      --output_dir=$OUT/stability_longrun
fi
if [[ $step == shortrun || $step == all ]]; then
  $P -m ebm_tf.evaluate_stability --model_dir=runs/shortrun_digits_3k "${PROTOCOL[@]}" \
      --output_dir=$OUT/stability_shortrun
fi
if [[ $step == shortrun_own || $step == all ]]; then
  # The shortrun model from its own generator: its samples at eval_mcmc_steps (175) and at 10x
  # and 100x that.
  $P -m ebm_tf.evaluate_stability --model_dir=runs/shortrun_digits_3k --init=coop \
      --num_samples=128 --batch_size=128 --num_steps=17500 --record_steps=0,50,175,500,1750,5000 \
      --segment_steps=2500 --seed=0 --feature=classifier --classifier_dir=$CLF \
      --output_dir=$OUT/stability_shortrun_own
fi
if [[ $step == midrun || $step == all ]]; then
  # The same protocol, cut at 17,500 steps for compute (the later flags win).
  $P -m ebm_tf.evaluate_stability --model_dir=runs/midrun_digits "${PROTOCOL[@]}" \
      --num_steps=17500 --record_steps=0,50,175,500,1750,5000 --output_dir=$OUT/stability_midrun
fi
if [[ $step == sweep || $step == all ]]; then
  # The paper's FID protocol per checkpoint: fresh G(z) of that checkpoint, eval_mcmc_steps (175).
  $P -m ebm_tf.evaluate_fid --model_dir=runs/shortrun_digits_3k --checkpoints=all \
      --num_samples=256 --batch_size=256 --feature=classifier --classifier_dir=$CLF \
      --output_dir=$OUT/sweep_shortrun
fi
if [[ $step == inception || $step == all ]]; then
  $P -m ebm_tf.evaluate_fid --model_dir=runs/shortrun_digits_3k --checkpoints=latest \
      --num_samples=200 --batch_size=200 --feature=inception --output_dir=$OUT/inception_shortrun
fi
