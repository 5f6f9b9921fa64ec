"""Run machinery: what a training run writes and reads, behind ``train.pretrain``.

* :mod:`.paths` -- a run folder's layout (config.json, metrics.json, checkpoints/last.pt, the lock), in one place
* :mod:`.lock` -- one writer per run folder; the checks before a run writes anything
* :mod:`.checkpoint` -- atomic checkpoints, loaded with ``weights_only=True``; save and resume a run bit-exactly
* :mod:`.recorder` -- what a run records while it trains: health checks, progress bar, TensorBoard, kNN monitor,
  history, metrics.json
* :mod:`.registry` -- trained encoders by name, path or URL: ``simclr_lib.pretrained``

Nothing here is imported by the paper's modules except ``train``; import the sub-modules directly.
"""
