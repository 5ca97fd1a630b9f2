"""Raw-format reader, synthetic generator, crops and in-memory datasets."""
