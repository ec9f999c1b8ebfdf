"""Which form each convolution takes on CPU, as data: per kind, rules tried in order, the first
whose bounds a layer's shape meets wins. Every form a rule names is registered
(facejax/ops/conv/registry.py); the measurements behind the rules are in docs/benchmarks.md,
and `facejax benchmark conv` times every form of a layer shape to re-check them.

A layer's shape, as the rules see it:
  kernel        k of the k×k kernel (for a transposed layer: 3 or 4 as stored)
  in_channels   C; out_channels: O
  pixels        strided: output pixels per image; transposed and stride 1: input pixels
                (for stride 1, the map as given, after any explicit padding of the caller's)
  batch         images in the (per-device) batch
  batch_pixels  batch · pixels
  patch_entries batch · pixels · k² · C, the size of im2col's patch matrix
"""

from __future__ import annotations

import dataclasses

KINDS = ("strided", "transposed", "stride1")


@dataclasses.dataclass(frozen=True)
class Shape:
    kernel: int
    in_channels: int
    out_channels: int
    pixels: int
    batch: int = 1

    @property
    def batch_pixels(self) -> int:
        return self.batch * self.pixels

    @property
    def patch_entries(self) -> int:
        return self.batch_pixels * self.kernel ** 2 * self.in_channels


Bound = tuple  # (low, high), inclusive; None leaves that side open


@dataclasses.dataclass(frozen=True)
class Rule:
    """`form` for every shape within all the given bounds."""
    form: str
    why: str
    kernel: Bound = (None, None)
    in_channels: Bound = (None, None)
    out_channels: Bound = (None, None)
    pixels: Bound = (None, None)
    batch_pixels: Bound = (None, None)
    patch_entries: Bound = (None, None)

    BOUNDS = ("kernel", "in_channels", "out_channels", "pixels", "batch_pixels", "patch_entries")

    def matches(self, shape: Shape) -> bool:
        for name in self.BOUNDS:
            lo, hi = getattr(self, name)
            value = getattr(shape, name)
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                return False
        return True


WIDE = (64, None)  # 64+ channels: the layers whose products fill the machine

RULES = {
    "strided": (
        Rule("im2col", "first layers (RGB, image pairs): one product beats any convolution",
             in_channels=(None, 8)),
        Rule("winograd", "4×4 and 5×5 kernels on 1024+ output pixels in the batch: Winograd "
             "tiles of the space-to-depth form; below that the kernel transforms dominate",
             in_channels=WIDE, kernel=(4, 5), batch_pixels=(1024, None)),
        Rule("winograd", "3×3 kernels on 4096+ output pixels in the batch (the CycleGAN "
             "ResNet's down layers): Winograd tiles of the space-to-depth form",
             in_channels=WIDE, kernel=(3, 3), batch_pixels=(4096, None)),
        Rule("im2col", "3×3 kernels on fewer output pixels, while the patch matrix stays small",
             in_channels=WIDE, kernel=(3, 3), patch_entries=(None, 6_000_000)),
        Rule("im2col", "wide 5×5+ kernels: the weights outweigh the map",
             in_channels=WIDE, kernel=(5, None)),
        Rule("im2col", "wide layers on maps of at most 16×16: the weights outweigh the map",
             in_channels=WIDE, pixels=(None, 256)),
        Rule("xla", "narrow layers on large maps: im2col's patch matrix grows too big and "
             "XLA's strided convolution wins", patch_entries=(6_000_000, None)),
        Rule("s2d", "narrow layers on small maps: stride 1 over the space-to-depth view"),
    ),
    "transposed": (
        Rule("subpixel", "narrow inputs (test configs): 3×3 convolution + pixel shuffle",
             in_channels=(None, 63)),
        Rule("taps", "tiny maps (at most 64 input pixels in the batch) of wide layers: one "
             "product per kernel tap, no reshuffled kernel", batch_pixels=(None, 64)),
        Rule("phases", "3×3 kernels (CycleGAN): one stride-1 convolution per output phase "
             "skips the zero taps XLA's would multiply", kernel=(3, 3)),
        Rule("mixed", "few output channels (the U-Net's last layer): XLA's value, the phase "
             "form's one-product gradients", out_channels=(None, 8)),
        Rule("winograd", "4096+ input pixels in the batch: each phase in Winograd tiles",
             batch_pixels=(4096, None)),
        Rule("mixed", "other 4×4 layers"),
    ),
    "stride1": (
        Rule("winograd4", "wide 3×3 layers on maps of 16×16+ with 4096+ batch pixels: F(4×4) "
             "tiles (capped by the layer's max_tile, since F(4×4) compiles slowly)",
             in_channels=WIDE, out_channels=WIDE, kernel=(3, 3), pixels=(256, None),
             batch_pixels=(4096, None)),
        Rule("winograd2", "wide 3×3 layers on maps of 4×4+ with 256+ batch pixels",
             in_channels=WIDE, out_channels=WIDE, kernel=(3, 3), pixels=(16, None),
             batch_pixels=(256, None)),
        Rule("winograd3", "wide 4×4 layers (the PatchGAN's) on maps of 16×16+: F(3×3) tiles",
             in_channels=WIDE, out_channels=WIDE, kernel=(4, 4), pixels=(256, None)),
        Rule("thin", "at most 4 outputs from wide inputs: XLA:CPU's convolutions run far "
             "below the products there",
             in_channels=WIDE, out_channels=(None, 4)),
        Rule("im2col", "wide layers on maps of at most 8×8: YNNPACK's convolution is slowest",
             in_channels=WIDE, pixels=(None, 64)),
        Rule("im2col", "images (at most 8 channels) onto 16+ channels: one product",
             in_channels=(None, 8), out_channels=(16, None)),
        Rule("xla", "everything else"),
    ),
}

# A model's transposed form when only its strided one is given (the matching formulation).
TRANSPOSED_FOR = {"s2d": "subpixel", "im2col": "taps"}

# Inference (forward only) on CPU: XLA's own strided convolution is the faster forward (the
# space-to-depth and Winograd forms win on the backward pass of training), its transposed one
# is not. Applied by facejax.inference when it loads a run; same parameters either way.
INFERENCE = {"conv_impl": "xla", "up_impl": "auto"}


def winograd_tile(form: str) -> int | None:
    """m of a stride-1 "winogradM" form, else None."""
    return int(form[len("winograd"):]) if form.startswith("winograd") and \
        form[len("winograd"):].isdigit() else None


def cap_tile(form: str, max_tile: int) -> str:
    """A stride-1 Winograd form with its tile capped at `max_tile` (never below 2)."""
    m = winograd_tile(form)
    return form if m is None else f"winograd{max(2, min(m, max_tile))}"


def choose(kind: str, shape: Shape, max_tile: int = 4) -> str:
    """The CPU form of a `kind` layer of `shape` (the first matching rule)."""
    for rule in RULES[kind]:
        if rule.matches(shape):
            return cap_tile(rule.form, max_tile) if kind == "stride1" else rule.form
    raise AssertionError(f"no {kind} rule matches {shape}")  # the last rule matches all
