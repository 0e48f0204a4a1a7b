"""The training loop and what a run owns: the trainer, its run folder, progress lines, the
weights' moving average, optimizers, losses and the labels of mixed images."""
