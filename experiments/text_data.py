"""The sentiment-regression data of Gal & Ghahramani (2016, sec. 5.1): Pang & Lee's "scale" movie
reviews (v1.0), read from ``<data root>/scaledata/``::

    scaledata/<author>/subj.<author>      one review a line (tokenised, lower-cased)
    scaledata/<author>/rating.<author>    its rating in [0, 1], one a line, same order

The paper's protocol (:func:`sentiment_split`): the four critics concatenated, whitespace tokens,
the reviews shuffled by the seed, every review cut into chunks of at most ``max_length`` (200)
tokens (each chunk keeps its review's rating), the ``vocabulary`` (20,000) most frequent words,
the last 20% as the test set, ratings standardised on the training part.

Two choices the paper's loader leaves open, made here so no review leaks into the test set: the
train/test cut is moved to the first review boundary at or after 80% of the chunks (no review
has chunks on both sides), and the words are counted on the training reviews only. Token ids:
``0`` pads (sequences are padded on the left, see :class:`bayesdl.models.RecurrentRegressor`),
``1`` stands for a word outside the vocabulary, ``2 ..`` are the words by decreasing frequency.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bayesdl.checks import check_int

__all__ = ["AUTHORS", "Review", "SentimentSplit", "load_reviews", "sentiment_split", "encode"]

#: the four critics, in the order they are concatenated
AUTHORS = ("Dennis+Schwartz", "James+Berardinelli", "Scott+Renshaw", "Steve+Rhodes")
PAD, UNKNOWN = 0, 1


@dataclass(frozen=True)
class Review:
    """One review: its whitespace tokens, its rating in [0, 1], and where it was read."""

    tokens: tuple[str, ...]
    rating: float
    source: str  # "<file>:<line>"


def _read_ratings(path: Path) -> list[float]:
    """The ratings of ``path``, one a line, each checked to be a number in [0, 1]."""
    ratings = []
    for number, line in enumerate(path.read_text(encoding="latin-1").splitlines(), start=1):
        try:
            value = float(line)
        except ValueError:
            raise ValueError(f"{path}:{number}: the rating {line.strip()!r} is not a number") from None
        if not 0.0 <= value <= 1.0:  # NaN fails too
            raise ValueError(f"{path}:{number}: the rating {value:g} lies outside [0, 1]; the scale data "
                             "holds normalised ratings in [0, 1]")
        ratings.append(value)
    return ratings


def load_reviews(root) -> list[Review]:
    """Every review of the four critics of ``<root>/scaledata`` (``root`` is the data root), in the
    order of :data:`AUTHORS`. Raises ``FileNotFoundError`` naming a missing file, ``ValueError``
    naming the file and line of a rating outside [0, 1], an empty review, or files of different
    lengths."""
    folder = Path(root) / "scaledata"
    reviews = []
    for author in AUTHORS:
        text_path, rating_path = folder / author / f"subj.{author}", folder / author / f"rating.{author}"
        for path in (text_path, rating_path):
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing: the sentiment study reads Pang & Lee's scale "
                                        "data v1.0 from <data root>/scaledata/<author>/ (see the data root's "
                                        "README)")
        lines = text_path.read_text(encoding="latin-1").splitlines()
        ratings = _read_ratings(rating_path)
        if len(lines) != len(ratings):
            raise ValueError(f"{text_path} has {len(lines)} reviews but {rating_path} has {len(ratings)} "
                             "ratings; they must match line by line")
        for number, (line, rating) in enumerate(zip(lines, ratings), start=1):
            tokens = tuple(line.split())
            if not tokens:
                raise ValueError(f"{text_path}:{number}: the review is empty")
            reviews.append(Review(tokens, rating, f"{text_path}:{number}"))
    return reviews


@dataclass(frozen=True)
class SentimentSplit:
    """Chunks of reviews as token ids, split and standardised.

    ``x_train [N, L]``, ``x_test [M, L]`` (long, left-padded with 0); ``y_train [N]``, ``y_test [M]``
    (float32, standardised: ``rating = y_mean + y_std * y``); ``rating_test [M]`` in rating units;
    ``test_review [M]`` the review index (in the shuffled order) of each test chunk; ``words`` the
    vocabulary (``words[i - 2]`` is id ``i``); ``texts_test`` the text of each test chunk.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    rating_test: torch.Tensor
    y_mean: float
    y_std: float
    words: tuple[str, ...]
    test_review: torch.Tensor
    texts_test: tuple[str, ...]

    @property
    def vocab_size(self) -> int:
        """Ids of the network: padding, unknown and the words."""
        return len(self.words) + 2


def _chunks(tokens: tuple[str, ...], max_length: int) -> list[tuple[str, ...]]:
    return [tokens[i:i + max_length] for i in range(0, len(tokens), max_length)]


def encode(chunks: list[tuple[str, ...]], index: dict[str, int], max_length: int) -> torch.Tensor:
    """Token chunks as ids ``[len(chunks), max_length]``, left-padded with 0, unknown words 1."""
    out = np.zeros((len(chunks), max_length), dtype=np.int64)
    for row, chunk in enumerate(chunks):
        ids = [index.get(token, UNKNOWN) for token in chunk]
        out[row, max_length - len(ids):] = ids
    return torch.from_numpy(out)


def sentiment_split(reviews: list[Review], seed: int, vocabulary: int = 20_000, max_length: int = 200,
                    test_fraction: float = 0.2, limit: int | None = None) -> SentimentSplit:
    """The paper's protocol on ``reviews`` (see the module notes), shuffled by ``seed``; ``limit``
    keeps the first ``limit`` shuffled reviews (a quick run)."""
    vocabulary = check_int(vocabulary, "vocabulary", minimum=1)
    max_length = check_int(max_length, "max_length", minimum=1)
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    order = np.random.default_rng(seed).permutation(len(reviews))
    if limit is not None:
        order = order[:check_int(limit, "limit", minimum=2)]
    chunks, ratings, review_of = [], [], []
    for k, i in enumerate(order):
        pieces = _chunks(reviews[i].tokens, max_length)
        chunks += pieces
        ratings += [reviews[i].rating] * len(pieces)
        review_of += [k] * len(pieces)
    cut = round((1 - test_fraction) * len(chunks))
    while 0 < cut < len(chunks) and review_of[cut] == review_of[cut - 1]:
        cut += 1  # the first review boundary at or after the cut
    if cut >= len(chunks):
        raise ValueError("too few reviews for a test set: pass more reviews (limit)")
    counts = Counter(token for chunk in chunks[:cut] for token in chunk)
    words = tuple(word for word, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:vocabulary])
    index = {word: i + 2 for i, word in enumerate(words)}
    x = encode(chunks, index, max_length)
    y = torch.tensor(ratings, dtype=torch.float64)
    mean, std = float(y[:cut].mean()), float(y[:cut].std())
    standard = ((y - mean) / std).float()
    return SentimentSplit(x[:cut], standard[:cut], x[cut:], standard[cut:], y[cut:].float(), mean, std, words,
                          torch.tensor(review_of[cut:]), tuple(" ".join(c) for c in chunks[cut:]))
