"""The UniMAGE model in pure PyTorch (BAGEL-7B-MoT compatible); never imports Lightning.

Modules, bottom-up: ``config`` (typed configs, size registry), ``attention`` (mask metadata and backends), ``mot``
(the MoT decoder), ``vit`` / ``vae`` / ``embeddings`` (encoders and small heads), ``packing`` (packed sequences and
In-Context ID Prompting), ``unimage`` (the top-level ``UniMAGE`` module and losses), ``cache`` / ``generation``
(KV-cache inference), ``checkpoint`` (BAGEL-layout directories). Import what you need from those modules; this
package file imports nothing, so ``import unimage.model`` stays free of side effects.
"""
