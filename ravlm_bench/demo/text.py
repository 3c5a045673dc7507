"""Captions, questions and region phrases for demo scenes, from varied templates.

A caption names the primary (largest) shape only about half the time, so the text alone
cannot answer "which category is the largest shape": the image has to matter.
"""

from __future__ import annotations

import numpy as np

from ravlm_bench.demo.scenes import Scene, Shape, position_words
from ravlm_bench.demo.shapes import CATEGORIES, PLURALS

NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
PRIMARY_MENTION_RATE = 0.5


def describe(shape: Shape, rng: np.random.Generator, article: str = "a") -> str:
    words = []
    if rng.random() < 0.4:
        words.append(shape.size_word)
    if rng.random() < 0.8:
        words.append(shape.colour)
    words.append(shape.kind)
    if article == "a" and words[0][0] in "aeiou":
        article = "an"
    return f"{article} {' '.join(words)}"


def _relation(a: Shape, b: Shape) -> str:
    dx, dy = b.cx - a.cx, b.cy - a.cy
    if abs(dx) > abs(dy):
        return "to the left of" if dx > 0 else "to the right of"
    return "above" if dy > 0 else "below"


def _pick(scene: Scene, rng: np.random.Generator) -> list[Shape]:
    """The shapes one caption mentions: the primary about half the time."""
    others = list(scene.shapes[1:])
    rng.shuffle(others)
    if not others or rng.random() < PRIMARY_MENTION_RATE:
        return [scene.primary] + others
    return others


def caption(scene: Scene, rng: np.random.Generator) -> str:
    shapes = _pick(scene, rng)
    a = shapes[0]
    b = shapes[1] if len(shapes) > 1 else None
    bg, n = scene.background, len(scene.shapes)
    options = [
        lambda: f"{describe(a, rng).capitalize()} {position_words(a)}.",
        lambda: f"A {bg} background with {describe(a, rng)}.",
        lambda: f"A picture with {describe(a, rng)} on a {bg} pattern.",
        lambda: f"{NUMBER_WORDS[n].capitalize() if n < 10 else n} shape"
                f"{'s' if n > 1 else ''} on a {bg} background, including {describe(a, rng)}.",
        lambda: f"Close-up of {describe(a, rng)} {position_words(a)} of the frame.",
        lambda: f"Some coloured shapes drawn over a {bg} texture.",
    ]
    if b is not None:
        options += [
            lambda: f"{describe(a, rng).capitalize()} {_relation(a, b)} {describe(b, rng)}.",
            lambda: f"There is {describe(a, rng)} and {describe(b, rng)}.",
            lambda: f"{describe(a, rng).capitalize()}, with {describe(b, rng)} nearby.",
            lambda: f"An image showing {describe(a, rng)} next to {describe(b, rng)}.",
        ]
    return options[int(rng.integers(len(options)))]()


def captions(scene: Scene, rng: np.random.Generator, count: int) -> list[str]:
    out: list[str] = []
    for _ in range(count * 4):
        text = caption(scene, rng)
        if text not in out:
            out.append(text)
        if len(out) == count:
            return out
    while len(out) < count:  # a sparse scene may not yield enough distinct captions
        out.append(f"{caption(scene, rng)[:-1]}, seen again.")
    return out


def questions(scene: Scene, rng: np.random.Generator) -> list[tuple[str, str]]:
    """(question, answer) pairs written like Visual Genome's: answers such as "Red."."""
    kinds = [s.kind for s in scene.shapes]
    qas: list[tuple[str, str]] = []
    unique = [s for s in scene.shapes if kinds.count(s.kind) == 1]
    for shape in unique[:2]:
        qas.append((f"What color is the {shape.kind}?", f"{shape.colour.capitalize()}."))
    kind = str(rng.choice(kinds)) if rng.random() < 0.8 else str(
        rng.choice([name for _, name, _ in CATEGORIES]))
    count = kinds.count(kind)
    qas.append((f"How many {PLURALS[kind]} are there?", f"{NUMBER_WORDS[count].capitalize()}."))
    for anchor in scene.shapes:
        left = [s for s in scene.shapes if s is not anchor and s.cx < anchor.cx - 4]
        if left:
            other = min(left, key=lambda s: abs(s.cy - anchor.cy))
            qas.append((f"What shape is left of the {anchor.colour} {anchor.kind}?",
                        f"A {other.kind}."))
            break
    shape = scene.shapes[int(rng.integers(len(scene.shapes)))]
    qas.append((f"Where is the {shape.colour} {shape.kind}?",
                f"{position_words(shape).capitalize()}."))
    qas.append(("What pattern is the background?", f"{scene.background.capitalize()}."))
    qas.append(("What is the largest shape?", f"The {scene.primary.kind}."))
    order = rng.permutation(len(qas))[: int(rng.integers(3, len(qas) + 1))]
    return [qas[i] for i in sorted(order)]


def region_phrase(shape: Shape) -> str:
    return f"{shape.colour} {shape.kind} {position_words(shape)}"


def tokens(text: str) -> list[str]:
    """Karpathy-style tokens: lower case, punctuation removed."""
    return "".join(c if c.isalnum() or c.isspace() else " " for c in text.lower()).split()
