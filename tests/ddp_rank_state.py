"""Run `electives ARGS...` (under torchrun) and have EVERY rank write the parameters `fit` returned to it.

    python -m torch.distributed.run ... tests/ddp_rank_state.py DUMP_DIR train --data ...

Each rank writes DUMP_DIR/rank{RANK}.npz (the state_dict as arrays), so the test can compare the ranks' models
bit for bit and compare them with the artifact that rank 0 wrote. The CLI imports `fit` when it trains, so
replacing the module attribute here reaches it without any change to the code under test.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import electives.models.training as training
from electives.cli import main
from electives.models import distributed

_fit = training.fit


def _fit_and_dump(*args, **kwargs):
    fitted = _fit(*args, **kwargs)
    state = {k: v.detach().cpu().numpy() for k, v in fitted.model.state_dict().items()}
    np.savez(Path(sys.argv[1]) / f"rank{distributed.context().rank}.npz", **state)
    return fitted


if __name__ == "__main__":
    training.fit = _fit_and_dump
    sys.exit(main(sys.argv[2:]))
