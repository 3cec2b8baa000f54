"""mnistlab: train, compare and use handwritten-digit classifiers."""

__version__ = "0.1.0"
