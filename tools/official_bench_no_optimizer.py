#!/usr/bin/env python3
"""../shared/bench/official_cpu.py with its AdamW step replaced by a step that does nothing.

The official script's mpo-step runs torch.optim.AdamW, whose two moment buffers (8 bytes a
parameter) do not fit next to its two InternVL2-1B models in 23 GiB. This runs the official script
unchanged otherwise (same arguments) with a step that does nothing: the time and memory of
everything but the optimizer, a lower bound of the official step to put beside `ivl bench
mpo-step` (which includes AdamW) where the whole official step cannot run.
Developer check only:
  python3 tools/official_bench_no_optimizer.py --ref REF/internvl_chat --config tests/data/internvl2-1b/config.json mpo-step
"""
import os
import runpy
import sys

import torch


class NoStep(torch.optim.Optimizer):
    """Keeps the optimizer's interface (zero_grad frees the gradients as before); step() does nothing."""

    def __init__(self, params, **_):
        super().__init__(params, {})

    def step(self, closure=None):
        return None


torch.optim.AdamW = NoStep
script = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'shared', 'bench', 'official_cpu.py')
sys.argv[0] = script
runpy.run_path(script, run_name='__main__')
