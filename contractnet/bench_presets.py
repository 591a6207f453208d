"""Benchmark shapes: named presets from real architectures, and ``--shape`` parsing.

Each preset names an architecture.  Its *head* shape ``(B, N, M, D, K)`` is
the conv-to-FC layer: the last conv/pool activation ``(N, M, D)`` contracted
into ``K`` units.  Its *conv* shape is the last convolution before that head,
channels last: input ``(B, H, W, C)``, kernel ``(KH, KW, C, K)``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

KINDS = ("head", "conv", "heads")


@dataclass(frozen=True)
class HeadShape:
    """A conv-to-FC head: activation ``(B, N, M, D)``, weight ``(N, M, D, K)``.

    >>> HeadShape(128, 4, 4, 50, 500).flops
    102400000
    """

    B: int
    N: int
    M: int
    D: int
    K: int

    @property
    def flops(self) -> int:
        """Floating-point operations of the forward pass (2 per multiply-add)."""
        return 2 * self.B * self.N * self.M * self.D * self.K

    @property
    def label(self) -> str:
        return f"B={self.B} N={self.N} M={self.M} D={self.D} K={self.K}"

    def as_dict(self) -> dict[str, int]:
        return {"B": self.B, "N": self.N, "M": self.M, "D": self.D, "K": self.K}


@dataclass(frozen=True)
class ConvShape:
    """A 2-D convolution, channels last: ``x (B, H, W, C)``, ``w (KH, KW, C, K)``.

    >>> ConvShape(1, 5, 5, 1, 3, 3, 1, stride=2, padding=1).output_hw
    (3, 3)
    """

    B: int
    H: int
    W: int
    C: int
    KH: int
    KW: int
    K: int
    stride: int = 1
    padding: int = 0

    @property
    def output_hw(self) -> tuple[int, int]:
        """Output height and width."""
        ho = (self.H + 2 * self.padding - self.KH) // self.stride + 1
        wo = (self.W + 2 * self.padding - self.KW) // self.stride + 1
        return ho, wo

    @property
    def flops(self) -> int:
        """Floating-point operations of the forward pass (2 per multiply-add)."""
        ho, wo = self.output_hw
        return 2 * self.B * ho * wo * self.KH * self.KW * self.C * self.K

    @property
    def label(self) -> str:
        return (f"x {self.B}x{self.H}x{self.W}x{self.C} w {self.KH}x{self.KW}x{self.C}x{self.K}"
                f" s{self.stride} p{self.padding}")

    def as_dict(self) -> dict[str, int]:
        return {"B": self.B, "H": self.H, "W": self.W, "C": self.C, "KH": self.KH,
                "KW": self.KW, "K": self.K, "stride": self.stride, "padding": self.padding}


@dataclass(frozen=True)
class Preset:
    """A named architecture: where its shapes come from, its head and conv shapes."""

    name: str
    source: str
    head: HeadShape
    conv: ConvShape


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("digits", "the CNN of 'contractnet train digits' (scikit-learn's 8x8 digits, "
           "batch 32): conv 1 -> 16, 3x3 same, 2x2 max pool, 4x4x16 into 10 classes",
           HeadShape(32, 4, 4, 16, 10), ConvShape(32, 8, 8, 1, 3, 3, 16, 1, 1)),
    Preset("lenet5", "LeNet-5 (LeCun et al. 1998): S4 5x5x16 into the 120-unit C5; "
           "conv C3 14x14x6 -> 16, 5x5",
           HeadShape(128, 5, 5, 16, 120), ConvShape(128, 14, 14, 6, 5, 5, 16)),
    Preset("lenet", "Caffe's LeNet for MNIST: pool2 4x4x50 into ip1 (500); "
           "conv2 12x12x20 -> 50, 5x5",
           HeadShape(128, 4, 4, 50, 500), ConvShape(128, 12, 12, 20, 5, 5, 50)),
    Preset("mnist-cnn", "two conv+pool blocks on 28x28 MNIST: 7x7x64 into 128 hidden units; "
           "conv 14x14x32 -> 64, 3x3 pad 1",
           HeadShape(256, 7, 7, 64, 128), ConvShape(256, 14, 14, 32, 3, 3, 64, 1, 1)),
    Preset("alexnet-fc6", "AlexNet (Krizhevsky et al. 2012): pool5 6x6x256 into fc6 (4096); "
           "conv5 13x13x384 -> 256, 3x3 pad 1",
           HeadShape(64, 6, 6, 256, 4096), ConvShape(32, 13, 13, 384, 3, 3, 256, 1, 1)),
    Preset("vgg-head", "VGG-16 pool5 7x7x512 into a 1024-unit layer (a narrowed fc6, "
           "as in fine-tuning heads); conv5_3 14x14x512 -> 512, 3x3 pad 1",
           HeadShape(64, 7, 7, 512, 1024), ConvShape(8, 14, 14, 512, 3, 3, 512, 1, 1)),
    Preset("vgg16-fc6", "VGG-16 (Simonyan & Zisserman 2014): pool5 7x7x512 into fc6 (4096); "
           "conv5_3 14x14x512 -> 512, 3x3 pad 1",
           HeadShape(32, 7, 7, 512, 4096), ConvShape(8, 14, 14, 512, 3, 3, 512, 1, 1)),
    Preset("resnet-head", "ResNet-50 (He et al. 2016): global-average-pooled 1x1x2048 into "
           "fc (1000); conv5_x 3x3 7x7x512 -> 512, pad 1",
           HeadShape(64, 1, 1, 2048, 1000), ConvShape(16, 7, 7, 512, 3, 3, 512, 1, 1)),
)}

#: What ``contractnet bench`` runs with no arguments: small, under a minute on 2 cores.
QUICK_PRESETS = ("digits", "lenet5", "lenet", "mnist-cnn")
#: The head shapes the 1.05x target is stated for (see benchmarks/head_ratio.py).
ACCEPTANCE_HEADS = (HeadShape(128, 4, 4, 50, 500), HeadShape(256, 7, 7, 64, 128),
                    HeadShape(64, 7, 7, 512, 1024))


def get_preset(name: str) -> Preset:
    """The preset called ``name``.

    Raises
    ------
    ValueError
        If there is no such preset; the message lists the valid names.

    Examples
    --------
    >>> get_preset("lenet").head
    HeadShape(B=128, N=4, M=4, D=50, K=500)
    """
    try:
        return PRESETS[name]
    except KeyError:
        hint = (f" ('{name}' is a benchmark: put it before the options)"
                if name in KINDS + ("all",) else "")
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}"
                         + hint) from None


def parse_shape(text: str) -> HeadShape | ConvShape:
    """Parse ``--shape``: 5 integers for a head, 7 to 9 for a conv.

    Head: ``B,N,M,D,K``.  Conv: ``B,H,W,C,KH,KW,K[,stride[,padding]]``.
    Separators may be commas or ``x``.

    Raises
    ------
    ValueError
        If the text is not 5 or 7-9 positive integers, or a conv's kernel
        does not fit its padded input; the message quotes the text.

    Examples
    --------
    >>> parse_shape("128x4x4x50x500")
    HeadShape(B=128, N=4, M=4, D=50, K=500)
    >>> parse_shape("8,14,14,512,3,3,512,1,1").padding
    1
    """
    parts = re.split(r"\s*[,x]\s*|\s+", text.strip())  # one separator between numbers
    if not all(re.fullmatch("-?[0-9]+", p) for p in parts):  # a negative one: its own error
        raise ValueError(f"bad --shape {text!r}: expected integers separated by ',' or 'x', "
                         "B,N,M,D,K for a head or B,H,W,C,KH,KW,K[,stride[,padding]] for a conv")
    values = [int(p) for p in parts]
    if len(values) == 5:
        if min(values) < 1:
            raise ValueError(f"bad --shape {text!r}: every head size must be at least 1")
        return HeadShape(*values)
    if 7 <= len(values) <= 9:
        return _conv_shape(text, values)
    raise ValueError(f"bad --shape {text!r}: {len(values)} numbers; expected 5 (B,N,M,D,K) "
                     "or 7 to 9 (B,H,W,C,KH,KW,K[,stride[,padding]])")


def _conv_shape(text: str, values: list[int]) -> ConvShape:
    """Check and build a conv shape from 7-9 parsed integers."""
    if min(values[:7]) < 1 or (len(values) > 7 and values[7] < 1):
        raise ValueError(f"bad --shape {text!r}: sizes and stride must be at least 1")
    if len(values) > 8 and values[8] < 0:
        raise ValueError(f"bad --shape {text!r}: padding must be at least 0")
    shape = ConvShape(*values)
    if min(shape.output_hw) < 1:
        raise ValueError(f"bad --shape {text!r}: a {shape.KH}x{shape.KW} kernel does not fit "
                         f"a {shape.H}x{shape.W} input with padding {shape.padding}")
    return shape


def split_names(values: list[str] | None, option: str) -> list[str]:
    """Flatten repeated and comma-separated values of ``option``, keeping order.

    >>> split_names(["lenet,digits", "vgg-head"], "--preset")
    ['lenet', 'digits', 'vgg-head']

    Raises
    ------
    ValueError
        For an empty name (``--preset ","``, ``--preset "lenet,"``): no
        option value is quietly dropped.
    """
    names: list[str] = []
    for value in values or []:
        parts = [v.strip() for v in value.split(",")]
        if not all(parts):
            raise ValueError(f"{option} {value!r} has an empty name; give names separated "
                             "by commas")
        names.extend(parts)
    return names


def select_shapes(kind: str, presets: list[str], shapes: list[str]
                  ) -> list[tuple[str, HeadShape | ConvShape]]:
    """The (name, shape) cases one benchmark kind runs.

    ``kind`` is ``"head"``, ``"heads"`` (both use head shapes) or ``"conv"``.
    Presets contribute their shape of that kind; a ``--shape`` is used by the
    kind it describes and skipped by the other.  With neither, the quick
    presets are used.

    Raises
    ------
    ValueError
        For an unknown preset or a malformed shape.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown benchmark {kind!r}; choose from {', '.join(KINDS)}")
    parsed = [parse_shape(text) for text in shapes]
    chosen = [get_preset(name) for name in presets]
    if not chosen and not parsed:
        chosen = [PRESETS[name] for name in QUICK_PRESETS]
    want = ConvShape if kind == "conv" else HeadShape
    cases = [(p.name, p.conv if kind == "conv" else p.head) for p in chosen]
    # each custom case named by its numbers, so that two of them stay apart in the tables
    cases += [("custom " + ",".join(map(str, shape.as_dict().values())), shape)
              for shape in parsed if isinstance(shape, want)]
    # Presets may share a shape (VGG's two heads share conv5_3): run it once.
    seen: set[HeadShape | ConvShape] = set()
    return [(name, shape) for name, shape in cases if not (shape in seen or seen.add(shape))]
