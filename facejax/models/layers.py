"""Building blocks shared by the model families.

`StridedConv` is a stride-2 convolution with the parameters of `nn.Conv`; `UpConv` a stride-2
transposed convolution. Each can be computed several ways that are equal in value and gradient
(tested) but run at very different speeds on XLA:CPU:

- strided: XLA directly ("xla"), stride 1 over a space-to-depth view ("s2d"), or one matrix
  product over the k·k strided views ("im2col");
- transposed: XLA directly ("xla"), a 3×3 convolution to 4 phases + pixel shuffle ("subpixel",
  2.25× the multiply-adds), one matrix product per kernel tap + overlap-add ("taps"), or one
  stride-1 2×2 convolution per output phase ("phases", and "mixed" with XLA's forward);
- stride 1 (`Conv`): XLA directly, im2col, a one-product weight gradient for few outputs
  ("thin"), or Winograd F(2×2) / F(4×4) tiles ("winograd2", "winograd4": 2.25× / 4× fewer
  multiplies for 3×3 kernels).

"auto" picks per layer shape on CPU from measurements (`default_conv_impl`, `default_up_impl`,
`default_conv1_impl`; figures in the issue 7 notes) and XLA's own convolution on other backends
and inside `plain_forms()`.
"""

from __future__ import annotations

import contextlib
import functools
import math
from fractions import Fraction

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def pixel_shuffle(x: jax.Array, r: int = 2) -> jax.Array:
    """[B, H, W, r·r·C] -> [B, r·H, r·W, C] (depth to space; channel order (dy, dx, c))."""
    b, h, w, c = x.shape
    oc = c // (r * r)
    x = x.reshape(b, h, w, r, r, oc).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h * r, w * r, oc)


