"""Architecture search under a MAC budget (Optuna): the space as data, zero-cost proxies, the
MnasNet reward and Pareto objectives, trained/zero-cost/hybrid evaluators, resumable studies.

``python -m scaling.search --help`` for the CLI. The modules import torch lazily where they can.
"""

from scaling.search.objectives import OBJECTIVES, mnas_reward, parse_budget
from scaling.search.space import DEFAULT_SPACE, default_space, load_space, sample_spec

__all__ = ["DEFAULT_SPACE", "OBJECTIVES", "default_space", "load_space", "mnas_reward",
           "parse_budget", "sample_spec"]
