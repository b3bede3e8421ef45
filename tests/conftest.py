"""Shared test set-up: one torch thread (the suite's tensors are tiny; threads only add contention)."""

import torch

torch.set_num_threads(1)
