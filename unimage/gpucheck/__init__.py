"""One prepared GPU proof of the real-scale path, and its tiny CPU twin (``python -m unimage.gpucheck --out DIR``).

Four time-boxed steps, all on random weights and the project's own model code, recorded in ``gpucheck.json``:

1. ``parity``: attention backends (flash-attn varlen, compiled flex, SDPA) vs a float64 dense reference of the same
   ``AttentionLayout``, forward and backward (``parity``);
2. ``train``: fwd+bwd tokens/s, MFU and peak memory of a stack of real-shape MoT layers on an 8k-token pack, with
   activation checkpointing off and on (``train_step``);
3. ``inference``: prefill and KV-cached decoding tokens/s, and one 1024² keyframe's denoising step with three CFG
   branches batched vs sequential (``inference``);
4. ``fsdp``: one sharded step through ``UniMAGEFSDPStrategy`` (NCCL, or gloo on the CPU), sharded checkpoint,
   resume, equal loss (``fsdp``).

Sizes and time boxes come from ``scale.SCALES`` (``7b`` on CUDA, ``tiny`` on the CPU); ``runner`` keeps the boxes
and writes the record after every step. Importing this package imports nothing heavy.
"""
