#!/usr/bin/env python3
"""../shared/bench/official_cpu.py with its AdamW step replaced by a step that does nothing.

`ivl bench mpo-step` measures the reference log-probs, the policy forward and the backward; the
official script's mpo-step also runs torch.optim.AdamW, whose two moment buffers (8 bytes a
parameter) do not fit next to the two InternVL2-1B models in 24 GiB. This runs the official script
unchanged otherwise (same arguments), so the two measure the same work. Developer check only:
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
