"""Constraints: rules on which token a sample may take next, decided token by token, behind one
interface, and the one loop that serves them all (`take`: draw, check, ban, draw again).

A constraint follows one sample. It can say whether a token is allowed (`allows`, given the
text the token would print), what it bans in its present state (`banned`: a mask over the
vocabulary, or None when it can only check tokens one at a time), and take the token chosen
(`accept`). Like Hugging Face's `PrefixConstrainedLogitsProcessor`, but checked after the draw
where that gives the same distribution: when every shaping stage is pointwise (temperature; see
`samplers.Stage`), drawing and then, on a refusal, drawing again with the constraint's whole
ban is a draw from the allowed tokens in the same proportions, and most steps need no mask.
Otherwise (top-k, top-p) a constraint with a mask bans before the draw (`sample.Job` does it),
and only those that cannot say in advance (max copy) check after.

    OnlyKnownWords   known words: only words of the training text (`known_words.py`)
    CopyLimit        max copy: no stretch of more than N characters copied from the corpus
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from authorgen.known_words import Follower
from authorgen.originality import CopyGuard
from authorgen.stages import NEG_INF, ban
from authorgen.tokenizer.base import Decoder

MAX_TRIES = 64  # draws per step before the sample ends there


class Constraint:
    """A rule on the next token of one sample."""

    reason = ""  # how a sample ends when this rule leaves it no token (`Sample.stopped`)
    masks = False  # `banned` can say everything it bans in a state
    needs_piece = False  # `allows` reads the text the token would print

    def banned(self, device: torch.device) -> tuple[torch.Tensor | None, bool]:
        """A mask (V,) of the tokens banned in this state, and whether it leaves none; (None,
        False) for a rule that can only check tokens one at a time."""
        return None, False

    def allows(self, token: int, piece: str) -> bool:
        raise NotImplementedError

    def accept(self, token: int, piece: str) -> None:
        """The sample took `token`, which printed `piece`."""


class OnlyKnownWords(Constraint):
    """Only words of the training text (`known_words.Follower`)."""

    reason = "known_words"
    masks = True

    def __init__(self, follower: Follower, prompt: str):
        self.follower = follower
        follower.read(prompt)

    def banned(self, device: torch.device) -> tuple[torch.Tensor | None, bool]:
        return self.follower.banned(device)

    def allows(self, token: int, piece: str) -> bool:
        return self.follower.allows(token)

    def accept(self, token: int, piece: str) -> None:
        self.follower.accept(token, piece)


class CopyLimit(Constraint):
    """No stretch of more than the guard's limit copied verbatim from the corpus."""

    reason = "max_copy"
    needs_piece = True

    def __init__(self, guard: CopyGuard):
        self.guard = guard
        self.suffix: str | None = None  # what `allows` found for the token it last allowed

    def allows(self, token: int, piece: str) -> bool:
        self.suffix = self.guard.check(piece)
        return self.suffix is not None

    def accept(self, token: int, piece: str) -> None:
        self.guard.accept(self.suffix)


Choose = Callable[[torch.Tensor], int]  # a draw of one token from one row of scores (1, V)


def take(
    constraints: list[Constraint],
    checked: list[Constraint],
    decoder: Decoder,
    token: int,
    scores: torch.Tensor,
    choose: Choose,
) -> tuple[int, str, Decoder] | str:
    """The token drawn, or the first redraw that every constraint of `checked` allows, with
    the text it prints and the decoder after it; or, when none is left, the reason the sample
    ends there.

    `scores` (1, V) are those the token was drawn from (the bans of every constraint not in
    `checked` are in them). A refused token is banned with everything its constraint bans in
    this state (then that constraint is satisfied for this step), or alone when it cannot say.
    When the constraints together leave nothing, the sample ends for the last of them.
    """
    checked = list(checked)
    for _ in range(MAX_TRIES):
        after, piece = None, None
        refused = None
        for constraint in checked:
            if constraint.needs_piece and piece is None:
                after = decoder.clone()
                piece = after.push(token)
            if not constraint.allows(token, piece):
                refused = constraint
                break
        if refused is None:
            if piece is None:
                after, piece = decoder, decoder.push(token)
            for constraint in constraints:
                constraint.accept(token, piece)
            return token, piece, after
        mask, dead = refused.banned(scores.device)
        if mask is None:
            scores = ban(scores, 0, [token])
        elif dead:
            return refused.reason
        else:
            scores = scores.masked_fill(mask, NEG_INF)
            checked.remove(refused)  # the draws from these scores have what it allows
        if not torch.isfinite(scores).any():
            break
        token = choose(scores)
    return constraints[-1].reason
