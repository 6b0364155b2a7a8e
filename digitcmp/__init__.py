"""digitcmp: compare two MNIST digits (is the first ≤ the second?) with weight sharing and auxiliary losses."""

__version__ = "0.5.0"
