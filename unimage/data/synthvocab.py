"""The SynthStory vocabulary: colours, shapes, accessories, places, landmarks and names, each with its
English and Chinese words and (for colours) its exact RGB value.

Why fixed tables: the generator's ground truth is checked against rendered pixels, so every colour a
character can wear must differ (exactly, and clearly to the eye) from every colour a background can use.
`tests/unimage/data/test_synthstory.py` asserts the palettes are disjoint. All tables are immutable tuples;
nothing here is mutable module state.
"""

from __future__ import annotations

from dataclasses import dataclass

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Word:
    """A word or phrase in both languages of ViStoryBench (``ch`` is the benchmark's key for Chinese)."""

    en: str
    ch: str


@dataclass(frozen=True)
class NamedColor:
    """A palette entry: its words and its exact RGB value."""

    en: str
    ch: str
    rgb: RGB


# --------------------------------------------------------------------------------------------- characters
BODY_COLORS: tuple[NamedColor, ...] = (
    NamedColor("red", "红色", (214, 39, 40)),
    NamedColor("orange", "橙色", (255, 127, 14)),
    NamedColor("yellow", "黄色", (240, 200, 0)),
    NamedColor("green", "绿色", (44, 160, 44)),
    NamedColor("teal", "青色", (23, 190, 207)),
    NamedColor("blue", "蓝色", (31, 119, 180)),
    NamedColor("purple", "紫色", (148, 103, 189)),
    NamedColor("pink", "粉色", (227, 119, 194)),
    NamedColor("brown", "棕色", (140, 86, 75)),
    NamedColor("lime", "黄绿色", (188, 189, 34)),
)
HEAD_COLORS: tuple[NamedColor, ...] = (
    NamedColor("peach", "桃色", (255, 218, 185)),
    NamedColor("cream", "奶油色", (255, 246, 214)),
    NamedColor("tan", "棕褐色", (210, 180, 140)),
    NamedColor("pale grey", "浅灰色", (216, 216, 224)),
)
ACCESSORY_COLORS: tuple[NamedColor, ...] = (
    NamedColor("black", "黑色", (20, 20, 20)),
    NamedColor("white", "白色", (255, 255, 255)),
    NamedColor("gold", "金色", (212, 175, 55)),
    NamedColor("silver", "银色", (168, 169, 173)),
)
EYE_COLOR: RGB = (20, 20, 20)
# Reference images are drawn on this neutral grey, which no palette uses.
REF_BACKGROUND: RGB = (244, 244, 244)

HEAD_SHAPES: dict[str, Word] = {
    "circle": Word("round", "圆形"),
    "square": Word("square", "方形"),
    "triangle": Word("triangular", "三角形"),
    "diamond": Word("diamond-shaped", "菱形"),
}
BODY_SHAPES: dict[str, Word] = {
    "box": Word("boxy", "方方正正的"),
    "round": Word("round", "圆滚滚的"),
    "cone": Word("cone-shaped", "圆锥形的"),
    "bell": Word("bell-shaped", "钟形的"),
}
ACCESSORIES: dict[str, Word] = {
    "none": Word("", ""),
    "top_hat": Word("top hat", "高礼帽"),
    "crown": Word("crown", "王冠"),
    "scarf": Word("scarf", "围巾"),
    "belt": Word("belt", "腰带"),
}
HEADWEAR: frozenset[str] = frozenset({"top_hat", "crown"})

# ViStoryBench character tags; our figures are never `realistic_human` (that tag routes CIDS to face encoders).
TAG_BY_HEAD: dict[str, str] = {
    "circle": "unrealistic_human",
    "square": "non_human",
    "triangle": "non_human",
    "diamond": "non_human",
}

NAMES: tuple[Word, ...] = (
    Word("Pip", "皮普"),
    Word("Bo", "波波"),
    Word("Kiki", "琪琪"),
    Word("Milo", "米洛"),
    Word("Nova", "诺娃"),
    Word("Tuck", "塔克"),
    Word("Luma", "露玛"),
    Word("Zed", "泽德"),
    Word("Poppy", "波比"),
    Word("Rex", "雷克斯"),
    Word("Juno", "朱诺"),
    Word("Fizz", "菲兹"),
    Word("Momo", "莫莫"),
    Word("Otto", "奥托"),
    Word("Sunny", "桑尼"),
    Word("Dot", "多特"),
    Word("Wren", "雷恩"),
    Word("Taro", "塔罗"),
    Word("Ivy", "艾薇"),
    Word("Finn", "芬恩"),
    Word("Gus", "格斯"),
    Word("Lulu", "露露"),
    Word("Max", "麦克斯"),
    Word("Nell", "内尔"),
)


# ------------------------------------------------------------------------------------------- environments
@dataclass(frozen=True)
class Sky:
    """A time of day: the sky colour and the lighter colour its pattern is drawn in."""

    en: str
    ch: str
    color: NamedColor
    pattern_rgb: RGB
    sound: Word


@dataclass(frozen=True)
class Ground:
    """A kind of place: its name and ground colour."""

    en: str
    ch: str
    color: NamedColor


@dataclass(frozen=True)
class Landmark:
    """A background object drawn on one side of the frame, in two colours (main part, detail)."""

    en: str
    ch: str
    main_rgb: RGB
    detail_rgb: RGB


