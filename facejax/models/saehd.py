"""DeepFaceLab's SAEHD networks (DeepFakeArchi), as Flax modules: an encoder, one or two inter
blocks and one or two decoders, each decoder with a face and a learned-mask branch.

  Downscale   conv 5×5 stride 2 + LeakyReLU 0.1
  Upscale     conv 3×3 to 4·C + LeakyReLU 0.1 + depth to space ×2
  Residual    conv 3×3 → LeakyReLU 0.2 → conv 3×3, added to the input → LeakyReLU 0.2
  Encoder     Downscale to e, 2e, 4e, 8e channels (R/16 px), flattened
              ("t": Downscale e, Residual, Downscale 2e, 4e, 8e, 8e, Residual: R/32 px;
               "u": pixel norm of the flattened output)
  Inter(out)  Dense → ae_dims → Dense → (R/16)² · out, reshaped, Upscale (no Upscale with "t";
              "d": R/32 instead of R/16)
  Decoder     Upscale 8d + Residual, Upscale 4d + Residual, Upscale 2d + Residual ("t": 8d, 8d,
              4d, 2d), conv 1×1 to 3, sigmoid ("d": four 3×3/1×1 convs to 3, depth to space ×2);
              mask branch from the same code: Upscale 8m, 4m, 2m (+ m with "d"), conv 1×1 to 1,
              sigmoid
  df          encoder, inter (out ae_dims), decoder_a, decoder_b
  liae        encoder, inter_ab and inter_b (out 2·ae_dims), one decoder on 4·ae_dims channels:
              A's code is inter_ab twice, B's code inter_b then inter_ab

Kernels are glorot-uniform and biases zero, as DeepFaceLab initialises them. Identity "a" is
DeepFaceLab's src (the face put into videos), "b" its dst.
"""

from __future__ import annotations


import flax.linen as nn
import jax
import jax.numpy as jnp

from facejax.models.layers import Conv, StridedConv, compute_dtype
from facejax.ops.shuffle import pixel_shuffle

GLOROT = nn.initializers.glorot_uniform()


def lrelu(x, slope):
    return nn.leaky_relu(x, slope)


class Upscale(nn.Module):
    features: int
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x):
        x = Conv(4 * self.features, 3, dtype=self.dtype, kernel_init=GLOROT)(x)
        return pixel_shuffle(lrelu(x, 0.1), 2)


class Residual(nn.Module):
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, inp):
        ch = inp.shape[-1]
        x = lrelu(Conv(ch, 3, dtype=self.dtype, kernel_init=GLOROT)(inp), 0.2)
        x = Conv(ch, 3, dtype=self.dtype, kernel_init=GLOROT)(x)
        return lrelu(inp + x, 0.2)


class Encoder(nn.Module):
    e_dims: int
    opts: str = ""
    conv_impl: str = "auto"
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x):
        e = self.e_dims
        down = lambda f: (lambda v: lrelu(StridedConv(f, 5, impl=self.conv_impl, dtype=self.dtype,
                                                      kernel_init=GLOROT)(v), 0.1))
        if "t" in self.opts:
            x = Residual(self.dtype)(down(e)(x))
            for f in (2 * e, 4 * e, 8 * e, 8 * e):
                x = down(f)(x)
            x = Residual(self.dtype)(x)
        else:
            for i in range(4):
                x = down(e * min(2 ** i, 8))(x)
        x = x.reshape(x.shape[0], -1)
        if "u" in self.opts:
            x = x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + 1e-6)
        return x


class Inter(nn.Module):
    ae_dims: int
    out_ch: int
    lowest_res: int
    opts: str = ""
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x):
        dense = lambda n: nn.Dense(n, dtype=self.dtype, param_dtype=jnp.float32,
                                   kernel_init=GLOROT)
        x = dense(self.ae_dims)(x)
        x = dense(self.lowest_res ** 2 * self.out_ch)(x)
        x = x.reshape(x.shape[0], self.lowest_res, self.lowest_res, self.out_ch)
        if "t" not in self.opts:
            x = Upscale(self.out_ch, self.dtype)(x)
        return x