def space_to_depth(x: jax.Array, r: int = 2) -> jax.Array:
    """[B, r·H, r·W, C] -> [B, H, W, r·r·C], the inverse of pixel_shuffle."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // r, r, w // r, r, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h // r, w // r, r * r * c)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow/XLA 'SAME' padding (low, high) for one spatial axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _im2col_patches(x, k, stride, ho, wo):
    """[N, H, W, C] (padded) -> patches [N·ho·wo, k·k·C] (taps in HWIO order). For stride 2 the
    views are stride-1 slices of the space-to-depth view (rows and columns no tap reads are
    cropped)."""
    n, h, w, c = x.shape
    if stride == 1:
        views = [x[:, dy:dy + ho, dx:dx + wo] for dy in range(k) for dx in range(k)]
    else:
        h2, w2 = (k - 1) // 2 + ho, (k - 1) // 2 + wo
        x = jnp.pad(x, ((0, 0), (0, max(2 * h2 - h, 0)), (0, max(2 * w2 - w, 0)), (0, 0)))
        xs = space_to_depth(x[:, :2 * h2, :2 * w2], 2)         # [N, h2, w2, (py, px, C)]
        views = [xs[:, dy // 2:dy // 2 + ho, dx // 2:dx // 2 + wo,
                    ((dy % 2) * 2 + dx % 2) * c:((dy % 2) * 2 + dx % 2 + 1) * c]
                 for dy in range(k) for dx in range(k)]
    return jnp.concatenate(views, axis=-1).reshape(n * ho * wo, k * k * c)


def _col2im(dp, shape, k, stride):
    """The adjoint of `_im2col_patches`: dp [N, ho, wo, k, k, C] summed back to `shape`. For
    stride 2 each space-to-depth phase is summed at half resolution, then interleaved."""
    n, h, w, c = shape
    ho, wo = dp.shape[1], dp.shape[2]

    def add_taps(taps, out_h, out_w):
        acc = None
        for ty, tx, a, b in taps:
            t = jnp.pad(dp[:, :, :, ty, tx],
                        ((0, 0), (a, out_h - ho - a), (b, out_w - wo - b), (0, 0)))
            acc = t if acc is None else acc + t
        return acc

    if stride == 1:
        return add_taps([(a, b, a, b) for a in range(k) for b in range(k)], h, w)
    h2, w2 = (k - 1) // 2 + ho, (k - 1) // 2 + wo
    phases = [add_taps([(ty, tx, ty // 2, tx // 2) for ty in range(py, k, 2)
                        for tx in range(px, k, 2)], h2, w2)
              for py in range(2) for px in range(2)]
    dx = pixel_shuffle(jnp.concatenate(phases, axis=-1), 2)   # [N, 2·h2, 2·w2, C]
    dx = jnp.pad(dx, ((0, 0), (0, max(h - 2 * h2, 0)), (0, max(w - 2 * w2, 0)), (0, 0)))
    return dx[:, :h, :w]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_im2col(x, kernel, k, stride):
    return _conv_im2col_fwd(x, kernel, k, stride)[0]


def _conv_im2col_fwd(x, kernel, k, stride):
    n, h, w, c = x.shape
    ho, wo = (h - k) // stride + 1, (w - k) // stride + 1
    patches = _im2col_patches(x, k, stride, ho, wo)
    y = (patches @ kernel.reshape(k * k * c, -1)).reshape(n, ho, wo, -1)
    return y, (patches, kernel, x.shape)


def _conv_im2col_bwd(k, stride, res, dy):
    patches, kernel, shape = res
    n, ho, wo, o = dy.shape
    c = shape[3]
    dy2 = dy.reshape(n * ho * wo, o)
    dkernel = (patches.T @ dy2).reshape(kernel.shape)
    dp = (dy2 @ kernel.reshape(k * k * c, o).T).reshape(n, ho, wo, k, k, c)
    return _col2im(dp, shape, k, stride), dkernel


_conv_im2col.defvjp(_conv_im2col_fwd, _conv_im2col_bwd)


def conv_im2col(x: jax.Array, kernel: jax.Array, padding: tuple[tuple[int, int], ...],
                stride: int = 2) -> jax.Array:
    """A stride-1 or stride-2 convolution as one matrix product over the k·k views of the padded
    input ([N·H'·W', k·k·C], in HWIO order, times the kernel [k·k·C, O]).

    Custom VJP: the kernel and input gradients are matrix products too, and the input gradient
    is one sum of the k·k shifted blocks (for stride 2, per space-to-depth phase at half
    resolution). Autodiff's version padded every view gradient to full size, and XLA fused that
    sum into its consumers' loops, bias-gradient reductions included. Value and gradients equal
    XLA's convolution (tested); on XLA:CPU this runs the deepfakes encoder's 5×5 convolutions
    about 3× faster than the space-to-depth convolution.
    """
    if stride not in (1, 2):
        raise ValueError(f"im2col convolution supports strides 1 and 2, got {stride}")
    x = jnp.pad(x, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
    return _conv_im2col(x, kernel, kernel.shape[0], stride)


def _s2d_operands(x, kernel, padding):
    """The space-to-depth view of x padded for a stride-2 k×k convolution, the matching
    ⌈k/2⌉×⌈k/2⌉ kernel on 4·C channels, and the output size."""
    k = kernel.shape[0]
    kh = math.ceil(k / 2)
    outs = []
    pads = []
    for axis, (lo, hi) in zip((1, 2), padding):
        n = x.shape[axis] + lo + hi
        out = (n - k) // 2 + 1
        outs.append(out)
        # Pad to exactly 2·(out + kh - 1) so the space-to-depth view covers every tap.
        pads.append((lo, 2 * (out + kh - 1) - x.shape[axis] - lo))
    x = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    c, o = kernel.shape[2], kernel.shape[3]
    w = jnp.pad(kernel, ((0, 2 * kh - k), (0, 2 * kh - k), (0, 0), (0, 0)))
    w = w.reshape(kh, 2, kh, 2, c, o).transpose(0, 2, 1, 3, 4, 5).reshape(kh, kh, 4 * c, o)
    return space_to_depth(x, 2), w, outs


def conv_s2d(x: jax.Array, kernel: jax.Array, padding: tuple[tuple[int, int], ...]) -> jax.Array:
    """A stride-2 convolution computed as stride 1 on a space-to-depth view.

    Args:
      x: [B, H, W, C].
      kernel: [k, k, C, O].
      padding: ((lo, hi), (lo, hi)) for H and W, as for the strided convolution.
    Returns:
      [B, H', W', O], equal to lax.conv_general_dilated(x, kernel, (2, 2), padding).
    """
    x, w, outs = _s2d_operands(x, kernel, padding)
    return _conv1(x, w, ((0, 0), (0, 0)))[:, :outs[0], :outs[1]]


def conv_s2d_winograd(x: jax.Array, kernel: jax.Array,
                      padding: tuple[tuple[int, int], ...]) -> jax.Array:
    """conv_s2d's stride-1 convolution in Winograd tiles (`conv_winograd`): F(3×3, 2×2) for 3×3
    and 4×4 kernels, whose space-to-depth kernel is 2×2 (16 products for 9 outputs against 36),
    F(2×2, 3×3) for 5×5 and 6×6 ones (3×3). Same arguments and result as conv_s2d."""
    x, w, outs = _s2d_operands(x, kernel, padding)
    y = conv_winograd(x, w, ((0, 0), (0, 0)), 3 if w.shape[0] == 2 else 2)
    return y[:, :outs[0], :outs[1]]


def compute_dtype(model_config):
    """The activation dtype of `model_config.compute_dtype` (None: float32); parameters and
    optimizer state stay float32 either way."""
    return jnp.bfloat16 if model_config.get("compute_dtype", "float32") == "bfloat16" else None


_plain_forms = False


@contextlib.contextmanager
def plain_forms():
    """Within it, every layer of this module takes XLA's own convolution, whatever its impl: a
    model traced here is the textbook one, whose cost analysis counts the model's multiply-adds
    (the Winograd and phase forms count fewer, im2col's patches more)."""
    global _plain_forms
    previous, _plain_forms = _plain_forms, True
    try:
        yield
    finally:
        _plain_forms = previous


def _cpu_forms() -> bool:
    """Whether the CPU-specific forms apply: the default backend is the CPU, outside
    `plain_forms`."""
    return not _plain_forms and jax.default_backend() == "cpu"


def _resolve(impl: str, choose) -> str:
    """A module's impl: XLA's inside `plain_forms`, else its own, or `choose()` for "auto"."""
    if _plain_forms:
        return "xla"
    return choose() if impl == "auto" else impl


def default_conv_impl(kernel_size: int = 4, in_channels: int = 64,
                      out_pixels: int = 1 << 30, batch: int = 1) -> str:
    """The faster stride-2 formulation for the default backend, as measured (lone layer, value
    and both gradients, 2-core CPU, 2026-11-24). On CPU one matrix product (im2col) wins where
    the weights outweigh the map: the deepfakes encoder's 5×5 convolutions (step 4162 -> 2800
    ms) and every 4×4 one with an output map of at most 16×16 (pix2pix 32 -> 16 px, 512
    channels: 20 against 42 ms for space-to-depth; 4 -> 2 px: 3.1 against 20.6 ms). Large maps
    of few channels (pix2pix 256 -> 64 px) run up to 2× slower that way, as do inputs of fewer
    than 64 channels (a skinny product over k·k slices, slower to compile). Those take XLA's own
    strided convolution once the patch matrix (batch · output pixels × k·k·C) passes 6M entries
    (batch 4, 128 -> 64 px, 64 channels: 124 against 191 ms for space-to-depth), and the
    space-to-depth convolution below that (batch 1: 26 against 30 ms). Other backends use XLA's
    own convolution.

    Inputs of at most 8 channels (the first layer: RGB, or the PatchGAN's image pair) take im2col
    whatever the map (measured 2026-11-24): the deepfakes encoder's 64 -> 32 px, 3 -> 128 at
    batch 32 (the shared encoder's pass over both faces): 16 ms against 49 for space-to-depth and
    42 for XLA's; pix2pix's 256 -> 128 px, 3 -> 64, batch 4: 12 against 21 and 19; its
    PatchGAN's 6 -> 64, batch 4: 32 against 37 and 40.

    Before all those, 4×4 and 5×5 kernels from 64+ channels onto at least 1024 output pixels in
    the batch take the space-to-depth form in Winograd tiles ("winograd", `conv_s2d_winograd`;
    measured 2026-11-24 under huge pages): pix2pix 128 -> 64 px, 64 -> 128 channels, batch 4:
    60-67 ms against 100 for XLA's; 64 -> 32 px, 128 -> 256: 49-52 against 87; 32 -> 16 px, 256
    -> 512: 52 against 76 for im2col; batch 1, 128 -> 64 px: 12-14 against 24; the deepfakes
    encoder's 5×5 at batch 16, 32 -> 16 px, 128 -> 256: 110 against 133; 16 -> 8 px, 256 -> 512:
    102 against 119. On fewer output pixels the kernel's transforms outweigh the products (32 ->
    16 px at batch 1: 21 against 18; 8 -> 4 px, 512 -> 1024 at batch 16: 182 against 113)."""
    if not _cpu_forms():
        return "xla"
    if in_channels <= 8:
        return "im2col"
    if in_channels >= 64 and kernel_size in (4, 5) and batch * out_pixels >= 1024:
        return "winograd"
    if in_channels >= 64 and (kernel_size >= 5 or out_pixels <= 256):
        return "im2col"
    if batch * out_pixels * kernel_size ** 2 * in_channels >= 6_000_000:
        return "xla"
    return "s2d"


def default_up_impl(in_channels: int = 64, in_pixels: int = 1 << 30, features: int = 64,
                    kernel_size: int = 4, batch: int = 1) -> str:
    """The faster stride-2 transposed formulation for the default backend (value and both
    gradients, measured at batch 1 and 4, 2026-11-24 under huge pages). On CPU:
    - per-tap matrix products ("taps") for at most 64 input pixels in the batch (pix2pix 8 -> 16
      px at batch 1, 1024 -> 512 channels: 32 ms against 45 for "mixed", 717 for XLA's own;
      batch 4, 4 -> 8 px: 35 against 43). At batch 4 on 8×8 the phase forms win (90-99 against
      131);
    - few output channels (the U-Net's last layer, 128 -> 3 on 128×128): XLA's own transposed
      convolution for the value with the phase form's one-product gradients ("mixed"): batch 4,
      28 ms against 139 for "taps", 165 for "phases"; batch 1, 8 against 34;
    - 4×4 kernels from 4096 input pixels in the batch: each output phase a 2×2 convolution in
      Winograd F(3×3, 2×2) tiles ("winograd", `conv_transpose_winograd`): batch 4, 32 -> 64 px,
      512 -> 128 channels: 115-142 against 145-157 for "mixed"; 64 -> 128 px, 256 -> 64: 148-183
      against 188-229; batch 1 at 64 px, even (37-40 against 39-40);
    - other 4×4 kernels: "mixed" (16 -> 32 px, 1024 -> 256, batch 4: 140 against 148 for
      Winograd's);
    - 3×3 kernels (CycleGAN, under Eigen convolutions, see xla_setup) on larger maps: one
      stride-1 convolution per output phase ("phases"; 64 -> 128 px, 256 -> 128, batch 4: 357
      against 523 for "mixed"), whose forward skips the 7 zero taps that XLA's would multiply.
    Inputs of fewer than 64 channels (test configs) keep the subpixel form."""
    if not _cpu_forms():
        return "xla"
    if in_channels < 64:
        return "subpixel"
    if batch * in_pixels <= 64:
        return "taps"
    if kernel_size != 4:
        return "phases"
    if features <= 8:
        return "mixed"
    return "winograd" if batch * in_pixels >= 4096 else "mixed"


def _conv_kernel(module: nn.Module, x: jax.Array, k: int):
    """The k×k HWIO "kernel" parameter of `module` (lecun-normal, float32, as nn.Conv's) and x,
    both cast to the module's compute dtype (its `dtype`, else x's)."""
    kernel = module.param("kernel", nn.initializers.lecun_normal(),
                          (k, k, x.shape[-1], module.features), jnp.float32)
    dtype = module.dtype or x.dtype
    return x.astype(dtype), kernel.astype(dtype)


def _add_bias(module: nn.Module, y: jax.Array) -> jax.Array:
    """y plus `module`'s "bias" parameter (zeros, float32, as nn.Conv's) when it uses one."""
    if not module.use_bias:
        return y
    return y + module.param("bias", nn.initializers.zeros, (module.features,),
                            jnp.float32).astype(y.dtype)


def up_impl_for(up_impl: str | None, conv_impl: str) -> str:
    """The transposed-convolution impl of a model: `up_impl`, or the one matching its strided
    `conv_impl` (s2d -> subpixel, im2col -> taps; xla, winograd and auto as they are)."""
    return up_impl or {"s2d": "subpixel", "im2col": "taps"}.get(conv_impl, conv_impl)


class StridedConv(nn.Module):
    """k×k stride-2 convolution with 'SAME' padding; parameters named as nn.Conv's."""
    features: int
    kernel_size: int = 5
    use_bias: bool = True
    impl: str = "auto"  # "xla", "s2d", "winograd", "im2col" or "auto"
    dtype: jnp.dtype | None = None
    padding: int | None = None  # None: 'SAME'; an int p pads p on every side (PyTorch style)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel_size
        x, kernel = _conv_kernel(self, x, k)
        if self.padding is None:
            padding = (same_padding(x.shape[1], k, 2), same_padding(x.shape[2], k, 2))
        else:
            padding = ((self.padding, self.padding), (self.padding, self.padding))
        out_pixels = math.prod((n + sum(p) - k) // 2 + 1 for n, p in zip(x.shape[1:3], padding))
        impl = _resolve(self.impl, lambda: default_conv_impl(k, x.shape[-1], out_pixels,
                                                             x.shape[0]))
        if impl == "s2d":
            y = conv_s2d(x, kernel, padding)
        elif impl == "winograd":
            y = conv_s2d_winograd(x, kernel, padding)
        elif impl == "im2col":
            y = conv_im2col(x, kernel, padding)
        elif impl == "xla":
            y = jax.lax.conv_general_dilated(x, kernel, (2, 2), padding,
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"))
        else:
            raise ValueError(f"unknown strided convolution impl {impl!r}")
        return _add_bias(self, y)


def default_conv1_impl(in_channels: int, in_pixels: int, features: int = 64,
                       kernel_size: int = 3, batch: int = 1, max_tile: int = 4) -> str:
    """Stride-1 convolution, on CPU (value and both gradients, measured 2026-11-24 under huge
    pages, `conv_winograd` reading the input gradient's kernel in place):
    - Winograd tiles (`conv_winograd`) from and to 64+ channels:
      - 3×3 kernels on maps of 4×4 or more with at least 256 input pixels in the batch: F(4×4)
        from 4096 pixels on maps of 16×16 or more, F(2×2) below. The deepfakes decoder at batch
        16: 32×32, 128 -> 256: 173 ms for XLA's, 185 for im2col, 108 for F(2×2), 76 for F(4×4);
        16×16, 256 -> 512: 160, 163, 83, 60; 8×8, 512 -> 1024: 171, 161, 94, 132. The CycleGAN
        ResNet's 64×64, 256 -> 256, batch 1: 81, 98, 46, 35. Batch 4, 8×8, 512 -> 512: 28, 20,
        17, 32; batch 1, 32×32, 256 -> 256: 26, 22, 11, 16. F(4×4)'s 36 products per layer take
        XLA about 3× as long to compile as F(2×2)'s 16 (the CycleGAN generator's gradient at 256
        px: 21 s against 7, for 1.25 against 1.33-1.50 s). F(2×2) also on 4×4 maps: the
        deepfakes encoder's last 3×3, 4×4, 1024 -> 2048, run once over both faces (batch 32):
        206 ms against 295 for im2col and 448 for XLA's; batch 16: 133 against 151 (below 256
        pixels im2col wins: batch 8, 115 against 83);
      - 4×4 kernels (the PatchGAN's 32×32, 256 -> 512) on maps of 16×16 or more, in F(3×3)
        tiles: batch 4, 106 ms against 141 for F(2×2), 145 for F(4×4), 278 for XLA's; batch 1:
        32 against 40, 49 and 69;
      - `max_tile` caps the output tile where F(4×4) would go. The CycleGAN ResNet's 36
        residual layers take 3: there F(4×4) took the whole training step 407 s to compile and
        12.2 GB peak RSS, against 75 s and 8.0 GB for F(2×2), for no gain (11.56 against 11.39
        s per step). F(3×3)'s 25 products compile in 10-11 s for the generator's gradient
        (F(2×2) 7.3, F(4×4) 21), which runs in 1.18-1.20 s against 1.33-1.40. Lone layers:
        64×64, 256 -> 256, batch 1: 39 ms against 43 for F(2×2) and 34 for F(4×4);
    - "thin" for at most 4 output channels from 64+ input channels, where XLA's weight gradient
      is slow: the PatchGAN's logits (31×31, 512 -> 1: 21.5 ms against 0.6 for one product), the
      deepfakes decoder's last 5×5, 64 -> 3 on 64×64 at batch 16 (value and both gradients:
      44-64 ms against 60-75), the CycleGAN generator's last 7×7, 64 -> 3 onto 256×256 (53-81
      against 79-86; batch 4: 194-206 against 330-354);
    - one matrix product (im2col) for the other maps of at most 8×8 with 64+ input channels,
      where YNNPACK's convolution is slowest (the deepfakes encoder's last 3×3 at batch 8: 83 ms
      against 169), and from images (at most 8 channels) onto 16+: the CycleGAN generator's
      first 7×7, 3 -> 64 onto 256×256: 61-62 ms against 79-93 with Eigen convolutions (its
      setting), 91 against 97 with YNNPACK's (batch 4: 205 against 476);
    - XLA's own elsewhere."""
    if not _cpu_forms():
        return "xla"
    if in_channels >= 64 and features >= 64:
        if kernel_size == 3 and in_pixels >= 16 and batch * in_pixels >= 256:
            big = max_tile >= 3 and in_pixels >= 256 and batch * in_pixels >= 4096
            return f"winograd{min(max_tile, 4)}" if big else "winograd2"
        if kernel_size == 4 and in_pixels >= 256:
            return "winograd3" if max_tile >= 3 else "winograd2"
    if features <= 4 and in_channels >= 64:
        return "thin"
    if (in_channels >= 64 and in_pixels <= 64) or (in_channels <= 8 and features >= 16):
        return "im2col"
    return "xla"


def _xla_conv1(x, kernel, padding):
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), padding,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _conv1(x, kernel, padding):
    """XLA's stride-1 convolution; unpadded ones through `conv_valid` on CPU."""
    if _cpu_forms() and not any(v for p in padding for v in p):
        return conv_valid(x, kernel)
    return _xla_conv1(x, kernel, padding)


@jax.custom_vjp
def conv_valid(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Unpadded ("VALID") stride-1 convolution, as the CycleGAN generator's, on reflection-padded
    maps. XLA:CPU (jax 0.10.2) computes an unpadded convolution's value 1.5-7× slower than the
    same convolution with any zero padding (measured 2026-11-24, batch 1: the 7×7, 64 -> 3 onto
    256×256: 83 ms against 12; 3 -> 64: 23 against 15; 3×3, 256 -> 256 onto 64×64: 41 against
    26), so the value pads one zero row and column at the far end and crops them off the output.
    Both gradients are XLA's for the unpadded convolution (the padded form's weight gradient is
    the slower one: 129 ms against 57 for the 7×7, 64 -> 3). That is YNNPACK's convolution, XLA's
    default; with Eigen convolutions (xla_setup, the CycleGAN's setting) the two forms run alike
    (value and both gradients of that 7×7: 131-133 ms against 127-129)."""
    return _xla_conv1(x, kernel, ((0, 1), (0, 1)))[:, :-1, :-1]


def _conv_valid_fwd(x, kernel):
    return conv_valid(x, kernel), (x, kernel)


def _conv_valid_bwd(res, g):
    x, kernel = res
    return jax.vjp(lambda v, k: _xla_conv1(v, k, ((0, 0), (0, 0))), x, kernel)[1](g)


conv_valid.defvjp(_conv_valid_fwd, _conv_valid_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_thin(x: jax.Array, kernel: jax.Array, padding) -> jax.Array:
    """Stride-1 convolution for few output channels: XLA's for the value and input gradient,
    and the weight gradient as one matrix product. dk[i, j] = Σ_p xp[p] · g[p - (i, j)] over
    the padded input's positions p: the output gradient, shifted once per tap, is a
    [positions, taps·O] matrix, multiplied once with the padded input [positions, C] over the
    positions. The product's rows are the wider operand's columns (measured, 2026-11-24): the
    PatchGAN's logits (4×4, 512 -> 1 on 32×32, batch 4): [taps·O, C], 1.7 ms against 6.6 for
    [C, taps·O]; the deepfakes decoder's 5×5, 64 -> 3 on 64×64, batch 16: [C, taps·O], 14.5
    against 46 (XLA's own weight gradient: 34)."""
    return _conv1(x, kernel, padding)


def _conv_thin_fwd(x, kernel, padding):
    return _conv1(x, kernel, padding), (x, kernel)


def _conv_thin_bwd(padding, res, g):
    x, kernel = res
    kh, kw, c, o = kernel.shape
    dx = jax.vjp(lambda v: _conv1(v, kernel, padding), x)[1](g)[0]
    xp = jnp.pad(x, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
    n, hp, wp, _ = xp.shape
    h, w = g.shape[1:3]
    shifted = jnp.concatenate([jnp.pad(g, ((0, 0), (i, hp - h - i), (j, wp - w - j), (0, 0)))
                               for i in range(kh) for j in range(kw)], -1)  # [N, Hp, Wp, taps·O]
    shifted = shifted.reshape(n * hp * wp, kh * kw * o)
    xp = xp.reshape(n * hp * wp, c)
    over_positions = (((0,), (0,)), ((), ()))
    if c > kh * kw * o:  # the wider operand's columns lead the product's rows
        dk = jax.lax.dot_general(shifted, xp, over_positions, preferred_element_type=jnp.float32)
        dk = dk.reshape(kh, kw, o, c).transpose(0, 1, 3, 2)               # from [taps·O, C]
    else:
        dk = jax.lax.dot_general(xp, shifted, over_positions, preferred_element_type=jnp.float32)
        dk = dk.reshape(c, kh, kw, o).transpose(1, 2, 0, 3)               # from [C, taps·O]
    return dx, dk.astype(kernel.dtype)


conv_thin.defvjp(_conv_thin_fwd, _conv_thin_bwd)


# Winograd minimal filtering (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks",
# 2016). A stride-1 r×r convolution computed in m×m output tiles: each (m+r-1)² input tile is
# transformed (BT · d · B), multiplied point by point with the transformed kernel (G · g · Gᵀ)
# and transformed back (AT · M · A). Summed over input channels, the pointwise products are
# (m+r-1)² matrix products [tiles, C] × [C, O], so F(2×2, 3×3) does 16 multiplies where direct
# convolution does 36 per 4 outputs, and F(4×4, 3×3) 36 where it does 144. The transforms are
# additions of slices that XLA fuses; the products run at the matrix-multiply peak.
_WINOGRAD_POINTS = (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2))


@functools.lru_cache(maxsize=None)
def winograd_matrices(m: int, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AT [m, a], G [a, r], BT [a, a] (a = m + r - 1) of F(m, r): for a tile d of a inputs and
    r taps g, the m outputs of the correlation y[i] = Σ_k g[k]·d[i + k] are AT·((G·g) ⊙ (BT·d)).
    Built exactly (fractions) as the transpose of Toom-Cook linear convolution at the points
    0, ±1, ±2, … and ∞; BT's rows are scaled to integers and G's rows by the inverse."""
    a = m + r - 1
    points = _WINOGRAD_POINTS[:a - 1]

    def vandermonde(n):  # rows: a polynomial's n coefficients -> its value at each point, ∞
        return [[Fraction(p) ** i for i in range(n)] for p in points] + \
            [[Fraction(int(i == n - 1)) for i in range(n)]]

    # Invert the a×a evaluation matrix (Gauss-Jordan, exact).
    rows = [row + [Fraction(int(i == j)) for j in range(a)] for i, row in enumerate(vandermonde(a))]
    for col in range(a):
        pivot = next(i for i in range(col, a) if rows[i][col] != 0)
        rows[col], rows[pivot] = rows[pivot], rows[col]
        rows[col] = [v / rows[col][col] for v in rows[col]]
        for i in range(a):
            if i != col and rows[i][col] != 0:
                rows[i] = [vi - rows[i][col] * vc for vi, vc in zip(rows[i], rows[col])]
    bt = [[rows[i][a + j] for i in range(a)] for j in range(a)]  # the inverse, transposed
    g = vandermonde(r)
    for j in range(a):
        scale = math.lcm(*(v.denominator for v in bt[j]))
        bt[j] = [v * scale for v in bt[j]]
        g[j] = [v / scale for v in g[j]]
    at = [list(col) for col in zip(*vandermonde(m))]
    return tuple(np.array(x, np.float64) for x in (at, g, bt))


def _combine(parts, coefficients):
    """[Σ_j c[i, j]·parts[j] for each row i of `coefficients`], skipping zero terms."""
    out = []
    for row in coefficients:
        acc = None
        for c, p in zip(row, parts):
            if c == 0:
                continue
            t = p if c == 1 else -p if c == -1 else p * float(c)
            acc = t if acc is None else acc + t
        out.append(acc)
    return out


def _winograd_tiles(x, r, padding, m):
    """The padded input's transformed tiles, a² arrays [N, TH, TW, C] (index u·a + v), and the
    output and tile-grid sizes."""
    n, h, w, _ = x.shape
    (pt, pb), (pl, pr) = padding
    ho, wo = h + pt + pb - r + 1, w + pl + pr - r + 1
    th, tw = -(-ho // m), -(-wo // m)
    a = m + r - 1
    xp = jax.lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (pt, th * m + r - 1 - h - pt, 0),
                                                 (pl, tw * m + r - 1 - w - pl, 0), (0, 0, 0)))
    bt = winograd_matrices(m, r)[2]
    rows = [jax.lax.slice_in_dim(xp, i, i + (th - 1) * m + 1, m, axis=1) for i in range(a)]
    tiles = []
    for row in _combine(rows, bt):
        cols = [jax.lax.slice_in_dim(row, j, j + (tw - 1) * m + 1, m, axis=2) for j in range(a)]
        tiles.extend(_combine(cols, bt))
    return tiles, (ho, wo, th, tw)


def _winograd_value(x, kernel, padding, m, adjoint=False):
    """The correlation of x with `kernel` [r, r, C, O]; adjoint: with the kernel flipped in both
    tap axes and its channel axes swapped (the input gradient's kernel), which the products read
    in the stored layout rather than a transposed copy (measured: a copy of a 2048×512 kernel's
    transforms cost 4× the products on an 8×8 map)."""
    r = kernel.shape[0]
    o = kernel.shape[2] if adjoint else kernel.shape[3]
    a = m + r - 1
    at, g, _ = winograd_matrices(m, r)
    tiles, (ho, wo, th, tw) = _winograd_tiles(x, r, padding, m)
    rows = list(kernel[::-1]) if adjoint else list(kernel)
    u = [t for row in _combine(rows, g)
         for t in _combine(list(row[::-1]) if adjoint else list(row), g)]  # [C, O] each
    contract = 1 if adjoint else 0
    prods = [jax.lax.dot_general(v.reshape(-1, v.shape[-1]), w,
                                 (((1,), (contract,)), ((), ()))).reshape(v.shape[:3] + (o,))
             for v, w in zip(tiles, u)]
    by_v = [_combine(prods[v::a], at) for v in range(a)]                    # [v][p]
    out = [_combine([by_v[v][p] for v in range(a)], at) for p in range(m)]  # [p][q]
    y = jnp.stack([jnp.stack(row, axis=3) for row in out], axis=2)  # [N, TH, p, TW, q, O]
    return y.reshape(x.shape[0], th * m, tw * m, o)[:, :ho, :wo]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv_winograd(x: jax.Array, kernel: jax.Array, padding, m: int = 2) -> jax.Array:
    """Stride-1 r×r convolution with explicit `padding` in Winograd F(m×m, r×r) tiles (see
    above). The input gradient is the same algorithm on the output gradient with the flipped,
    transposed kernel; the kernel gradient is a² products [C, tiles] × [tiles, O] in the
    transformed domain, the tiles recomputed rather than kept. Rounding: about 1e-6 of the
    output's scale for m = 2, 2e-5 for m = 4 (float32)."""
    return _winograd_value(x, kernel, padding, m)


def _winograd_fwd(x, kernel, padding, m):
    return _winograd_value(x, kernel, padding, m), (x, kernel)


def _winograd_bwd(padding, m, res, dy):
    x, kernel = res
    r, c, o = kernel.shape[0], kernel.shape[2], kernel.shape[3]
    a = m + r - 1
    at, g, _ = winograd_matrices(m, r)
    (pt, pb), (pl, pr) = padding
    dx = _winograd_value(dy, kernel, ((r - 1 - pt, r - 1 - pb), (r - 1 - pl, r - 1 - pr)), m,
                         adjoint=True)
    tiles, (ho, wo, th, tw) = _winograd_tiles(x, r, padding, m)
    dyt = jnp.pad(dy, ((0, 0), (0, th * m - ho), (0, tw * m - wo), (0, 0)))
    dyt = dyt.reshape(dy.shape[0], th, m, tw, m, o)
    rows = _combine([dyt[:, :, p] for p in range(m)], at.T)               # [u]: [N, TH, TW, q, O]
    dm = [t for row in rows for t in _combine([row[:, :, :, q] for q in range(m)], at.T)]
    du = [jax.lax.dot_general(v.reshape(-1, c), d.reshape(-1, o), (((0,), (0,)), ((), ())))
          for v, d in zip(tiles, dm)]                                     # [C, O] each
    by_v = [_combine(du[v::a], g.T) for v in range(a)]                    # [v][i]
    dk = jnp.stack([jnp.stack(_combine([by_v[v][i] for v in range(a)], g.T)) for i in range(r)])
    return dx, dk.astype(kernel.dtype)


conv_winograd.defvjp(_winograd_fwd, _winograd_bwd)


class Conv(nn.Module):
    """Stride-1 k×k convolution with nn.Conv's parameters (kernel HWIO, lecun-normal; bias
    zeros), 'SAME' or explicit `padding` ((top, bottom), (left, right)). impl: "xla", "im2col",
    "thin", "winograd2", "winograd3", "winograd4" (F(m×m) tiles) or "auto"
    (`default_conv1_impl`)."""
    features: int
    kernel_size: int = 3
    impl: str = "auto"
    padding: tuple | None = None
    use_bias: bool = True
    dtype: jnp.dtype | None = None
    max_tile: int = 4  # the largest Winograd output tile "auto" may pick

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel_size
        x, kernel = _conv_kernel(self, x, k)
        padding = self.padding or (((k - 1) // 2, k // 2), ((k - 1) // 2, k // 2))
        padding = tuple(tuple(int(v) for v in p) for p in padding)
        impl = _resolve(self.impl, lambda: default_conv1_impl(
            x.shape[-1], x.shape[1] * x.shape[2], self.features, k, x.shape[0], self.max_tile))
        if impl in ("winograd2", "winograd3", "winograd4"):
            y = conv_winograd(x, kernel, padding, int(impl[-1]))
        elif impl == "im2col":
            y = conv_im2col(x, kernel, padding, stride=1)
        elif impl == "thin":
            y = conv_thin(x, kernel, padding)
        elif impl == "xla":
            y = _conv1(x, kernel, padding)
        else:
            raise ValueError(f"unknown stride-1 convolution impl {impl!r}")
        return _add_bias(self, y)


class Upscale(nn.Module):
    """Conv 3×3 to 4·features channels, LeakyReLU, pixel shuffle ×2 (the deepfakes upscale)."""
    features: int
    negative_slope: float = 0.1
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = Conv(4 * self.features, 3, dtype=self.dtype)(x)  # named Conv_0, as nn.Conv was
        x = nn.leaky_relu(x, self.negative_slope)
        return pixel_shuffle(x, 2)


# Tap of the 4-tap transposed kernel that feeds output phase r from input offset u-1, for a
# stride-2 'SAME' transposed convolution (XLA pads the dilated input by 2 at the low end):
# t = 2u - r when 0 <= t <= 3; 4 marks "no tap" (a zero row appended to the kernel).
_SUBPIXEL_TAPS = np.array([[0, 4], [2, 1], [4, 3]])


def _require_4x4(kernel: jax.Array, form: str) -> None:
    if kernel.shape[:2] != (4, 4):
        raise ValueError(f"{form} transposed convolution needs a 4×4 kernel, got {kernel.shape}")


def conv_transpose_subpixel(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """4×4 stride-2 'SAME' transposed convolution as a 3×3 convolution + pixel shuffle.

    Equal to lax.conv_transpose(x, kernel, (2, 2), "SAME") (tested in value and gradient), but
    every output phase is one dense stride-1 convolution, which XLA:CPU runs far faster than the
    weight gradient of a transposed convolution.

    Args:
      x: [B, H, W, C]; kernel: [4, 4, C, O].
    Returns:
      [B, 2H, 2W, O].
    """
    _require_4x4(kernel, "subpixel")
    c, o = kernel.shape[2], kernel.shape[3]
    kp = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0)))
    rows = kp[_SUBPIXEL_TAPS]                       # [3 (uy), 2 (ry), 5, C, O]
    k3 = rows[:, :, _SUBPIXEL_TAPS]                 # [3, 2, 3 (ux), 2 (rx), C, O]
    k3 = k3.transpose(0, 2, 4, 1, 3, 5).reshape(3, 3, c, 4 * o)
    y = jax.lax.conv_general_dilated(x, k3, (1, 1), ((1, 1), (1, 1)),
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return pixel_shuffle(y, 2)


# For a 4×4 stride-2 'SAME' transposed convolution, output row 2m + r gathers kernel row t of
# input row m + d for each (t, d) in _TAP_PHASES[r] (XLA pads the dilated input by 2 below).
_TAP_PHASES = (((0, -1), (2, 0)), ((1, 0), (3, 1)))


def _shifted(a: jax.Array, d: int, axis: int) -> jax.Array:
    """a[m + d] along `axis`, zero outside (d in -1, 0, 1)."""
    if d == 0:
        return a
    pad = [(0, 0)] * a.ndim
    pad[axis] = (1, 0) if d < 0 else (0, 1)
    index = [slice(None)] * a.ndim
    index[axis] = slice(0, -1) if d < 0 else slice(1, None)
    return jnp.pad(a, pad)[tuple(index)]


def _interleave(phases) -> jax.Array:
    """[[y00, y01], [y10, y11]] (each [B, H, W, O], phase (ry, rx)) -> [B, 2H, 2W, O], output
    pixel (2i + ry, 2j + rx) from phase (ry, rx)'s pixel (i, j)."""
    n, h, w, o = phases[0][0].shape
    y = jnp.stack([jnp.stack(row, axis=3) for row in phases], axis=2)  # [B, H, 2, W, 2, O]
    return y.reshape(n, 2 * h, 2 * w, o)


def _phase_kernel(kernel: jax.Array, ty, tx) -> jax.Array:
    """The stride-1 kernel of one output phase: `kernel`'s taps (t, offset) along each axis,
    [len(ty), len(tx), C, O], in the order given."""
    return jnp.stack([jnp.stack([kernel[a, b] for b, _ in tx]) for a, _ in ty])


def conv_transpose_taps(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """4×4 stride-2 'SAME' transposed convolution as 16 matrix products + overlap-add.

    Every kernel tap t multiplies the whole input map ([N·H·W, C] @ [C, O], the kernel used as
    stored), and each output phase adds the 4 tap products that land on it, shifted by at most
    one pixel. Exact multiply-adds (the subpixel form does 2.25×) and no reshuffled copy of the
    kernel, which is what dominates on small maps with wide kernels (the U-Net's inner levels).

    Args:
      x: [B, H, W, C]; kernel: [4, 4, C, O].
    Returns:
      [B, 2H, 2W, O], equal to lax.conv_transpose(x, kernel, (2, 2), "SAME").
    """
    _require_4x4(kernel, "tap")
    n, h, w, c = x.shape
    o = kernel.shape[3]
    if 16 * x.size <= kernel.size:
        # Wide kernel, small map: batched over taps with the input broadcast, so the kernel
        # gradient comes out in the stored [t, c, o] layout; transposed, the optimizer's
        # elementwise passes would read it with a stride (measured 2.5× slower there).
        xs = jnp.broadcast_to(x.reshape(1, n * h * w, c), (16, n * h * w, c))
        cols = jnp.einsum("tpc,tco->tpo", xs, kernel.reshape(16, c, o))
    else:
        # Large map, small kernel (the U-Net's last layer): one product; broadcasting the map
        # 16× costs more than any kernel transposition.
        cols = jnp.einsum("pc,tco->tpo", x.reshape(n * h * w, c), kernel.reshape(16, c, o))
    cols = cols.reshape(4, 4, n, h, w, o)

    def phase(ry, rx):
        terms = [_shifted(_shifted(cols[ty, tx], dy, 1), dx, 2)
                 for ty, dy in _TAP_PHASES[ry] for tx, dx in _TAP_PHASES[rx]]
        return sum(terms[1:], terms[0])

    return _interleave([[phase(ry, rx) for rx in range(2)] for ry in range(2)])


def conv_transpose_winograd(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """4×4 stride-2 'SAME' transposed convolution as its 4 output phases, each a 2×2 stride-1
    convolution (`_TAP_PHASES`) in Winograd F(3×3, 2×2) tiles (`conv_winograd`, whose custom
    VJP gives the gradients): 16 products for 9 outputs against 36.

    Args:
      x: [B, H, W, C]; kernel: [4, 4, C, O].
    Returns:
      [B, 2H, 2W, O], equal to lax.conv_transpose(x, kernel, (2, 2), "SAME").
    """
    _require_4x4(kernel, "Winograd")
    # Each phase's taps in order of input offset; the window starts one pixel before (offset
    # -1, padded at the top or left) or at the pixel itself (padded after).
    taps = [sorted(_TAP_PHASES[r], key=lambda t: t[1]) for r in range(2)]
    pads = [(1, 0) if t[0][1] < 0 else (0, 1) for t in taps]

    def phase(ry, rx):
        return conv_winograd(x, _phase_kernel(kernel, taps[ry], taps[rx]), (pads[ry], pads[rx]), 3)

    return _interleave([[phase(ry, rx) for rx in range(2)] for ry in range(2)])


def conv_transpose_phases(x: jax.Array, kernel: jax.Array, zero_first: bool = False,
                          xla_forward: bool = False) -> jax.Array:
    """4×4 stride-2 'SAME' transposed convolution as 4 stride-1 convolutions, one per output
    phase (2×2 taps each), interleaved: exact multiply-adds. Its gradients (custom VJP) are the
    adjoint strided convolution as one matrix product over the output gradient's 4×4 stride-2
    views: dx = views @ flipped kernel, dkernel = xᵀ @ views. Tested equal to XLA's in value and
    gradient; on CPU the gradients ran 1.3-1.6× faster this way than as the phase
    convolutions' own (pix2pix 64 -> 128 px, batch 4: 380 against 548 ms).

    Args:
      x: [B, H, W, C]; kernel: [4, 4, C, O].
      zero_first: kernel row 0 and column 0 are known zeros (UpConv's 3×3 case): the forward
        skips those taps, so the 4 phases take 1, 2, 2 and 4 taps, 9 in all, like the 3×3 layer.
      xla_forward: the value from XLA's own transposed convolution instead (same gradients).
    Returns:
      [B, 2H, 2W, O], equal to lax.conv_transpose(x, kernel, (2, 2), "SAME").
    """
    _require_4x4(kernel, "phase")
    return _phases(x, kernel, zero_first, xla_forward)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _phases(x, kernel, zero_first, xla_forward):
    return _phases_value(x, kernel, zero_first, xla_forward)


def _phases_value(x, kernel, zero_first, xla_forward=False):
    if xla_forward:
        if zero_first:
            kernel = kernel.at[0].set(0).at[:, 0].set(0)
        return jax.lax.conv_transpose(x, kernel, (2, 2), "SAME",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))
    h, w = x.shape[1:3]
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    # Each phase's taps in order of input offset (the window starts at the lower one).
    taps = [sorted((t for t in _TAP_PHASES[r] if not (zero_first and t[0] == 0)),
                   key=lambda t: t[1]) for r in range(2)]

    def phase(ry, rx):
        ty, tx = taps[ry], taps[rx]
        y0, x0 = ty[0][1] + 1, tx[0][1] + 1
        return _conv1(xp[:, y0:y0 + h + len(ty) - 1, x0:x0 + w + len(tx) - 1],
                      _phase_kernel(kernel, ty, tx), ((0, 0), (0, 0)))

    return _interleave([[phase(ry, rx) for rx in range(2)] for ry in range(2)])


def _phases_fwd(x, kernel, zero_first, xla_forward):
    return _phases_value(x, kernel, zero_first, xla_forward), (x, kernel)


def _phases_bwd(zero_first, xla_forward, res, dy):
    x, kernel = res
    if zero_first:  # the forward never reads kernel row 0 and column 0
        kernel = kernel.at[0].set(0).at[:, 0].set(0)
    n, h, w, c = x.shape
    o = kernel.shape[3]
    # x[i] reaches dy[2i + 2 - t] through tap t: with dy padded by one, the window 2i + u
    # (u = 3 - t) of a stride-2 4×4 correlation.
    views = _im2col_patches(jnp.pad(dy, ((0, 0), (1, 1), (1, 1), (0, 0))), 4, 2, h, w)
    flipped = kernel[::-1, ::-1].transpose(0, 1, 3, 2).reshape(16 * o, c)   # [(u, v, o), c]
    dx = (views @ flipped).reshape(n, h, w, c)
    dk = (x.reshape(n * h * w, c).T @ views).reshape(c, 4, 4, o)
    dk = dk.transpose(1, 2, 0, 3)[::-1, ::-1]
    if zero_first:
        dk = dk.at[0].set(0).at[:, 0].set(0)
    return dx, dk


_phases.defvjp(_phases_fwd, _phases_bwd)


class UpConv(nn.Module):
    """Stride-2 transposed convolution that doubles H and W. impl: "xla", "subpixel", "taps",
    "phases", "mixed", "winograd" (4×4 kernels; 3×3 take "phases") or "auto"
    (`default_up_impl`).

    kernel_size 4: 'SAME' padding (pix2pix). kernel_size 3: PyTorch's ConvTranspose2d(k=3, s=2,
    padding=1, output_padding=1) (CycleGAN), computed as the 4×4 case with the kernel flipped
    and a zero tap in front: y[o] = sum_i x[i]·w[o - 2i + 1].
    """
    features: int
    use_bias: bool = True
    impl: str = "auto"
    dtype: jnp.dtype | None = None
    kernel_size: int = 4

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel_size
        if k not in (3, 4):
            raise ValueError(f"UpConv supports kernels 3 and 4, got {k}")
        x, kernel = _conv_kernel(self, x, k)
        if k == 3:
            kernel = jnp.pad(kernel[::-1, ::-1], ((1, 0), (1, 0), (0, 0), (0, 0)))
        impl = _resolve(self.impl, lambda: default_up_impl(
            x.shape[-1], x.shape[1] * x.shape[2], self.features, k, x.shape[0]))
        if impl == "winograd" and k == 3:
            impl = "phases"  # the 3×3 case's phases are 1×1 to 2×2; Winograd has no gain there
        if impl == "subpixel":
            y = conv_transpose_subpixel(x, kernel)
        elif impl == "taps":
            y = conv_transpose_taps(x, kernel)
        elif impl == "winograd":
            y = conv_transpose_winograd(x, kernel)
        elif impl in ("phases", "mixed"):
            y = conv_transpose_phases(x, kernel, zero_first=(k == 3), xla_forward=impl == "mixed")
        elif impl == "xla":
            y = jax.lax.conv_transpose(x, kernel, (2, 2), "SAME",
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
        else:
            raise ValueError(f"unknown transposed convolution impl {impl!r}")
        return _add_bias(self, y)


class InstanceNorm(nn.Module):
    """Per-example, per-channel normalisation over H and W, with scale and bias."""
    epsilon: float = 1e-5
    affine: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        mean = x.mean(axis=(1, 2), keepdims=True)
        var = jnp.square(x - mean).mean(axis=(1, 2), keepdims=True)
        y = (x - mean) * jax.lax.rsqrt(var + self.epsilon)
        if self.affine:
            y = y * self.param("scale", nn.initializers.ones, (x.shape[-1],)) \
                + self.param("bias", nn.initializers.zeros, (x.shape[-1],))
        return y


def norm_layer(kind: str, train: bool):
    """A normalisation constructor: "batch" (running statistics at inference), "instance", "none"."""
    if kind == "batch":
        return lambda: nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)
    if kind == "instance":
        # affine=False, as pytorch-CycleGAN-and-pix2pix's default instance norm.
        return lambda: InstanceNorm(affine=False)
    if kind == "none":
        return lambda: (lambda x: x)
    raise ValueError(f"unknown norm {kind!r}; expected batch, instance or none")
