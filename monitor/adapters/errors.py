"""The one error every adapter raises."""


class AdapterError(ValueError):
    """Input that cannot become a canonical result.

    The message names segments and elements, never values or patient data: it becomes a
    dead-letter header.
    """
