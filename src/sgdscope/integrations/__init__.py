"""Run sgdscope's probes inside other training frameworks, logging to the loggers they already use.

- :mod:`sgdscope.integrations.lightning` — :class:`SgdscopeCallback`, a ``lightning.pytorch``
  callback (install the extra: ``pip install "sgdscope[lightning]"``);
- :mod:`sgdscope.integrations.huggingface` — :class:`SgdscopeTrainerCallback`, a
  ``transformers.TrainerCallback`` (``pip install "sgdscope[hf]"``).

Each submodule imports its framework; this package imports neither.
"""
