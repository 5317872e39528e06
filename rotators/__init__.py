"""Rotators: one module per way of turning a credential into a new one without an outage.

``rotators.base`` is the protocol; ``rotators.registry`` is the only place that knows which
rotators exist (built-ins plus the entry-point group ``keyshift.rotators``).
Rotators never import ``console``: the engine hands them a ``RotatorContext``.
"""
