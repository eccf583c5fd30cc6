#!/usr/bin/env python3
"""../shared/bench/official_cpu.py generate, made to run under transformers 4.37.2.

The script asks for min_new_tokens with an end-of-sequence id past the vocabulary (vocab + 10, so
that no row ever stops). transformers 4.37.2's MinNewTokensLengthLogitsProcessor then indexes the
logits at that id and fails. This wrapper makes that processor skip the ids past the vocabulary.
Nothing else changes: the script gets the same arguments, and its numbers stand beside `ivl bench
generate`.
Developer check only:
  python3 tools/official_bench_generate.py --ref REF/internvl_chat --config tests/data/internvl2-1b/config.json generate --batch 1
"""
import os
import runpy
import sys

import transformers.generation.logits_process as logits_process

_call = logits_process.MinNewTokensLengthLogitsProcessor.__call__


def _call_in_vocabulary(self, input_ids, scores):
    ids = self.eos_token_id if isinstance(self.eos_token_id, list) else [self.eos_token_id]
    kept = [i for i in ids if i < scores.shape[-1]]
    if not kept:
        return scores
    saved, self.eos_token_id = self.eos_token_id, kept
    try:
        return _call(self, input_ids, scores)
    finally:
        self.eos_token_id = saved


logits_process.MinNewTokensLengthLogitsProcessor.__call__ = _call_in_vocabulary
script = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'shared', 'bench', 'official_cpu.py')
sys.argv = [script] + sys.argv[1:]
runpy.run_path(script, run_name='__main__')
