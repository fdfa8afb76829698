"""The departments a synthetic university draws on (up to six): core and elective course names in rough level
order, the topics their descriptions mention, and the phrases a course description is built from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Department:
    prefix: str
    name: str
    core: tuple[str, ...]  # names in rough level order
    electives: tuple[str, ...]
    topics: tuple[str, ...]
    non_ascii: str  # used for the single non-ASCII course name


DEPARTMENTS = (
    Department(
        "CS",
        "Computer Science",
        (
            "Introduction to Programming",
            "Discrete Structures",
            "Object-Oriented Programming",
            "Data Structures",
            "Computer Organization",
            "Algorithms",
            "Database Systems",
            "Operating Systems",
            "Software Engineering",
            "Computer Networks",
            "Theory of Computation",
            "Compiler Construction",
            "Senior Project in Computing",
            "Parallel Computing",
        ),
        (
            "Web Development",
            "Machine Learning",
            "Computer Graphics",
            "Information Security",
            "Mobile Application Development",
            "Human-Computer Interaction",
            "Cloud Computing",
            "Natural Language Processing",
            "Computer Vision",
            "Distributed Systems",
            "Game Programming",
            "Data Mining",
        ),
        (
            "algorithm design",
            "data abstraction",
            "software testing",
            "complexity analysis",
            "memory management",
            "concurrency",
            "program correctness",
            "system design",
        ),
        "Théorie des Langages",
    ),
    Department(
        "MA",
        "Mathematics",
        (
            "Calculus I",
            "Linear Algebra",
            "Calculus II",
            "Differential Equations",
            "Probability",
            "Multivariable Calculus",
            "Real Analysis",
            "Abstract Algebra",
            "Mathematical Statistics",
            "Complex Analysis",
            "Numerical Analysis",
            "Topology",
            "Partial Differential Equations",
            "Functional Analysis",
        ),
        (
            "Number Theory",
            "Combinatorics",
            "Graph Theory",
            "Operations Research",
            "Cryptography",
            "Stochastic Processes",
            "Optimization",
            "Mathematical Modelling",
            "Game Theory",
            "Time Series Analysis",
            "Mathematical Logic",
            "Dynamical Systems",
        ),
        (
            "rigorous proof",
            "limits and continuity",
            "matrix methods",
            "estimation",
            "convergence",
            "numerical approximation",
            "abstract structures",
            "modelling",
        ),
        "Géométrie Différentielle",
    ),
    Department(
        "EE",
        "Electrical Engineering",
        (
            "Circuit Analysis I",
            "Digital Logic Design",
            "Circuit Analysis II",
            "Electronics I",
            "Signals and Systems",
            "Electromagnetics",
            "Electronics II",
            "Control Systems",
            "Microprocessors",
            "Communication Systems",
            "Power Systems",
            "Digital Signal Processing",
            "Electrical Design Project",
            "Electric Machines",
        ),
        (
            "Embedded Systems",
            "Renewable Energy Systems",
            "Wireless Communications",
            "Robotics",
            "VLSI Design",
            "Antenna Theory",
            "Power Electronics",
            "Optical Communications",
            "Biomedical Instrumentation",
            "Digital Image Processing",
            "Instrumentation and Measurement",
            "Smart Grids",
        ),
        (
            "circuit modelling",
            "frequency-domain analysis",
            "feedback design",
            "laboratory measurement",
            "hardware prototyping",
            "signal representation",
            "energy conversion",
            "system stability",
        ),
        "Électronique Appliquée",
    ),
    Department(
        "BA",
        "Business Administration",
        (
            "Principles of Management",
            "Financial Accounting",
            "Microeconomics",
            "Macroeconomics",
            "Managerial Accounting",
            "Business Statistics",
            "Marketing Management",
            "Corporate Finance",
            "Organizational Behavior",
            "Operations Management",
            "Business Law",
            "Strategic Management",
            "Business Capstone",
            "International Business",
        ),
        (
            "Entrepreneurship",
            "Digital Marketing",
            "Supply Chain Management",
            "Investment Analysis",
            "Human Resource Management",
            "Business Ethics",
            "Project Management",
            "Consumer Behavior",
            "Negotiation",
            "Risk Management",
            "Business Analytics",
            "Leadership",
        ),
        (
            "case analysis",
            "financial reporting",
            "market research",
            "decision making",
            "team leadership",
            "budgeting",
            "competitive strategy",
            "business communication",
        ),
        "Économie Internationale",
    ),
    Department(
        "ME",
        "Mechanical Engineering",
        (
            "Engineering Drawing",
            "Statics",
            "Dynamics",
            "Thermodynamics I",
            "Strength of Materials",
            "Fluid Mechanics",
            "Thermodynamics II",
            "Machine Design",
            "Heat Transfer",
            "Manufacturing Processes",
            "Mechanical Vibrations",
            "Mechanical Design Project",
            "Materials Science",
            "Mechatronics",
        ),
        (
            "Automotive Engineering",
            "Finite Element Analysis",
            "Refrigeration and Air Conditioning",
            "Composite Materials",
            "Turbomachinery",
            "Computer-Aided Design",
            "Biomechanics",
            "Additive Manufacturing",
            "Marine Engineering",
            "Tribology",
            "Energy Systems",
            "Quality Control",
        ),
        (
            "force analysis",
            "energy balances",
            "material behaviour",
            "design for manufacture",
            "experimental methods",
            "fluid flow",
            "failure analysis",
            "mechanical modelling",
        ),
        "Mécanique des Fluides Avancée",
    ),
    Department(
        "PH",
        "Physics",
        (
            "General Physics I",
            "General Physics II",
            "Classical Mechanics",
            "Modern Physics",
            "Waves and Optics",
            "Electricity and Magnetism",
            "Mathematical Physics",
            "Quantum Mechanics",
            "Statistical Mechanics",
            "Solid State Physics",
            "Nuclear Physics",
            "Advanced Physics Laboratory",
            "Physics Research Project",
            "Relativity",
        ),
        (
            "Astrophysics",
            "Medical Physics",
            "Laser Physics",
            "Computational Physics",
            "Plasma Physics",
            "Particle Physics",
            "Acoustics",
            "Atmospheric Physics",
            "Biophysics",
            "Semiconductor Physics",
            "Cosmology",
            "Photonics",
        ),
        (
            "physical modelling",
            "conservation laws",
            "experimental error",
            "field theory",
            "approximation methods",
            "laboratory technique",
            "dimensional analysis",
            "computational methods",
        ),
        "Physique Nucléaire Appliquée",
    ),
)

_LEVEL_WORDS = {1: "An introductory", 2: "An intermediate", 3: "An advanced", 4: "A senior-level"}
_ACTIVITIES = ("weekly problem sets", "a semester-long team project", "short written reports", "tutorial sessions")
_DEPT_ACTIVITY = {
    "CS": "guided programming exercises",
    "MA": "weekly proof-writing exercises",
    "EE": "hands-on laboratory sessions",
    "BA": "case studies and class discussion",
    "ME": "workshop and laboratory sessions",
    "PH": "hands-on laboratory sessions",
}
_ASSESSMENTS = (
    "a midterm and a final examination",
    "coursework and a final examination",
    "a project report and an oral presentation",
    "quizzes, assignments and a final examination",
)


def describe_course(name: str, *, level: int, elective: bool, dep: Department, rng: np.random.Generator) -> str:
    """One catalogue description: two of the department's topics, an activity and an assessment, drawn from
    ``rng``."""
    t1, t2 = (dep.topics[i] for i in rng.choice(len(dep.topics), size=2, replace=False))
    activities = (*_ACTIVITIES, _DEPT_ACTIVITY[dep.prefix])
    activity = activities[rng.integers(len(activities))]
    assessment = _ASSESSMENTS[rng.integers(len(_ASSESSMENTS))]
    kind = "elective" if elective else "core"
    templates = [
        f"{_LEVEL_WORDS[level]} {kind} course in {name} covering {t1} and {t2}, with {activity}.",
        f"Students in {name} study {t1} and {t2} through {activity}, assessed by {assessment}.",
    ]
    if level > 1:
        templates.append(
            f"{name} builds on earlier {dep.name} courses to develop {t1} and {t2}; assessed by {assessment}."
        )
    return templates[rng.integers(len(templates))]
