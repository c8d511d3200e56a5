"""Cycle consistency: mean |A - G_B(G_A(A))| and |B - G_A(G_B(B))| in [-1, 1] units
(cycle_l1_a, cycle_l1_b), the paper's cycle loss (section 3.2) without its lambda."""

from cyclegan_tf.evaluation import metrics as metrics_lib

NAME = 'cycle'


class Evaluator:

  def __init__(self, context):
    del context

  def run(self, data, tr):
    if tr.rec_a is None:  # a model with one generator has no cycle
      return
    yield 'cycle_l1_a', metrics_lib.cycle_l1(data.a, tr.rec_a)
    yield 'cycle_l1_b', metrics_lib.cycle_l1(data.b, tr.rec_b)
