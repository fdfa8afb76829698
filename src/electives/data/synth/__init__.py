"""A deterministic synthetic university: the built-in demo data set and the ground truth for evaluation.

`generate(SynthConfig(...))` simulates students entering in cohorts, taking their department's core courses in
level order plus electives (prerequisites and term offerings respected, chosen with only a weak preference for
what suits them), and returns a registrar-style export with the usual mess (W/I marks, 777/999 placeholders,
retakes, duplicated rows, one non-ASCII course name) together with every student's true expected percent in
every course. `write(university, out_dir)` puts it on disk as CSV files plus a README.

The modules: :mod:`.config` (sizes, seed and the latent model's parameters), :mod:`.departments` (names and
description phrases), :mod:`.formats` (the files' columns, term labels, letter grades), :mod:`.courses` (the
catalogue), :mod:`.university` (the simulation and `generate`) and :mod:`.files` (`write`, `write_large`).
"""

from electives.data.synth.config import CAREER_TERMS, SynthConfig
from electives.data.synth.files import write, write_large
from electives.data.synth.formats import (
    CATALOG_COLUMNS,
    EXPORT_COLUMNS,
    EXPORT_MAPPING,
    EXPORT_SCALE,
    TRUTH_COLUMNS,
    import_flags,
    letter_grade,
    term_label,
)
from electives.data.synth.university import University, generate

__all__ = [
    "CAREER_TERMS",
    "CATALOG_COLUMNS",
    "EXPORT_COLUMNS",
    "EXPORT_MAPPING",
    "EXPORT_SCALE",
    "TRUTH_COLUMNS",
    "SynthConfig",
    "University",
    "generate",
    "import_flags",
    "letter_grade",
    "term_label",
    "write",
    "write_large",
]
