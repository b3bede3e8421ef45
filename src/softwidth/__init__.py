"""softwidth: trainable layer widths for speech models.

Make a layer size a trainable real number (:class:`Width`), wrap stock layers with :func:`dynamic`, price
the model in FLOP/s of audio with :func:`profile` + :func:`flops_per_second` (differentiable in every
width), train with ``loss = task + weight * cost`` (:func:`fit`, or your own loop driving a :class:`WidthSession`), and
:func:`consolidate` into a smaller plain network.
Method: Gómez & Bäckström, "Performance and Complexity Trade-off Optimization of Speech Models During
Training", arXiv 2601.13704 (2026).
"""

from . import distributed, export
from .consolidate import consolidate, widths
from .cost import cost, flops, flops_per_second, macs, params
from .errors import SoftWidthError
from .layers import LogMel, dynamic
from .layout import concat
from .objective import BudgetController, CostPenalty, CostTerm
from .optim import param_groups, project_
from .probe import profile
from .schedule import Schedule
from .session import WidthSession
from .train import FitConfig, fit
from .width import Width
from .width_optim import WidthSGD

__version__ = "0.1.0"

__all__ = [
    "BudgetController",
    "CostPenalty",
    "CostTerm",
    "FitConfig",
    "LogMel",
    "Schedule",
    "SoftWidthError",
    "Width",
    "WidthSGD",
    "WidthSession",
    "concat",
    "consolidate",
    "cost",
    "distributed",
    "dynamic",
    "export",
    "fit",
    "flops",
    "flops_per_second",
    "macs",
    "param_groups",
    "params",
    "profile",
    "project_",
    "widths",
]
