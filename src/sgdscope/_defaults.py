"""Library-wide defaults that several layers share, stated once (no heavy imports here)."""

#: BatchNorm modes of every curvature and loss evaluation: batch statistics ("train"), running
#: statistics ("eval"), or batch statistics over fixed ghost batches ("ghost").
BN_MODES = ("train", "eval", "ghost")

#: The one BatchNorm default of the whole library (curvature, landscape, eigenbasis, probes):
#: running statistics, as paper A's code measured the Hessian. Paper B measured the walk in
#: "train" mode: its recipes say so explicitly. Models without BatchNorm are unaffected.
DEFAULT_BN_MODE = "eval"
