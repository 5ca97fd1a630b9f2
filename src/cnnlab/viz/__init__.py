"""Pure plotting: arrays in, matplotlib Figure out."""
