"""Controllers: small policies that pick each round's proposer, block size and denoising steps.

``base``: the protocol and the shared checks. ``simple``: ``Fixed`` and ``Heuristic``. ``reach``:
the acceptance model. ``cost``: the cost model. ``cut``: verifying only a draft's worthwhile head.
``adaptive``: ``Adaptive``, the decoder's default, built from those.
"""

from specdiff.controllers.adaptive import Adaptive
from specdiff.controllers.base import Controller, Limits, check_choice, check_steps
from specdiff.controllers.simple import Fixed, Heuristic
from specdiff.protocols import PLAIN, Choice, Proposer

__all__ = ["PLAIN", "Adaptive", "Choice", "Controller", "Fixed", "Heuristic", "Limits", "Proposer", "check_choice",
           "check_steps"]
