"""The one error a loader raises: DocumentError, whose message an adapter can show to the uploader as-is."""

from __future__ import annotations

# Reasons that read as a predicate ("leave.pdf is 30 MB ...") follow the name directly; others get a colon.
_PREDICATE_STARTS = ("is ", "has ", "was ", "cannot ", "could not ", "does ", "looks ")


class DocumentError(ValueError):
    """Bad input. str(err) is a clear one-line message that names the file and the reason and says what to do."""

    def __init__(self, filename: str, reason: str):
        self.filename = filename
        self.reason = " ".join(str(reason).split())  # one line, whatever the library said
        sep = " " if self.reason.startswith(_PREDICATE_STARTS) else ": "
        super().__init__(f"{filename}{sep}{self.reason}")


def short_reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."
