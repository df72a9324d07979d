"""Unit constants (dependency-free, so light modules such as :mod:`.lanes` can use them)."""

FT = 0.3048  # metres per foot (international foot), NGSIM's unit
