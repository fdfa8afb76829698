"""electives: recommend the elective courses in which each student is predicted to do best."""

__version__ = "0.1.0"
