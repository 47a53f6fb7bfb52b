"""`plsearch distill` under torchrun where rank 1 dies (hard exit, as an OOM kill would)
in its third KD micro-batch. argv: the distill arguments."""

from __future__ import annotations

import os
import sys

import plsearch.distill
from plsearch.cli import main

if os.environ.get("RANK") == "1":
    calls = []
    real_ce = plsearch.distill.next_token_ce

    def dying_ce(logits, input_ids):
        calls.append(1)
        if len(calls) == 3:
            print("rank 1: simulated crash", file=sys.stderr, flush=True)
            os._exit(3)
        return real_ce(logits, input_ids)

    plsearch.distill.next_token_ce = dying_ce

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
