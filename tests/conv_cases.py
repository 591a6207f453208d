"""Convolution, transposed-convolution and pooling cases with readable ids.

``pads`` is the ``(before, after)`` padding per spatial axis that the
reference applies, worked out by hand from ``padding`` (for ``"same"``:
output ``ceil(L / stride)``, the odd element at the end).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ConvCase:
    id: str
    x_shape: tuple[int, ...]
    w_shape: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]
    stride: Any = 1
    padding: Any = 0
    dilation: Any = 1
    groups: int = 1

    @property
    def n(self) -> int:
        return len(self.x_shape) - 2

    def tuple_of(self, value) -> tuple[int, ...]:
        return (value,) * self.n if isinstance(value, int) else tuple(value)

    @property
    def kwargs(self) -> dict:
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                    groups=self.groups)


Z2 = ((0, 0), (0, 0))
P1 = ((1, 1), (1, 1))

CONV_CASES = [
    ConvCase("basic_3x3", (2, 5, 5, 3), (3, 3, 3, 4), Z2),
    ConvCase("stride2", (2, 7, 7, 2), (3, 3, 2, 3), Z2, stride=2),
    ConvCase("stride2_dropped_row", (1, 6, 6, 2), (3, 3, 2, 2), Z2, stride=2),
    ConvCase("stride_pair_rect_kernel", (1, 7, 6, 2), (3, 2, 2, 3), Z2, stride=(2, 1)),
    ConvCase("dilation2", (1, 7, 7, 2), (3, 3, 2, 2), Z2, dilation=2),
    ConvCase("dilation_and_stride_pairs", (2, 9, 8, 1), (2, 3, 1, 2), Z2,
             stride=(1, 2), dilation=(2, 1)),
    ConvCase("pad_int", (1, 4, 4, 2), (3, 3, 2, 2), P1, padding=1),
    ConvCase("pad_pair", (1, 5, 4, 2), (3, 3, 2, 3), ((2, 2), (1, 1)), padding=(2, 1)),
    ConvCase("pad_pairs_asymmetric", (1, 5, 5, 2), (3, 3, 2, 2), ((1, 0), (0, 2)),
             padding=((1, 0), (0, 2))),
    ConvCase("pad_stride_dilation", (2, 6, 7, 2), (3, 2, 2, 3), ((2, 2), (1, 1)),
             stride=2, padding=(2, 1), dilation=2),
    ConvCase("same_odd_kernel", (2, 5, 5, 2), (3, 3, 2, 3), P1, padding="same"),
    ConvCase("same_even_kernels", (1, 5, 6, 2), (2, 4, 2, 2), ((0, 1), (1, 2)),
             padding="same"),
    ConvCase("same_stride2", (1, 5, 6, 1), (3, 3, 1, 2), ((1, 1), (0, 1)),
             stride=2, padding="same"),
    ConvCase("same_dilation2", (1, 6, 6, 2), (3, 3, 2, 2), ((2, 2), (2, 2)),
             padding="same", dilation=2),
    ConvCase("valid", (1, 6, 5, 2), (3, 3, 2, 2), Z2, padding="valid"),
    ConvCase("rect_input_and_kernel", (2, 6, 9, 3), (2, 4, 3, 2), Z2),
    ConvCase("kernel_1x1", (2, 4, 5, 3), (1, 1, 3, 5), Z2),
    ConvCase("kernel_1x1_stride2", (2, 5, 5, 3), (1, 1, 3, 2), Z2, stride=2),
    ConvCase("channels_1", (3, 6, 6, 1), (3, 3, 1, 1), Z2),
    ConvCase("kernel_fills_input", (2, 4, 4, 2), (4, 4, 2, 3), Z2),
    ConvCase("kernel_fills_padded_input", (1, 2, 3, 2), (4, 5, 2, 2), P1, padding=1),
    ConvCase("groups2", (2, 6, 6, 4), (3, 3, 2, 6), Z2, groups=2),
    ConvCase("groups3_stride_pad", (1, 7, 7, 6), (3, 3, 2, 3), P1,
             stride=2, padding=1, groups=3),
    ConvCase("depthwise", (2, 6, 6, 3), (3, 3, 1, 3), Z2, groups=3),
    ConvCase("depthwise_same_stride2", (1, 7, 6, 2), (3, 3, 1, 2), ((1, 1), (0, 1)),
             stride=2, padding="same", groups=2),
    ConvCase("depthwise_multiplier2", (1, 5, 5, 2), (3, 3, 1, 4), Z2, groups=2),
    ConvCase("conv1d_basic", (2, 9, 3), (3, 3, 4), ((0, 0),)),
    ConvCase("conv1d_same_stride_dilation", (2, 10, 2), (3, 2, 3), ((1, 2),),
             stride=2, padding="same", dilation=2),
    ConvCase("conv1d_groups_pad", (1, 8, 4), (2, 2, 4), ((1, 1),), padding=1, groups=2),
    ConvCase("conv3d_basic", (1, 4, 5, 4, 2), (2, 3, 2, 2, 3), ((0, 0),) * 3),
    ConvCase("conv3d_stride_pad", (2, 5, 5, 5, 1), (3, 3, 3, 1, 2), ((1, 1),) * 3,
             stride=2, padding=1),
    ConvCase("conv3d_depthwise_dilation", (1, 5, 5, 5, 2), (2, 2, 2, 1, 2), ((0, 0),) * 3,
             dilation=(1, 2, 1), groups=2),
]


@dataclass(frozen=True)
class TransposeCase(ConvCase):
    """conv_transpose2d as the adjoint of conv2d on ``x_shape`` with these args."""

    output_padding: Any = 0

    @property
    def conv_kwargs(self) -> dict:
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation)

    @property
    def kwargs(self) -> dict:
        return dict(self.conv_kwargs, output_padding=self.output_padding)


TRANSPOSE_CASES = [
    TransposeCase("basic", (2, 5, 5, 3), (3, 3, 3, 4), Z2),
    TransposeCase("stride2_output_padding", (1, 6, 6, 2), (3, 3, 2, 3), Z2,
                  stride=2, output_padding=1),
    TransposeCase("stride2_pad1", (1, 7, 7, 2), (3, 3, 2, 2), P1, stride=2, padding=1),
    TransposeCase("dilation_stride_rect", (2, 8, 7, 2), (2, 3, 2, 3), Z2,
                  stride=(1, 2), dilation=(2, 1)),
    TransposeCase("asymmetric_pads", (1, 5, 5, 2), (3, 3, 2, 2), ((1, 0), (0, 2)),
                  stride=2, padding=((1, 0), (0, 2)), output_padding=(1, 0)),
    TransposeCase("same_stride2", (1, 6, 6, 2), (3, 3, 2, 2), ((0, 1), (0, 1)),
                  stride=2, padding="same"),
    TransposeCase("kernel_1x1", (2, 4, 3, 3), (1, 1, 3, 2), Z2),
]


@dataclass(frozen=True)
class PoolCase:
    id: str
    x_shape: tuple[int, ...]
    size: Any
    stride: Any = None

    def sizes(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """(size, stride) as pairs, stride defaulting to size."""
        size = (self.size,) * 2 if isinstance(self.size, int) else tuple(self.size)
        stride = size if self.stride is None else self.stride
        stride = (stride,) * 2 if isinstance(stride, int) else tuple(stride)
        return size, stride


POOL_CASES = [
    PoolCase("2x2", (2, 4, 4, 3), 2),
    PoolCase("3x3_stride2_overlapping", (1, 7, 7, 2), 3, 2),
    PoolCase("rect_window_stride_pair", (2, 6, 5, 1), (2, 3), (2, 1)),
    PoolCase("trailing_row_dropped", (1, 5, 5, 2), 2),
    PoolCase("global", (2, 3, 4, 2), (3, 4)),
    PoolCase("1x1", (1, 3, 3, 2), 1),
]
