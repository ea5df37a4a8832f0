"""Submission tooling: writer (template order, fixed precision), validator, Kaggle submit /
status through the official client, and the ledger of every attempt."""
from pipeline.submission.validator import Defect, ValidationReport, validate_submission
from pipeline.submission.writer import SubmissionError, WriteConfig, build_submission, write_submission

__all__ = [
    "Defect",
    "SubmissionError",
    "ValidationReport",
    "WriteConfig",
    "build_submission",
    "validate_submission",
    "write_submission",
]