SKIES: tuple[Sky, ...] = (
    Sky(
        "sunny",
        "晴朗的",
        NamedColor("light blue", "浅蓝色", (135, 206, 235)),
        (185, 226, 245),
        Word("Birds chirp softly", "鸟儿轻声啁啾"),
    ),
    Sky(
        "sunset",
        "日落时的",
        NamedColor("orange", "橘黄色", (250, 180, 120)),
        (252, 210, 170),
        Word("A warm breeze hums", "温暖的微风轻响"),
    ),
    Sky(
        "night",
        "夜晚的",
        NamedColor("dark blue", "深蓝色", (25, 25, 60)),
        (70, 70, 110),
        Word("Crickets sing in the dark", "蟋蟀在黑暗中鸣叫"),
    ),
    Sky(
        "dawn",
        "黎明时的",
        NamedColor("rose", "玫瑰色", (245, 200, 215)),
        (250, 225, 235),
        Word("A rooster crows far away", "远处公鸡啼鸣"),
    ),
    Sky(
        "misty",
        "雾蒙蒙的",
        NamedColor("misty green", "雾绿色", (205, 225, 215)),
        (228, 240, 233),
        Word("Wind whistles gently", "风轻轻呼啸"),
    ),
    Sky(
        "twilight",
        "暮色中的",
        NamedColor("lavender", "淡紫色", (170, 150, 210)),
        (198, 184, 228),
        Word("Soft bells ring", "柔和的铃声响起"),
    ),
)
GROUNDS: tuple[Ground, ...] = (
    Ground("meadow", "草地", NamedColor("soft green grass", "嫩绿的草", (150, 190, 110))),
    Ground("desert", "沙漠", NamedColor("golden sand", "金色的沙子", (230, 205, 150))),
    Ground("snowfield", "雪原", NamedColor("white snow", "白雪", (238, 243, 248))),
    Ground("plaza", "广场", NamedColor("grey stone", "灰色的石板", (150, 150, 140))),
    Ground("dirt road", "土路", NamedColor("brown earth", "褐色的泥土", (160, 120, 85))),
)
LANDMARKS: tuple[Landmark, ...] = (
    Landmark("tall tree", "大树", (34, 100, 34), (101, 67, 33)),
    Landmark("small house", "小房子", (205, 190, 170), (150, 50, 40)),
    Landmark("mountain", "山峰", (110, 110, 130), (245, 245, 240)),
    Landmark("stone tower", "石塔", (120, 100, 90), (90, 75, 65)),
    Landmark("lamp post", "路灯", (60, 60, 60), (255, 240, 150)),
)
PATTERNS: dict[str, Word] = {
    "plain": Word("clear", "纯净"),
    "stripes": Word("striped with pale bands", "带有浅色条纹"),
    "dots": Word("dotted with tiny lights", "点缀着点点微光"),
    "grid": Word("crossed by a faint grid", "布满淡淡的网格"),
}

# ------------------------------------------------------------------------------------------------- shots
SHOT_SIZES: dict[str, tuple[str, Word]] = {
    # size -> (script prefix as in the published UniMAGE scripts, ViStoryBench "Shot Perspective Design")
    "close-up": ("Close-up", Word("Close-up shot, eye level shot", "特写，平视镜头")),
    "medium": ("Medium shot", Word("Medium shot, eye level shot", "中景，平视镜头")),
    "long": ("Long shot", Word("Long shot, eye level shot", "远景，平视镜头")),
}
POSITIONS: dict[str, Word] = {
    "left": Word("on the left", "在左边"),
    "center": Word("in the center", "在中间"),
    "right": Word("on the right", "在右边"),
}
SOLO_ACTIONS: tuple[Word, ...] = (
    Word("looks around with curiosity", "好奇地四处张望"),
    Word("jumps with joy", "开心地跳了起来"),
    Word("stretches and yawns", "伸了个懒腰，打了个哈欠"),
    Word("walks slowly forward", "慢慢地向前走"),
    Word("sits down to rest", "坐下来休息"),
)
PAIR_ACTIONS: tuple[Word, ...] = (
    Word("waves at {o}", "向{o}挥手"),
    Word("smiles at {o}", "对{o}微笑"),
    Word("points towards {o}", "指向{o}"),
    Word("walks up to {o}", "走向{o}"),
    Word("bows to {o}", "向{o}鞠躬"),
)
LINES: tuple[Word, ...] = (
    Word("Hello there!", "你好呀！"),
    Word("Look at this place.", "看看这个地方。"),
    Word("Shall we go on?", "我们继续走吧？"),
    Word("I have an idea.", "我有个主意。"),
    Word("What a day!", "多美好的一天！"),
)
CAMERAS: tuple[str, ...] = (
    "The camera holds still",
    "The camera slowly pushes in",
    "The camera pans gently to the right",
    "The camera slowly pulls back",
)
THEMES: tuple[Word, ...] = (
    Word("friendship", "友谊"),
    Word("curiosity", "好奇心"),
    Word("courage", "勇气"),
    Word("a small adventure", "一次小小的冒险"),
    Word("a surprise meeting", "一次意外的相遇"),
)
# The four user-prompt styles of the paper's supplement: simple narrative, abstract concept, phrase
# splicing, spoken expression.
PROMPT_STYLES: tuple[str, ...] = ("narrative", "concept", "phrases", "spoken")
