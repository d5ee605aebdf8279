"""The exception type for bad input that classic TransformerLens rejected with `assert`."""


class ClassicAssertionError(ValueError, AssertionError):
    """Bad input, reported with a message that names the problem.

    Classic TransformerLens raised AssertionError in these places; code written against it
    catches AssertionError, code written against this fork catches ValueError, and both work.
    """


class ClassicIndexError(IndexError, ValueError):
    """An index the object cannot take, where classic TransformerLens raised ValueError.

    IndexError is what Python code expects from a bad index; ValueError keeps working for
    code written against classic TransformerLens.
    """
