"""Baselines, each a :class:`~electives.models.interface.Model` registered under its family name.

Grade predictors (explicit data): GlobalMean, StudentMean, CourseMean (``means``), BiasModel (``bias``),
MatrixFactorization (``mf``), ItemKNN (``knn``). Ranking-only (implicit data): Popularity, EASE (``ranking``), IALS
(``ials``), and MatrixFactorization / ItemKNN with mode="implicit". Each folds in a new student its own way (see its docstring);
the families worth serving are bias, mf and knn.
"""

from __future__ import annotations

from electives.models.baselines.bias import BiasModel
from electives.models.baselines.ials import IALS
from electives.models.baselines.knn import ItemKNN
from electives.models.baselines.means import CourseMean, GlobalMean, StudentMean
from electives.models.baselines.mf import MatrixFactorization
from electives.models.baselines.ranking import EASE, Popularity

__all__ = [
    "EASE",
    "IALS",
    "BiasModel",
    "CourseMean",
    "GlobalMean",
    "ItemKNN",
    "MatrixFactorization",
    "Popularity",
    "StudentMean",
]
