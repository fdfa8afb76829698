"""Every model family this version can train and serve, registered by importing its module (artifacts name their
family; :func:`family_class` finds its class)."""

from __future__ import annotations

from electives.models import baselines, ensemble, training  # noqa: F401  (imported to register their families)
from electives.models.interface import FAMILIES, family_class

__all__ = ["FAMILIES", "family_class"]