class Decoder(nn.Module):
    d_dims: int
    d_mask_dims: int
    opts: str = ""
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, z):
        d, m = self.d_dims, self.d_mask_dims
        widths = (8 * d, 8 * d, 4 * d, 2 * d) if "t" in self.opts else (8 * d, 4 * d, 2 * d)
        x = z
        for w in widths:
            x = Residual(self.dtype)(Upscale(w, self.dtype)(x))
        conv = lambda f, k: Conv(f, k, dtype=self.dtype, kernel_init=GLOROT)
        if "d" in self.opts:
            x = pixel_shuffle(jnp.concatenate([conv(3, 1)(x)] + [conv(3, 3)(x) for _ in range(3)],
                                              axis=-1), 2)
        else:
            x = conv(3, 1)(x)
        mask_widths = (8 * m, 8 * m, 4 * m, 2 * m) if "t" in self.opts else (8 * m, 4 * m, 2 * m)
        if "d" in self.opts:
            mask_widths = mask_widths + (m,)
        y = z
        for w in mask_widths:
            y = Upscale(w, self.dtype)(y)
        y = conv(1, 1)(y)
        return nn.sigmoid(x.astype(jnp.float32)), nn.sigmoid(y.astype(jnp.float32))


def parse_archi(archi: str) -> tuple[str, str]:
    """"df", "liae-ud", ... -> ("df" | "liae", options among "u", "d", "t")."""
    base, _, opts = archi.partition("-")
    if base not in ("df", "liae") or set(opts) - set("udt"):
        raise ValueError(f"archi {archi!r}: expected df or liae with options from u, d, t "
                         "(e.g. liae-ud)")
    return base, opts


def check_resolution(size: int, opts: str) -> None:
    step = 32 if ("d" in opts or "t" in opts) else 16
    if size % step or size < 2 * step:
        raise ValueError(f"SAEHD resolution must be a multiple of {step} (and at least "
                         f"{2 * step}) for these archi options, got {size}")


class SAEHD(nn.Module):
    """All the networks of one archi; methods give the codes and decodings the task uses."""
    archi: str = "df"
    size: int = 128
    ae_dims: int = 256
    e_dims: int = 64
    d_dims: int = 64
    d_mask_dims: int = 22
    conv_impl: str = "auto"
    dtype: jnp.dtype | None = None

    def setup(self):
        base, opts = parse_archi(self.archi)
        check_resolution(self.size, opts)
        lowest = self.size // (32 if "d" in opts else 16)
        self.encoder = Encoder(self.e_dims, opts, self.conv_impl, self.dtype)
        if base == "df":
            self.inter = Inter(self.ae_dims, self.ae_dims, lowest, opts, self.dtype)
            self.decoder_a = Decoder(self.d_dims, self.d_mask_dims, opts, self.dtype)
            self.decoder_b = Decoder(self.d_dims, self.d_mask_dims, opts, self.dtype)
        else:
            self.inter_ab = Inter(self.ae_dims, 2 * self.ae_dims, lowest, opts, self.dtype)
            self.inter_b = Inter(self.ae_dims, 2 * self.ae_dims, lowest, opts, self.dtype)
            self.decoder = Decoder(self.d_dims, self.d_mask_dims, opts, self.dtype)

    def encode(self, x):
        return self.encoder(x)

    def code(self, features, identity: str):
        """The code a decoder reads for faces of `identity` ("a" or "b")."""
        if parse_archi(self.archi)[0] == "df":
            return self.inter(features)
        ab = self.inter_ab(features)
        return jnp.concatenate([ab if identity == "a" else self.inter_b(features), ab], axis=-1)

    def decode(self, code, identity: str):
        """(face, mask) in [0, 1] as `identity` ("a" or "b") would look."""
        if parse_archi(self.archi)[0] == "df":
            return (self.decoder_a if identity == "a" else self.decoder_b)(code)
        return self.decoder(code)

    def __call__(self, x, target: str = "a"):
        """Faces (of either identity) rendered as `target`: (face, mask). The decoder reads the
        target's code: for liae, a face of B rendered as A goes through inter_AB alone, as
        DeepFaceLab's swap (its src code of the dst face) does."""
        return self.decode(self.code(self.encode(x), target), target)

    def init_all(self, x):
        """Creates every network's parameters (both identities' paths)."""
        f = self.encode(x)
        outs = [self.decode(self.code(f, s), s) for s in ("a", "b")]
        return outs


def build(config) -> SAEHD:
    m = config.model
    return SAEHD(archi=m.archi, size=m.size, ae_dims=m.ae_dims, e_dims=m.e_dims,
                 d_dims=m.d_dims, d_mask_dims=m.d_mask_dims, conv_impl=m.get("conv_impl", "auto"),
                 dtype=compute_dtype(m))
