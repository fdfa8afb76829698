"""Answers for one student: the recommender (known students and fold-in), eligibility filtering, explanations, and top-k scoring of every student."""
