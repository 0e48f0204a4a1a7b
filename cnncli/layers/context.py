"""What one forward and its backward need besides the arrays: the step's context.

Whoever runs a step makes one (Model.forward for a plain call, the trainer through
Model.gradients, the thread shards, MPI) and passes it to every layer's forward and backward.
Layers read it and keep none of it: nothing outside a layer writes a layer's attributes.

  training       batch statistics, dropout, and keep what backward needs
  record         inference that keeps what backward needs (Grad-CAM's gradients)
  rngs           {layer index: numpy Generator}: each dropout layer's stream
  masks          {layer index: mask}: dropout masks drawn for the whole batch before it was
                 split over threads, as one thread would draw them
  tiles          {layer index: (U, turned U)}: Winograd filters transformed once per step
                 for all the threads, not once per thread
  reduce         a function summing float64 arrays over the threads or processes that share
                 the batch (batchnorm's batch statistics); None: this batch alone
  keeps_running  this call updates batchnorm's running statistics (one shard of several does)
  frozen         the indices of the layers train.freeze holds fixed: in training, the model
                 hands each of them this context in inference mode (model/freeze.py)
"""

from dataclasses import dataclass, field, replace


@dataclass
class Context:
    training: bool = False
    record: bool = False
    rngs: dict = field(default_factory=dict)
    masks: dict = field(default_factory=dict)
    tiles: dict = field(default_factory=dict)
    reduce: object = None
    keeps_running: bool = True
    frozen: frozenset = frozenset()

    def but(self, **changes):
        """A copy with some fields changed (a shard's own reducer, say)."""
        return replace(self, **changes)


INFERENCE = Context()
