"""Token vocabulary shared by the store, the data loader and the model.

Residue tokens come first in the store (`tokens` holds only residues); special tokens are
added by the loader. The first 20 residue tokens are the profile columns, in the order
`ACDEFGHIKLMNPQRSTVWY` used by HMMER's amino alphabet, so `token_id - FIRST_RESIDUE` is the
profile column of a standard residue. `pad_tokens` frames residues as model input, for
training and inference alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SPECIALS = ("<pad>", "<cls>", "<eos>", "<mask>")
PAD, CLS, EOS, MASK = range(len(SPECIALS))
STANDARD = "ACDEFGHIKLMNPQRSTVWY"
# IUPAC ambiguity and rare residues that real UniProt records contain.
EXTRA = "XBZJUO"
RESIDUES = STANDARD + EXTRA
FIRST_RESIDUE = len(SPECIALS)
VOCAB = SPECIALS + tuple(RESIDUES)
VOCAB_SIZE = len(VOCAB)
N_STANDARD = len(STANDARD)
IGNORE = -100  # label of positions that never count in a loss (PyTorch's cross-entropy default)

_ENCODE = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate(RESIDUES):
    _ENCODE[ord(_c)] = FIRST_RESIDUE + _i
_DECODE = np.zeros(256, dtype=np.uint8)
for _i, _c in enumerate(RESIDUES):
    _DECODE[FIRST_RESIDUE + _i] = ord(_c)


def encode(sequence: str) -> np.ndarray:
    """Return the token ids (uint8) of an uppercase protein sequence.

    Raises:
        ValueError: if a character is not in `RESIDUES`.
    """
    raw = np.frombuffer(sequence.encode("ascii"), dtype=np.uint8)
    ids = _ENCODE[raw]
    if (ids == 255).any():
        bad = int(np.flatnonzero(ids == 255)[0])
        raise ValueError(f"character {sequence[bad]!r} at position {bad + 1} is not a residue")
    return ids


def decode(tokens: np.ndarray) -> str:
    """Return the sequence string of residue token ids (the inverse of `encode`)."""
    return _DECODE[np.asarray(tokens, dtype=np.uint8)].tobytes().decode("ascii")


def pad_tokens(residues: Sequence[np.ndarray]) -> np.ndarray:
    """(B, T) int64 model input: `<cls> residues <eos> <pad>...` per sequence, so residue j of
    sequence b sits at column j + 1."""
    width = max(len(t) for t in residues) + 2
    tokens = np.full((len(residues), width), PAD, dtype=np.int64)
    for b, tok in enumerate(residues):
        tokens[b, 0], tokens[b, 1 : len(tok) + 1], tokens[b, len(tok) + 1] = CLS, tok, EOS
    return tokens
