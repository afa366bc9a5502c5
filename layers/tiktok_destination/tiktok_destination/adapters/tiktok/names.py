"""How TikTok shows an audience name: the one rule config and audience lookup both apply.

Stdlib only and importing nothing from the package, so ``config`` (which ``audience``
imports through ``runs``) can use it without an import cycle.
"""

from __future__ import annotations

TIKTOK_NAME_LIMIT = 70
TIKTOK_TRUNCATED_PREFIX = 67


def tiktok_visible_name(name: str) -> str:
    """The name TikTok shows for ``name``: over 70 characters it keeps 67 plus '...'.

    TikTok's list answers this name, so lookup by name matches on it: two names with the
    same visible name are one audience as far as lookup can tell.
    """
    if len(name) > TIKTOK_NAME_LIMIT:
        return name[:TIKTOK_TRUNCATED_PREFIX] + "..."
    return name


__all__ = ["TIKTOK_NAME_LIMIT", "TIKTOK_TRUNCATED_PREFIX", "tiktok_visible_name"]
