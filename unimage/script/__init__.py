"""The UniMAGE script format: data model, tolerant parser, canonical serializer, vocabulary, splitting.

Importing this package has no side effects and does not import torch or transformers.
"""

from unimage.script.model import (
    CONTINUATION_PROMPT,
    Description,
    Entity,
    Marker,
    ParseResult,
    Problem,
    Script,
    ScriptError,
    Shot,
)
from unimage.script.parse import parse
from unimage.script.serialize import from_dict, serialize, to_dict

__all__ = [
    "CONTINUATION_PROMPT",
    "Description",
    "Entity",
    "Marker",
    "ParseResult",
    "Problem",
    "Script",
    "ScriptError",
    "Shot",
    "from_dict",
    "parse",
    "serialize",
    "to_dict",
]
