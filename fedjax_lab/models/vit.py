"""A small vision transformer, cut into the three parts split learning needs.

``x [B, H, W, C]`` is cut into ``p x p`` patches; each patch is embedded linearly and given
a learned position embedding (``embedding``: ``[B, T, dim]`` tokens, ``T = HW / p^2``);
``depth`` pre-norm transformer blocks follow (``body``: self-attention with ``heads``
heads, then a two-layer GELU MLP of width ``mlp_ratio * dim``, each with a residual
connection); the classifier averages the tokens, normalizes and applies the ``head`` Dense
layer. The three parts are methods too, so a split-learning client can run the embedding
and the classifier while a server runs the body::

  tokens = model.apply(variables, x, method=ViT.embed)
  hidden = model.apply(variables, tokens, method=ViT.encode)
  logits = model.apply(variables, hidden, method=ViT.classify)

(in split-learning papers the input embedding is often called the model's "head" and the
classifier its "tail"; here ``head`` is the classifier's Dense layer, as in every model of
:mod:`fedjax_lab.models`). :class:`SplitViT` is a split-learning client's model: the
embedding and the classifier, with parameters named as in :class:`ViT`, around a body it
can only call.

Reference: Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image
Recognition at Scale", ICLR 2021.
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax.numpy as jnp


class PatchEmbedding(nn.Module):
    """``[B, H, W, C] -> [B, T, dim]``: linear patch embeddings plus position embeddings."""

    patch_size: int
    dim: int

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        b, h, w, c = x.shape
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f"Expected H and W divisible by patch_size={p}, got {x.shape}.")
        patches = x.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
        tokens = nn.Dense(self.dim, name="patches")(patches.reshape(b, -1, p * p * c))
        position = self.param(
            "position", nn.initializers.normal(0.02), (1, tokens.shape[1], self.dim)
        )
        return tokens + position


class Block(nn.Module):
    """A pre-norm transformer block: ``x + Attn(LN(x))``, then ``x + MLP(LN(x))``."""

    heads: int
    mlp_ratio: int

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        dim = x.shape[-1]
        y = nn.LayerNorm(name="norm_0")(x)
        x = x + nn.MultiHeadDotProductAttention(num_heads=self.heads, name="attention")(y, y)
        y = nn.LayerNorm(name="norm_1")(x)
        y = nn.gelu(nn.Dense(self.mlp_ratio * dim, name="mlp_0")(y))
        return x + nn.Dense(dim, name="mlp_1")(y)


class Encoder(nn.Module):
    """``depth`` transformer blocks over the tokens."""

    depth: int
    heads: int
    mlp_ratio: int

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        for i in range(self.depth):
            x = Block(self.heads, self.mlp_ratio, name=f"block_{i}")(x)
        return x


class ViT(nn.Module):
    """Vision transformer classifier (module docstring); logits ``[B, num_classes]``."""

    num_classes: int
    patch_size: int = 2
    dim: int = 32
    depth: int = 2
    heads: int = 2
    mlp_ratio: int = 2

    def setup(self):
        self.embedding = PatchEmbedding(self.patch_size, self.dim)
        self.body = Encoder(self.depth, self.heads, self.mlp_ratio)
        self.norm = nn.LayerNorm()
        self.head = nn.Dense(self.num_classes)

    def embed(self, x: jnp.ndarray) -> jnp.ndarray:
        """The input embedding: tokens ``[B, T, dim]``."""
        return self.embedding(x)

    def encode(self, tokens: jnp.ndarray) -> jnp.ndarray:
        """The transformer body: tokens to tokens."""
        return self.body(tokens)

    def classify(self, tokens: jnp.ndarray) -> jnp.ndarray:
        """The classifier: mean over tokens, layer norm, ``head``."""
        return self.head(self.norm(jnp.mean(tokens, axis=1)))

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return self.classify(self.encode(self.embed(x)))


class SplitViT(nn.Module):
    """The client's side of a :class:`ViT` cut for split learning.

    Its parameters are the input embedding (``embedding``) and the classifier (``norm`` and
    ``head``), named as in :class:`ViT`; the transformer body is ``body``, a function of the
    tokens alone that the server runs (its parameters closed over, often frozen and a
    :func:`fedjax_lab.black_box.black_box`). ``__call__`` is ``classify(body(embed(x)))``.
    """

    num_classes: int
    body: Callable[[jnp.ndarray], jnp.ndarray]
    patch_size: int = 2
    dim: int = 32

    def setup(self):
        self.embedding = PatchEmbedding(self.patch_size, self.dim)
        self.norm = nn.LayerNorm()
        self.head = nn.Dense(self.num_classes)

    def embed(self, x: jnp.ndarray) -> jnp.ndarray:
        """The input embedding (the client's first part): tokens ``[B, T, dim]``."""
        return self.embedding(x)

    def classify(self, tokens: jnp.ndarray) -> jnp.ndarray:
        """The classifier (the client's last part): mean over tokens, layer norm, ``head``."""
        return self.head(self.norm(jnp.mean(tokens, axis=1)))

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return self.classify(self.body(self.embed(x)))
