"""Adapters to other tools: :mod:`.lightning` (``softwidth[lightning]``) and the TensorBoard writer of ``fit``.

Each adapter imports its tool only when used, so ``import softwidth`` never needs them.
"""
