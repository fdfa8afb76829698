"""The size, seed and fixed parameters of a synthetic university.

Latent model: true = clip(mu + sigma_a*a_s - sigma_b*b_c + sigma_i*z(u_s . v_c), 0, 100), where a_s is general
ability, b_c difficulty, u_s/v_c latent strengths/demands (pulled towards a per-department direction) and z()
standardises the interaction over all student x course pairs. Observed = clip(true + N(0, noise_sd), 0, 100).
"""

from __future__ import annotations

from dataclasses import dataclass

from electives.data.synth.departments import DEPARTMENTS

CAREER_TERMS = 8  # students leave after four academic years
PASS_MARK = 60.0

# Latent-model scale (percent points). sqrt(4.5² + 4.5² + 8²) ≈ 10 = sd of true totals; the interaction is the
# largest part so that a student's best electives are clearly better than random ones.
MU = 75.0
SIGMA_ABILITY = 4.5
SIGMA_DIFFICULTY = 4.5
SIGMA_INTERACTION = 8.0
DEPARTMENT_PULL = 0.55  # how strongly u_s / v_c lean towards their department's direction

# Enrolment behaviour.
CHOICE_WEIGHT = 0.4  # weak preference: logit weight per within-student sd of the true elective grades
LEVEL_PENALTY = 1.0  # logit penalty per level above (career year + 1): freshmen rarely take 400-level courses
RETAKE_PROBABILITY = 0.35
# Mark codes and their share of rows: W, I, 777, 999 (the registrar's placeholders).
MARKS = ("", "W", "I", "777", "999")
MARK_RATES = (0.003, 0.003, 0.003, 0.003)
DUPLICATE_RATE = 0.001


@dataclass(frozen=True)
class SynthConfig:
    """Size and seed of a synthetic university. Same config → identical output."""

    n_students: int = 2000
    n_courses: int = 80
    n_electives: int = 30
    n_departments: int = 4  # 3–4 for the demo; up to 6 are defined
    n_terms: int = 8  # length of the export window, alternating Fall, Spring
    n_factors: int = 4  # latent dimensions
    seed: int = 2017
    noise_sd: float = 5.0  # percent points of noise on observed totals
    start_year: int = 2019  # calendar year of the first (Fall) term

    def validate(self) -> None:
        if self.n_students < 1:
            raise ValueError("n_students must be at least 1")
        if not 1 <= self.n_departments <= len(DEPARTMENTS):
            raise ValueError(f"n_departments must be between 1 and {len(DEPARTMENTS)}")
        n_core = self.n_courses - self.n_electives
        if self.n_electives < 1 or n_core < 2 * self.n_departments:
            raise ValueError("need at least one elective and two core courses per department")
        if self.n_terms < 1 or self.n_factors < 1 or self.noise_sd < 0:
            raise ValueError("n_terms and n_factors must be positive and noise_sd non-negative")
