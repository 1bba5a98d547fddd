"""ai-toolkit's uint2..uint7 quantization (its own backend, toolkit/util/uintx_quant.py `UIntXQuantizer` behind
`OstrisLinear`), built on torchao 0.10.0's affine primitives with the parameters of the `UIntXWeightOnlyConfig` it
reproduces bit for bit: asymmetric, groups of 64 along the input features, zero preserved, eps the float32 eps, an
integer zero point, the scale and the arithmetic in the weight's own dtype. Its forward, as the trainer's: the weight
dequantized in its own dtype, cast to the input's, then `F.linear`.

Which linears: those whose input width is a multiple of 64 (the trainer's `can_quantize`; torchao asserted on the
others and the trainer's loop left them as they were); uint8 never quantizes anything (torchao 0.10.0 raised while
packing 8 bits, so the trainer refuses it to keep that end state).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

GROUP = 64
BITS = {f"uint{bits}": bits for bits in range(2, 9)}


def can_quantize(module: torch.nn.Module, bits: int) -> bool:
    weight = getattr(module, "weight", None)
    return (
        bits < 8
        and isinstance(module, torch.nn.Linear)
        and isinstance(weight, torch.nn.Parameter)
        and type(weight.data) is torch.Tensor
        and weight.dtype.is_floating_point
        and weight.dim() == 2
        and weight.shape[1] % GROUP == 0
    )


class UIntXLinear(torch.nn.Linear):
    """A linear layer holding its weight as uintN codes with a scale and a zero point per group of 64; a Linear, as
    the trainer's OstrisLinear is, so a LoRA finds and wraps it."""

    def __init__(self, linear: torch.nn.Linear, bits: int):
        from torchao.quantization.quant_primitives import (
            MappingType,
            ZeroPointDomain,
            choose_qparams_affine,
            quantize_affine,
        )

        torch.nn.Module.__init__(self)  # no weight of its own: the codes stand for it
        self.in_features, self.out_features, self.bits = linear.in_features, linear.out_features, bits
        self.weight_dtype = linear.weight.dtype
        weight = linear.weight.detach()
        quant_max = (1 << bits) - 1
        block = (1, GROUP)
        with torch.no_grad():
            scale, zero_point = choose_qparams_affine(
                weight, MappingType.ASYMMETRIC, block, torch.uint8, 0, quant_max, eps=torch.finfo(torch.float32).eps,
                zero_point_dtype=torch.int32, preserve_zero=True, zero_point_domain=ZeroPointDomain.INT,
            )
            codes = quantize_affine(weight, block, scale, zero_point, torch.uint8, 0, quant_max, ZeroPointDomain.INT)
        self.register_buffer("codes", codes)
        self.register_buffer("scale", scale)
        self.register_buffer("zero_point", zero_point)
        self.bias = linear.bias  # shared with the loaded layer, never written

    def dequantize(self) -> torch.Tensor:
        from torchao.quantization.quant_primitives import ZeroPointDomain, dequantize_affine

        return dequantize_affine(
            self.codes, (1, GROUP), self.scale, self.zero_point, torch.uint8, 0, (1 << self.bits) - 1,
            ZeroPointDomain.INT, output_dtype=self.weight_dtype,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            weight = self.dequantize()
            if weight.dtype != x.dtype:
                weight = weight.to(x.dtype)
        return F.linear(x, weight, self.bias)

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized weight (shape, dtype and device for code that inspects a linear's weight)."""
        return self.dequantize()

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, uint{self.bits}, group {GROUP}"

