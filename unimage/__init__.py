"""UniMAGE: a BAGEL Mixture-of-Transformers "unified director" — model, data, training and inference.

Importing this package has no side effects: submodules (and torch) are imported only when used.
"""

__version__ = "0.1.0"
