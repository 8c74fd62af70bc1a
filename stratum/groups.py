"""Exception groups as a program's last words: the errors inside, however deeply nested."""

from __future__ import annotations


def leaves(error: BaseException) -> list[BaseException]:
    """The exceptions inside ``error``, however deeply the nurseries grouped them."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]
