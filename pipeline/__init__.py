"""FFDV deepfake-detection pipeline: the importable library behind the DVC stages."""

__version__ = "0.1.0"
