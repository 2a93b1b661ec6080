"""Parameter partitions: which leaves of a model are shared and which stay personal.

A partition is a *label function* over the parameter pytree: ``labels(params)`` returns a
pytree of the same structure whose leaves are the strings ``"shared"`` or ``"personal"``.
It is what ``optax.multi_transform`` takes as ``param_labels``, so a partition drives an
optimizer per part directly::

  opt = optax.multi_transform(
      {"shared": optax.sgd(0.1), "personal": optax.sgd(0.001)}, partition.head_labels
  )

and :func:`mask` turns it into the boolean pytree that ``optax.masked`` takes.

:func:`select` keeps one part of a pytree and puts ``None`` (an empty subtree) in place of
every other leaf, so the result is itself a pytree that optax transformations, gossip and
``jax.tree.map`` accept; :func:`merge` puts the parts back together. The default partition
(:func:`head_labels`) makes the classifier head, the top-level module named ``head`` that
every model of :mod:`fedjax_lab.models` has, personal, and everything else shared.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax

SHARED = "shared"
PERSONAL = "personal"
LABELS = (SHARED, PERSONAL)

LabelFn = Callable[[Any], Any]  # params -> pytree of "shared" / "personal"


def _top_level_name(path: tuple) -> str | None:
    if not path:
        return None
    entry = path[0]
    for attribute in ("key", "name", "idx"):
        if hasattr(entry, attribute):
            return str(getattr(entry, attribute))
    return str(entry)


def personal_layers(names: Sequence[str]) -> LabelFn:
    """A label function making the named top-level modules personal, the rest shared.

    Args:
      names: top-level keys of the parameter dict (``"head"``, ``"hidden_1"``, ...).

    Returns:
      ``labels(params)``; it raises ValueError when a name is not a top-level key.
    """
    names = tuple(names)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"Expected a non-empty sequence of layer names, got {names!r}.")

    def labels(params: Any) -> Any:
        present = {_top_level_name(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]}
        missing = sorted(set(names) - present)
        if missing:
            raise ValueError(
                f"Unknown layer(s) {', '.join(map(repr, missing))} in the partition; the "
                f"model's top-level layers are {', '.join(sorted(map(str, present)))}."
            )
        return jax.tree_util.tree_map_with_path(
            lambda path, _: PERSONAL if _top_level_name(path) in names else SHARED, params
        )

    return labels


head_labels: LabelFn = personal_layers(["head"])
head_labels.__doc__ = "The default partition: the classifier ``head`` personal, the rest shared."


def everything_shared(params: Any) -> Any:
    """The partition of full-model sharing: every leaf shared."""
    return jax.tree.map(lambda _: SHARED, params)


def resolve(labels: LabelFn | Any, params: Any) -> Any:
    """The labels pytree of ``params``: ``labels(params)``, or ``labels`` itself, checked."""
    tree = labels(params) if callable(labels) else labels
    if jax.tree.structure(tree) != jax.tree.structure(params):
        raise ValueError(
            "A partition must label every parameter leaf, got labels with structure "
            f"{jax.tree.structure(tree)} for parameters {jax.tree.structure(params)}."
        )
    for leaf in jax.tree.leaves(tree):
        if leaf not in LABELS:
            raise ValueError(f"Expected partition labels in {LABELS}, got {leaf!r}.")
    return tree


def check_both_parts(labels: LabelFn | Any, params: Any) -> Any:
    """The labels of ``params``; a ValueError if a part (shared or personal) is empty."""
    tree = resolve(labels, params)
    found = set(jax.tree.leaves(tree))
    for part in LABELS:
        if part not in found:
            raise ValueError(
                f"The partition leaves no {part} parameters (every leaf is "
                f"{(set(LABELS) - {part}).pop()!r}); partial personalization needs both parts. "
                "Choose other personal layers."
            )
    return tree


def mask(labels: LabelFn | Any, params: Any, label: str = SHARED) -> Any:
    """A pytree of Python booleans, True where the leaf has ``label`` (for ``optax.masked``)."""
    return jax.tree.map(lambda lab: lab == label, resolve(labels, params))


def select(tree: Any, keep: Any) -> Any:
    """``tree`` with every leaf where ``keep`` is False replaced by None.

    ``keep`` is a boolean pytree over the same structure (:func:`mask`). Leaves may carry
    extra leading axes (a client axis); only the structure is matched.
    """
    return jax.tree.map(lambda leaf, k: leaf if k else None, tree, keep)


def merge(*trees: Any) -> Any:
    """The union of disjoint parts made by :func:`select`: each leaf from the part that has it."""

    def pick(*leaves):
        present = [leaf for leaf in leaves if leaf is not None]
        if len(present) != 1:
            raise ValueError(f"Expected exactly one part to hold each leaf, got {len(present)}.")
        return present[0]

    return jax.tree.map(pick, *trees, is_leaf=lambda x: x is None)


def split(tree: Any, keep: Any) -> tuple[Any, Any]:
    """``(select(tree, keep), select(tree, not keep))``: the two parts of ``tree``."""
    return select(tree, keep), select(tree, jax.tree.map(lambda k: not k, keep))
