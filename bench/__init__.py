"""ViStoryBench re-implementation: dataset and output readers, metrics, backbones and the evaluator.

`bench` never imports `unimage`: it scores images and story files written by any method.
"""
