"""Session metadata as the backends keep it: merge patches and the labels it is filtered by."""

from __future__ import annotations

import json

__all__ = ["labels_of", "merge_patch"]


def merge_patch(target: object, patch: object) -> object:
    """RFC 7396 JSON Merge Patch: ``patch`` applied to ``target`` (neither is changed)."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def labels_of(metadata: str | None) -> list[tuple[str, str]]:
    """The (key, value) pairs a metadata object is filtered by: its top-level scalars.

    A string is its own text; a number or boolean is its JSON text (``3``, ``true``);
    null, arrays and objects are kept but not indexed.
    """
    if metadata is None:
        return []
    labels: list[tuple[str, str]] = []
    for key, value in json.loads(metadata).items():
        if isinstance(value, str):
            labels.append((key, value))
        elif isinstance(value, (bool, int, float)):
            labels.append((key, json.dumps(value)))
    return labels
