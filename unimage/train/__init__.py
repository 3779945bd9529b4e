"""Training UniMAGE: the two-stage Lightning recipe (``icl`` then ``del``), EMA, export, ``unimage fit`` and ``fit()``.

Submodules (import what you need; importing this package imports nothing heavy and has no side effects):

- ``module``: ``UniMAGETrainModule`` (the LightningModule; stages, losses, optimiser, logging);
- ``ema``: the ``EMA`` callback; ``export``: ``BagelExport`` callback, ``export_module``, ``export_checkpoint``;
- ``checkpointing``: ``AtomicModelCheckpoint``; ``strategy``: ``UniMAGEFSDPStrategy``;
- ``cli``: ``unimage fit`` (LightningCLI); ``api``: ``fit(config, run_dir, overrides) -> export dir``.
"""
