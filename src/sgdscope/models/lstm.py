"""An LSTM language model (Zaremba et al. 2014 style): embedding, stacked LSTM, linear decoder."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ._registry import register_model


class LSTMLanguageModel(nn.Module):
    """Token ids (N, T) -> next-token logits (N, T, V), from a zero initial state.

    Inputs are int64 token ids (float tensors holding ids are rounded to int64 first).

    Curvature note: on CPU, ``nn.LSTM`` dispatches to oneDNN, which has no forward-mode AD, so
    ``torch.func.jvp`` (forward-over-reverse Hessian-vector products) fails unless oneDNN is off
    (``torch.backends.mkldnn.flags(enabled=False)``); double backward works as is. On CUDA, cuDNN's
    RNN has no double backward: take Hessian-vector products under
    ``torch.backends.cudnn.flags(enabled=False)``.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int,
        hidden_size: int,
        num_layers: int,
        dropout: float,
        tie_weights: bool,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.drop = nn.Dropout(dropout)
        self.lstm = nn.LSTM(
            embedding_dim,
            hidden_size,
            num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.decoder = nn.Linear(hidden_size, vocab_size)
        if tie_weights:
            # Press & Wolf 2017: the decoder reuses the embedding matrix (V × d).
            self.decoder.weight = self.embedding.weight
        # Zaremba et al. initialise every weight uniformly in [-0.1, 0.1].
        for p in self.parameters():
            nn.init.uniform_(p, -0.1, 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_floating_point():
            x = x.round().long()
        h, _ = self.lstm(self.drop(self.embedding(x)))
        return self.decoder(self.drop(h))


@register_model("lstm_lm")
def lstm_lm(
    input_shape: tuple[int, ...],
    num_classes: int,
    embedding_dim: int = 200,
    hidden_size: int = 200,
    num_layers: int = 2,
    dropout: float = 0.0,
    tie_weights: bool = False,
) -> LSTMLanguageModel:
    """Embedding → ``num_layers`` LSTM → Linear to the vocabulary; output (N, T, V).

    ``input_shape`` is (bptt,) and ``num_classes`` the vocabulary size V. The defaults are
    Zaremba et al.'s "small" model without dropout (deterministic loss, as curvature probes
    need): 4 653 200 parameters for V = 10 000 (embedding 2.0 M, LSTM 0.64 M, decoder 2.01 M).
    The "medium" model (650 units, 2 layers) has 19.8 M ("20 M" in the paper), "large" (1500
    units) 66.0 M. ``tie_weights`` needs ``embedding_dim == hidden_size`` and saves V·d.
    """
    if len(input_shape) != 1:
        raise ConfigError(
            f"lstm_lm needs token windows of shape (bptt,), got {tuple(input_shape)}: "
            "use it with a language-model dataset such as ptb"
        )
    if tie_weights and embedding_dim != hidden_size:
        raise ConfigError(
            f"model.options.tie_weights=true needs embedding_dim == hidden_size, got "
            f"{embedding_dim} and {hidden_size}"
        )
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"model.options.dropout={dropout}: must be in [0, 1)")
    return LSTMLanguageModel(
        num_classes, embedding_dim, hidden_size, num_layers, dropout, tie_weights
    )
