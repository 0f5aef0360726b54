"""Scoring: the ``evaluate`` stage (metrics of one variant on one scene) and the ``table`` stage.

- :mod:`.measures`: PSNR, SSIM (full, masked, outside), FID and KID from features (numpy).
- :mod:`.backbones`: LPIPS (AlexNet) and clean-fid Inception from local weight files only.
- :mod:`.stage`: the evaluate stage, ``results/{scene}/metrics/{variant}.json``.
- :mod:`.train_time`: the train stage's timings, as the metrics files carry them.
- :mod:`.table`: the table stage, ``results/table.csv`` and its companions (:mod:`.plot`,
  :mod:`.timings`).
- :mod:`.contact_sheet`: the table stage's per-scene contact sheets (one job per scene).
- :mod:`.sheets`: previews and contact sheets for a person to look at.
- :mod:`.commands`: the ``evaluate``, ``table`` and ``contact-sheet`` subcommands.

The package itself imports nothing, so that a module using only the image helpers of
:mod:`.sheets` (the pretrain stage's contact sheet) does not pull the evaluate stage into its
import closure, and with it into the pretrain cache key (:mod:`maldnerf.code_version`).
"""
