"""UVD: builds the UVDv1 visual-sentence dataset of the Large Vision Model paper."""

__version__ = "0.1.0"
