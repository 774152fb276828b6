"""The pure core: value objects and computations, no I/O and no framework imports."""
