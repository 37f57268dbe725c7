"""Tune types: how a stage trains each component (``stages.<name>.tune.<component>: NAME``).

One class per module, registered in :data:`gemfactory.registry.TUNE_TYPES` (plugins add more
through the ``gemfactory.tune_types`` entry-point group); the contract is :class:`.base.TuneType`.
``adapters`` holds the LoRA adapter plumbing that training, export and loading share.
"""
