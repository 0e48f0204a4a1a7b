"""Pictures: PNGs drawn with matplotlib (curves, confusion matrix, image grids, explanations).

Nothing outside this package imports matplotlib, and this package imports it only inside the
functions that draw, so `cnncli --help`, `inspect` and `predict` never load it."""
