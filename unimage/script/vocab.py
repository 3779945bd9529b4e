"""The special-token vocabulary of UniMAGE scripts and of In-Context ID Prompting.

Script tokens (paper §3.2, §3.4): ``<User>``, ``<Extension>``, ``<Continuation>``, ``<Character1..C>``,
``<Environment1..E>``, ``<Frame1..S>``, ``<Video1..S>``. Each is registered as ONE special token, so a mention costs
one position and has its own embedding row. Indices above the configured maxima are not special and are tokenized as
plain text (the parser still reads them).

ID tokens (paper §3.3, In-Context ID Prompting): inside each image block the model sees text tokens naming the frame
and the characters and environments shown. We reuse the script's own tokens for this (``<Frame3> <Character1>
<Environment2>``) rather than inventing parallel ones: the paper ties the image to "the global text descriptions",
and sharing the embedding row is what makes a mention in the text and an identity in an image the same symbol.
The layout inside one image block is::

    <|vision_start|> <FrameN> <CharacterI>... <EnvironmentJ>... [ViT or VAE image tokens] <|vision_end|>

with full (bidirectional) attention between an image's tokens and its ID tokens. Reference images that are not a
shot (e.g. a character sheet) use ``frame=None`` and carry only identity tokens.

BAGEL's chat/vision tokens (``reference/bagel-compat.md`` §4.3) are listed here too, with the Qwen2.5 ids.
"""

from __future__ import annotations

from dataclasses import dataclass

from unimage.script.model import Shot

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"  # BAGEL's bos: opens every text segment
IM_END = "<|im_end|>"  # BAGEL's eos: closes every text segment, stops generation
VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"
BAGEL_SPECIAL_TOKENS: tuple[str, ...] = (ENDOFTEXT, IM_START, IM_END, VISION_START, VISION_END)
#: Ids of those tokens in the Qwen2.5 tokenizer shipped with BAGEL-7B-MoT (tokenizer length 151665).
QWEN2_SPECIAL_IDS: dict[str, int] = {
    ENDOFTEXT: 151643,
    IM_START: 151644,
    IM_END: 151645,
    VISION_START: 151652,
    VISION_END: 151653,
}
QWEN2_TOKENIZER_LEN = 151665
QWEN2_EMBEDDING_ROWS = 152064


@dataclass(frozen=True)
class VocabConfig:
    """Maxima of the indexed script tokens.

    The defaults add 3 + 32 + 32 + 2*128 = 323 tokens, which fit in the 152064 - 151665 = 399 spare embedding rows of
    BAGEL-7B-MoT, so the real checkpoint needs no resize.
    """

    max_characters: int = 32
    max_environments: int = 32
    max_shots: int = 128

    def __post_init__(self) -> None:
        for name in ("max_characters", "max_environments", "max_shots"):
            if getattr(self, name) < 1:
                raise ValueError(f"VocabConfig.{name} must be >= 1, got {getattr(self, name)}")


VOCAB_SIZES: dict[str, VocabConfig] = {
    "tiny": VocabConfig(max_characters=4, max_environments=4, max_shots=8),
    "default": VocabConfig(),
}


class ScriptVocab:
    """The ordered list of script special tokens for a :class:`VocabConfig` and helpers to name them."""

    def __init__(self, config: VocabConfig | None = None) -> None:
        self.config = config or VocabConfig()
        c = self.config
        self.tokens: tuple[str, ...] = (
            "<User>",
            "<Extension>",
            "<Continuation>",
            *(f"<Character{i}>" for i in range(1, c.max_characters + 1)),
            *(f"<Environment{i}>" for i in range(1, c.max_environments + 1)),
            *(f"<Frame{i}>" for i in range(1, c.max_shots + 1)),
            *(f"<Video{i}>" for i in range(1, c.max_shots + 1)),
        )
        self._known = frozenset(self.tokens)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._known

    def _indexed(self, name: str, index: int, maximum: int, field: str) -> str:
        if not 1 <= index <= maximum:
            raise ValueError(f"<{name}{index}> is outside the vocabulary: 1 <= index <= {field}={maximum}")
        return f"<{name}{index}>"

    def character(self, index: int) -> str:
        """``<CharacterN>``; raises ValueError beyond ``max_characters``."""
        return self._indexed("Character", index, self.config.max_characters, "max_characters")

    def environment(self, index: int) -> str:
        """``<EnvironmentN>``; raises ValueError beyond ``max_environments``."""
        return self._indexed("Environment", index, self.config.max_environments, "max_environments")

    def frame(self, index: int) -> str:
        """``<FrameN>``; raises ValueError beyond ``max_shots``."""
        return self._indexed("Frame", index, self.config.max_shots, "max_shots")

    def video(self, index: int) -> str:
        """``<VideoN>``; raises ValueError beyond ``max_shots``."""
        return self._indexed("Video", index, self.config.max_shots, "max_shots")


@dataclass(frozen=True)
class IdPrompt:
    """The identities In-Context ID Prompting writes into one image block."""

    frame: int | None
    characters: tuple[int, ...] = ()
    environments: tuple[int, ...] = ()

    def tokens(self, vocab: ScriptVocab) -> list[str]:
        """The ID tokens in block order: frame, then characters, then environments."""
        out = [] if self.frame is None else [vocab.frame(self.frame)]
        out += [vocab.character(i) for i in self.characters]
        out += [vocab.environment(i) for i in self.environments]
        return out


def id_prompt_for_shot(shot: Shot) -> IdPrompt:
    """Identities shown in a shot's keyframe: the mentions of its frame description (the keyframe's static layout).

    Falls back to the video description when the frame is missing. Order is first mention; duplicates are dropped.
    """
    desc = shot.frame if shot.frame is not None else shot.video
    mentions = desc.mentions if desc is not None else ()
    chars = tuple(dict.fromkeys(m.index for m in mentions if m.kind == "character"))
    envs = tuple(dict.fromkeys(m.index for m in mentions if m.kind == "environment"))
    return IdPrompt(shot.index, chars, envs)
