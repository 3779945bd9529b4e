"""Director inference: write, extend and continue UniMAGE scripts and render their keyframes; ViStoryBench generation.

Modules: ``config`` (``SamplingConfig``), ``grammar`` (the script structure enforced while decoding), ``decoding``
(token stream over the KV cache, constrained choice), ``director`` (``Director``), ``vistory`` (``story.json`` →
script → keyframes in the ViStoryBench output layout), ``cli`` (the ``unimage write|extend|continue|render|
generate-vistory`` commands). Importing this package imports nothing heavy.
"""
