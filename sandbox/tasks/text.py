"""The character corpus of the language-model tasks: real English text that ships with this repo.

``corpus.txt`` (committed next to this module, ~200 KB of ASCII) is scikit-learn's own prose:
every data-set description (``sklearn/datasets/descr/*.rst``) followed by the docstrings of the
public classes of a fixed list of scikit-learn subpackages, in sorted order, cut at
``CORPUS_CHARS``. It was built once with :func:`build_corpus` (scikit-learn 1.9.1) and is read
from the file at run time, so the text is the same on every machine whatever scikit-learn is
installed. scikit-learn is BSD-3-licensed; its notice travels in ``corpus_LICENSE.txt``.

Tokens: the language models read the text lower-cased, with the ~15 rarest symbols folded into
``#`` (:data:`VOCAB`, 57 characters): a small vocabulary keeps the output layer, the largest
matmul of a tiny model, cheap.

Splits: the text is cut into consecutive ``BLOCK``-character blocks; block ``i`` goes to
validation when ``i % 10 == 8``, to test when ``i % 10 == 9``, else to training. The three
splits are disjoint contiguous chunks spread evenly over the corpus, so data-set descriptions and
API prose appear in all three. Windows never cross a block boundary.
"""

from __future__ import annotations

import ast
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

CORPUS_PATH = Path(__file__).with_name("corpus.txt")
CORPUS_CHARS = 200_000
BLOCK = 2048
VOCAB = "\n \"#'()*,-./0123456789:<=>[]_`abcdefghijklmnopqrstuvwxyz|"
"""Every token; any other character of the lower-cased text reads as ``#``."""
SUBPACKAGES = ("linear_model", "ensemble", "cluster", "decomposition", "svm", "neighbors", "preprocessing",
               "mixture", "covariance", "manifold")


def _ascii(text: str) -> str:
    """NFKD-fold to ASCII, tabs to spaces, no trailing blanks: a small, stable vocabulary."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    lines = [line.replace("\t", "    ").rstrip() for line in text.splitlines()]
    return "\n".join(lines).strip("\n") + "\n\n"


def build_corpus() -> str:
    """Rebuild the corpus from the installed scikit-learn (only used to write ``corpus.txt``;
    a different scikit-learn version gives a different text, which is why the file is committed)."""
    import sklearn

    root = Path(sklearn.__file__).parent
    parts = [_ascii(p.read_text(encoding="utf-8")) for p in sorted((root / "datasets" / "descr").glob("*.rst"))]
    for sub in SUBPACKAGES:
        for path in sorted((root / sub).glob("*.py")):
            for node in ast.parse(path.read_text(encoding="utf-8")).body:
                if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                    doc = ast.get_docstring(node)
                    if doc:
                        parts.append(_ascii(doc))
    return "".join(parts)[:CORPUS_CHARS]


@dataclass(frozen=True)
class Corpus:
    """The corpus as token ids (indices into :data:`VOCAB`) and the block indices of each split."""

    tokens: torch.Tensor  # (n,) int64
    train_blocks: torch.Tensor  # block indices
    val_blocks: torch.Tensor
    test_blocks: torch.Tensor

    @property
    def vocab_size(self) -> int:
        return len(VOCAB)

    @staticmethod
    def decode(ids: torch.Tensor) -> str:
        return "".join(VOCAB[i] for i in ids.tolist())


@lru_cache(maxsize=None)
def corpus() -> Corpus:
    """The committed corpus, tokenised by character (see :data:`VOCAB`)."""
    text = CORPUS_PATH.read_text(encoding="ascii").lower()
    lookup = {c: i for i, c in enumerate(VOCAB)}
    tokens = torch.tensor([lookup.get(c, lookup["#"]) for c in text], dtype=torch.int64)
    blocks = torch.arange(len(tokens) // BLOCK)  # a trailing partial block is dropped
    kind = blocks % 10
    return Corpus(tokens, blocks[kind < 8], blocks[kind == 8], blocks[kind == 9])


def window_starts(blocks: torch.Tensor, length: int, count: int) -> torch.Tensor:
    """``count`` fixed, evenly spread start offsets of ``length``-token windows inside ``blocks``
    (no window crosses a block boundary): for validation, test and evaluation sets."""
    per_block = BLOCK // length  # non-overlapping windows per block
    all_starts = (blocks[:, None] * BLOCK + torch.arange(per_block)[None, :] * length).flatten()
    pick = torch.linspace(0, len(all_starts) - 1, count).round().long()
    return all_starts[pick]


def random_starts(blocks: torch.Tensor, length: int, count: int, gen: torch.Generator) -> torch.Tensor:
    """``count`` uniformly random window starts inside ``blocks`` (a training minibatch)."""
    block = blocks[torch.randint(len(blocks), (count,), generator=gen)]
    return block * BLOCK + torch.randint(BLOCK - length + 1, (count,), generator=gen)


def windows(starts: torch.Tensor, length: int) -> torch.Tensor:
    """(count, length) token ids of the windows beginning at ``starts``."""
    return corpus().tokens[starts[:, None] + torch.arange(length)[None, :]]
